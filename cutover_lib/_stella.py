"""The Stella Ops API calls the runbook makes, over HTTP.

The runbook names ``stellaops-cli`` commands (``scan submit``, ``signer sign`` / ``verify``,
``attestor verify``); the CLI is a thin client of these endpoints, so the library calls the
endpoints directly and the evidence shows both: the runbook's CLI line and the request made.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import CheckFailed
from ._http import Http, Response
from ._params import Environment

__all__ = ["OIDC_REQUIRED", "StellaApi", "fresh_event"]

OIDC_REQUIRED = ("issuer", "jwks_uri", "token_endpoint", "authorization_endpoint", "response_types_supported",
                 "subject_types_supported", "id_token_signing_alg_values_supported")


@dataclass
class StellaApi:
    env: Environment
    http: Http

    @classmethod
    def for_env(cls, env: Environment) -> "StellaApi":
        return cls(env, Http(timeout=env.timeouts.http.total_seconds(), verify=env.tls_verify))

    def close(self) -> None:
        self.http.close()

    def url(self, service: str, path: str) -> str:
        return getattr(self.env.services, service) + path

    # --------------------------------------------------------------- authority
    def discovery(self) -> tuple[Response, dict[str, Any]]:
        r = self.http.expect_status(self.http.get(self.url("authority", "/.well-known/openid-configuration")), 200)
        doc = r.json()
        if not isinstance(doc, dict):
            raise CheckFailed(f"{r.request_line}: discovery document is not a JSON object")
        return r, doc

    def jwks(self, jwks_uri: str) -> dict[str, Any]:
        r = self.http.expect_status(self.http.get(jwks_uri), 200)
        doc = r.json()
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not keys:
            raise CheckFailed(f"{r.request_line}: JWKS has no keys")
        return doc

    def token(self, client_id: str, client_secret: str, scope: str = "scanner.scan") -> str:
        _, doc = self.discovery()
        r = self.http.post(doc["token_endpoint"], data={"grant_type": "client_credentials", "scope": scope},
                           auth=(client_id, client_secret))
        self.http.expect_status(r, 200)
        body = r.json()
        if not isinstance(body, dict) or "access_token" not in body:
            raise CheckFailed(f"{r.request_line}: token response has no access_token")
        return str(body["access_token"])

    # --------------------------------------------------------------- scanner
    def scanner_health(self) -> Response:
        return self.http.get(self.url("scanner", "/healthz"))

    def queue_health(self) -> Response:
        return self.http.get(self.url("scanner", "/api/v1/queue/health"))

    def submit_scan(self, sbom: bytes, token: str | None = None) -> str:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        r = self.http.expect_status(self.http.post(self.url("scanner", "/api/v1/scans"), content=sbom,
                                                   headers=headers), 200, 201, 202)
        body = r.json()
        if not isinstance(body, dict) or not body.get("id"):
            raise CheckFailed(f"{r.request_line}: no scan id in the answer")
        return str(body["id"])

    def wait_scan(self, scan_id: str, deadline_s: float, poll_s: float = 0.5) -> tuple[str, float]:
        """Poll until the scan completes; (final status, seconds).  Fails at the deadline."""
        start = time.monotonic()
        status = "unknown"
        while True:
            r = self.http.expect_status(self.http.get(self.url("scanner", f"/api/v1/scans/{scan_id}")), 200)
            status = str(r.json().get("status"))
            took = time.monotonic() - start
            if status in ("completed", "failed"):
                return status, took
            if took + poll_s > deadline_s:
                return status, took
            time.sleep(poll_s)

    def scan_report(self, scan_id: str) -> dict[str, Any]:
        r = self.http.expect_status(self.http.get(self.url("scanner", f"/api/v1/scans/{scan_id}/report")), 200)
        body = r.json()
        if not isinstance(body, dict):
            raise CheckFailed(f"{r.request_line}: report is not a JSON object")
        return body

    # --------------------------------------------------------------- signer
    def signer_key(self) -> dict[str, Any]:
        r = self.http.expect_status(self.http.get(self.url("signer", "/api/v1/signer/key")), 200)
        body = r.json()
        if not isinstance(body, dict) or "publicKeyPem" not in body:
            raise CheckFailed(f"{r.request_line}: no publicKeyPem in the answer")
        return body

    def sign(self, bundle: bytes) -> dict[str, Any]:
        r = self.http.expect_status(self.http.post(self.url("signer", "/api/v1/signer/sign"), content=bundle,
                                                   headers={"Content-Type": "application/json"}), 200, 201)
        return r.json()

    def signer_verify(self, envelope: dict[str, Any]) -> dict[str, Any]:
        r = self.http.expect_status(self.http.post(self.url("signer", "/api/v1/signer/verify"), json=envelope), 200)
        return r.json()

    # --------------------------------------------------------------- attestor
    def attest(self, envelope: dict[str, Any]) -> str:
        r = self.http.expect_status(self.http.post(self.url("attestor", "/api/v1/attestations"), json=envelope),
                                    200, 201)
        body = r.json()
        if not body.get("uuid"):
            raise CheckFailed(f"{r.request_line}: no uuid in the answer")
        return str(body["uuid"])

    def attestor_verify(self, att_uuid: str) -> dict[str, Any]:
        r = self.http.expect_status(
            self.http.post(self.url("attestor", f"/api/v1/attestations/{att_uuid}/verify")), 200)
        return r.json()

    # --------------------------------------------------------------- runtime
    def post_runtime_event(self, event: dict[str, Any]) -> Response:
        return self.http.post(self.url("runtime", "/runtime/events"), json=event)

    def find_runtime_event(self, event_id: str) -> list[dict[str, Any]]:
        r = self.http.expect_status(self.http.get(self.url("runtime", "/api/v1/runtime/events"),
                                                  params={"eventId": event_id}), 200)
        body = r.json()
        items = body.get("events", body.get("items", [])) if isinstance(body, dict) else body
        return [e for e in items if isinstance(e, dict) and
                event_id in (e.get("eventId"), e.get("event_id"), (e.get("event") or {}).get("eventId"))]

    # --------------------------------------------------------------- audit (Section 7)
    def audit(self, service: str) -> dict[str, Any]:
        r = self.http.expect_status(self.http.get(self.url(service, "/-/audit")), 200)
        return r.json()


def fresh_event(path: Path) -> dict[str, Any]:
    """The Zastava observer fixture with a new eventId and timestamp, so this run's record is findable."""
    try:
        event = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckFailed(f"sample file {path} is missing", hint="restore it: git checkout -- samples/") from None
    event["eventId"] = str(uuid.uuid4())
    event["observedAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return event

