"""Every lab endpoint, against a real lab (one process per service) started once per session.

Signatures and tokens are checked with code independent of the lab: a PAE written here and
``cryptography`` for DSSE, ``joserfc`` against the published JWKS for JWTs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from stellaops_lab import SERVICES, LabConfig, status
from stellaops_lab._provision import service_env
from stellaops_lab._webui import SESSION_COOKIE, WEB_USER
from lab_helpers import DEMO_DSSE, auth, RUNTIME_EVENT, SBOM, independent_verify, signer_key, web_login

pytestmark = pytest.mark.lab



# --- common endpoints -----------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_healthz(clean_lab: LabConfig, http: httpx.Client, service: str) -> None:
    response = http.get(f"{clean_lab.url(service)}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "Healthy", "service": service, "version": "2025.09.2"}


@pytest.mark.parametrize("service", SERVICES)
def test_metrics_prometheus_text(clean_lab: LabConfig, http: httpx.Client, service: str) -> None:
    http.get(f"{clean_lab.url(service)}/healthz")
    response = http.get(f"{clean_lab.url(service)}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    # named as a Stella Ops service exports them (OpenTelemetry's ASP.NET Core HTTP server histogram)
    assert "# TYPE http_server_request_duration_seconds histogram" in text
    labels = 'http_request_method="GET",http_response_status_code="200",http_route="/healthz"'
    assert re.search(rf'http_server_request_duration_seconds_count{{{labels}}} \d+', text)
    assert f'http_server_request_duration_seconds_bucket{{{labels},le="+Inf"}}' in text
    assert "lab_http" not in text


def test_status_reports_every_service(clean_lab: LabConfig) -> None:
    rows = status(clean_lab)
    assert list(rows) == list(SERVICES)
    for service, row in rows.items():
        assert row["running"] and row["healthy"] and isinstance(row["pid"], int)
        assert row["version"] == "2025.09.2" and row["url"] == clean_lab.url(service)
        assert row["faults"] == {}


def test_fault_admin_endpoint(clean_lab: LabConfig, http: httpx.Client) -> None:
    url = f"{clean_lab.url('notify')}/-/lab/faults"
    assert http.get(url).json() == {"service": "notify", "faults": {}}
    assert http.put(url, json={"fault": "unhealthy"}).json()["faults"] == {"notify.unhealthy": True}
    assert http.get(f"{clean_lab.url('notify')}/healthz").status_code == 503
    # a full name may address another service; every process sees it
    http.put(url, json={"fault": "web.slow", "value": 1})
    assert http.get(f"{clean_lab.url('web')}/-/lab/faults").json()["faults"] == {"web.slow": 1}
    assert http.put(url, json={"fault": "nope"}).status_code == 400
    assert http.put(url, content=b"not json").status_code == 400
    assert http.delete(url).json() == {"cleared": ["notify.unhealthy"], "faults": {}}
    assert http.get(f"{clean_lab.url('notify')}/healthz").status_code == 200


# --- authority ------------------------------------------------------------------------------


def test_discovery_document_and_every_url_resolves(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("authority")
    doc = http.get(f"{base}/.well-known/openid-configuration").json()
    assert doc["issuer"] == base
    for field in ("response_types_supported", "subject_types_supported",
                  "id_token_signing_alg_values_supported", "grant_types_supported",
                  "token_endpoint_auth_methods_supported", "scopes_supported"):
        assert isinstance(doc[field], list) and doc[field], field
    assert "ES256" in doc["id_token_signing_alg_values_supported"]
    assert "client_credentials" in doc["grant_types_supported"]
    assert http.get(doc["jwks_uri"]).status_code == 200
    assert http.post(doc["token_endpoint"], data={}).status_code == 400
    assert http.get(doc["authorization_endpoint"]).status_code == 400
    redirect = http.get(doc["authorization_endpoint"], params={
        "client_id": "x", "response_type": "code", "redirect_uri": "http://127.0.0.1/cb", "state": "s"})
    assert redirect.status_code == 302
    assert redirect.headers["location"].startswith("http://127.0.0.1/cb?error=login_required")
    assert "state=s" in redirect.headers["location"]


def test_jwks_kid_is_rfc7638_thumbprint(clean_lab: LabConfig, http: httpx.Client) -> None:
    (jwk,) = http.get(f"{clean_lab.url('authority')}/jwks").json()["keys"]
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256" and jwk["alg"] == "ES256"
    required = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, sort_keys=True,
                          separators=(",", ":")).encode()
    thumb = base64.urlsafe_b64encode(hashlib.sha256(required).digest()).rstrip(b"=").decode()
    assert jwk["kid"] == thumb


def _token(http: httpx.Client, lab: LabConfig, **kwargs: Any) -> httpx.Response:
    return http.post(f"{lab.url('authority')}/token", **kwargs)


def test_token_verifies_with_joserfc_against_jwks(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("authority")
    response = _token(http, clean_lab, data={"grant_type": "client_credentials"}, auth=auth(clean_lab))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    keyset = KeySet.import_key_set(http.get(f"{base}/jwks").json())
    token = jwt.decode(body["access_token"], keyset, algorithms=["ES256"])
    assert token.header["alg"] == "ES256"
    claims = token.claims
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": base},
        aud={"essential": True, "value": "stellaops"},
        sub={"essential": True, "value": "stellaops-cutover"},
        exp={"essential": True}, iat={"essential": True}, jti={"essential": True},
    )
    registry.validate(claims)
    assert claims["exp"] - claims["iat"] == 3600
    assert "scanner.scan" in claims["scope"].split()

    # a tampered token does not verify
    header, payload, sig = body["access_token"].split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["sub"] = "attacker"
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(BadSignatureError):
        jwt.decode(f"{header}.{forged_payload}.{sig}", keyset, algorithms=["ES256"])


def test_token_client_auth_and_scopes(clean_lab: LabConfig, http: httpx.Client) -> None:
    form = {"grant_type": "client_credentials", "client_id": auth(clean_lab)[0], "client_secret": auth(clean_lab)[1],
            "scope": "signer.sign"}
    ok = _token(http, clean_lab, data=form)
    assert ok.status_code == 200 and ok.json()["scope"] == "signer.sign"
    bad = _token(http, clean_lab, data={"grant_type": "client_credentials"}, auth=(auth(clean_lab)[0], "wrong"))
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    unknown = _token(http, clean_lab, data={"grant_type": "client_credentials"}, auth=("who", "x"))
    assert unknown.status_code == 401
    scope = _token(http, clean_lab, data={"grant_type": "client_credentials", "scope": "admin"}, auth=auth(clean_lab))
    assert scope.status_code == 400 and scope.json()["error"] == "invalid_scope"
    grant = _token(http, clean_lab, data={"grant_type": "password"}, auth=auth(clean_lab))
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"


def test_tokens_issued_audit_and_metric(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("authority")
    before = http.get(f"{base}/-/audit").json()["tokens_issued"]
    _token(http, clean_lab, data={"grant_type": "client_credentials"}, auth=auth(clean_lab))
    _token(http, clean_lab, data={"grant_type": "client_credentials"}, auth=(auth(clean_lab)[0], "wrong"))
    after = http.get(f"{base}/-/audit").json()["tokens_issued"]
    assert after == before + 1
    assert f'lab_authority_tokens_issued_total{{service="authority"}} {after}' in http.get(f"{base}/metrics").text


# --- signer ---------------------------------------------------------------------------------


def test_signer_key(clean_lab: LabConfig, http: httpx.Client) -> None:
    key = signer_key(http, clean_lab)
    assert key["algorithm"] == "ES256"
    pub = load_pem_public_key(key["publicKeyPem"].encode())
    assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"
    der = base64.b64decode("".join(key["publicKeyPem"].strip().splitlines()[1:-1]))
    assert key["keyid"] == hashlib.sha256(der).hexdigest()


def test_sign_plain_bundle_signs_the_raw_bytes(clean_lab: LabConfig, http: httpx.Client) -> None:
    raw = SBOM.read_bytes()
    response = http.post(f"{clean_lab.url('signer')}/api/v1/signer/sign", content=raw,
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    body = response.json()
    envelope, signer = body["envelope"], body["signer"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert base64.b64decode(envelope["payload"]) == raw
    assert signer["payloadSha256"] == hashlib.sha256(raw).hexdigest()
    key = signer_key(http, clean_lab)
    assert signer["keyid"] == key["keyid"] == envelope["signatures"][0]["keyid"]
    assert signer["algorithm"] == "ES256"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", signer["signedAt"])
    assert independent_verify(envelope, key["publicKeyPem"])
    tampered = dict(envelope, payload=base64.b64encode(raw + b" ").decode())
    assert not independent_verify(tampered, key["publicKeyPem"])
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[8] ^= 0xFF
    bad_sig = dict(envelope, signatures=[{"keyid": signer["keyid"], "sig": base64.b64encode(bytes(sig)).decode()}])
    assert not independent_verify(bad_sig, key["publicKeyPem"])


def test_sign_envelope_resigns_its_payload(clean_lab: LabConfig, http: httpx.Client) -> None:
    demo = json.loads(DEMO_DSSE.read_text())
    body = http.post(f"{clean_lab.url('signer')}/api/v1/signer/sign", json=demo).json()
    assert body["envelope"]["payloadType"] == demo["payloadType"]
    assert body["envelope"]["payload"] == demo["payload"]
    assert body["signer"]["payloadSha256"] == hashlib.sha256(base64.b64decode(demo["payload"])).hexdigest()
    assert independent_verify(body["envelope"], signer_key(http, clean_lab)["publicKeyPem"])


def test_sign_rejects_non_json(clean_lab: LabConfig, http: httpx.Client) -> None:
    assert http.post(f"{clean_lab.url('signer')}/api/v1/signer/sign", content=b"{oops").status_code == 400


def test_signer_verify(clean_lab: LabConfig, http: httpx.Client) -> None:
    url = f"{clean_lab.url('signer')}/api/v1/signer/verify"
    demo = json.loads(DEMO_DSSE.read_text())
    result = http.post(url, json=demo).json()
    assert result["ok"] is True and result["keyid"] == demo["signatures"][0]["keyid"]
    signed = http.post(f"{clean_lab.url('signer')}/api/v1/signer/sign", json={"x": 1}).json()
    assert http.post(url, json={"envelope": signed["envelope"]}).json()["ok"] is True
    tampered = dict(demo, payload=base64.b64encode(b"{}").decode())
    result = http.post(url, json=tampered).json()
    assert result == {"ok": False, "keyid": None, "reason": "signature does not verify"}
    assert http.post(url, json={"nope": 1}).json()["ok"] is False


# --- attestor -------------------------------------------------------------------------------


def test_attestor_store_get_verify(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("attestor")
    before = http.get(f"{base}/-/audit").json()["submissions"]
    signed = http.post(f"{clean_lab.url('signer')}/api/v1/signer/sign", json={"hello": "attestor"}).json()
    created = http.post(f"{base}/api/v1/attestations", json=signed["envelope"])
    assert created.status_code == 201
    uuid = created.json()["uuid"]
    assert created.json()["payloadSha256"] == signed["signer"]["payloadSha256"]
    stored = http.get(f"{base}/api/v1/attestations/{uuid}").json()
    assert stored["envelope"] == signed["envelope"]
    for method in ("POST", "GET"):
        verdict = http.request(method, f"{base}/api/v1/attestations/{uuid}/verify").json()
        assert verdict["ok"] is True and verdict["keyid"] == signed["signer"]["keyid"]
    assert http.get(f"{base}/-/audit").json()["submissions"] == before + 1
    # the demo bundle (trusted key) verifies; a tampered copy is stored but fails verification
    demo = json.loads(DEMO_DSSE.read_text())
    demo_id = http.post(f"{base}/api/v1/attestations", json={"envelope": demo}).json()["uuid"]
    assert http.post(f"{base}/api/v1/attestations/{demo_id}/verify").json()["ok"] is True
    tampered = dict(signed["envelope"], payload=base64.b64encode(b'{"hello":"mallory"}').decode())
    bad_id = http.post(f"{base}/api/v1/attestations", json=tampered).json()["uuid"]
    verdict = http.post(f"{base}/api/v1/attestations/{bad_id}/verify").json()
    assert verdict["ok"] is False and verdict["reason"] == "signature does not verify"


def test_attestor_errors(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("attestor")
    assert http.get(f"{base}/api/v1/attestations/no-such-uuid").status_code == 404
    assert http.post(f"{base}/api/v1/attestations/no-such-uuid/verify").status_code == 404
    assert http.post(f"{base}/api/v1/attestations", json={"payload": "x"}).status_code == 400


# --- scanner --------------------------------------------------------------------------------


def _submit(http: httpx.Client, lab: LabConfig, body: bytes, **params: Any) -> httpx.Response:
    return http.post(f"{lab.url('scanner')}/api/v1/scans", content=body, params=params,
                     headers={"Content-Type": "application/json"})


def _wait_completed(http: httpx.Client, lab: LabConfig, scan_id: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while http.get(f"{lab.url('scanner')}/api/v1/scans/{scan_id}").json()["status"] != "completed":
        assert time.monotonic() < deadline, "scan did not complete"
        time.sleep(0.05)


def test_scan_lifecycle_and_signed_report(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("scanner")
    events_before = http.get(f"{base}/-/audit").json()["scan_events"]
    raw = SBOM.read_bytes()
    submitted = _submit(http, clean_lab, raw)
    assert submitted.status_code == 202
    scan_id = submitted.json()["id"]
    assert submitted.json()["status"] == "queued"
    first = http.get(f"{base}/api/v1/scans/{scan_id}").json()
    assert first["status"] in ("queued", "running")
    assert first["sbomSha256"] == hashlib.sha256(raw).hexdigest()
    not_ready = http.get(f"{base}/api/v1/scans/{scan_id}/report")
    assert not_ready.status_code == 409
    depth = http.get(f"{base}/api/v1/queue/health").json()
    assert depth["status"] == "Healthy" and depth["queue"] == "connected" and depth["depth"] >= 1
    _wait_completed(http, clean_lab, scan_id)
    report = http.get(f"{base}/api/v1/scans/{scan_id}/report").json()
    components = json.loads(raw)["components"]
    assert report["id"] == scan_id and report["components"] == len(components) == 13
    assert any(f["id"] == "CVE-2021-23337" for f in report["findings"])  # lodash 4.17.20
    # the DSSE payload is exactly the report body without dsse/signer
    envelope = report["dsse"]
    body = {k: v for k, v in report.items() if k not in ("dsse", "signer")}
    assert json.loads(base64.b64decode(envelope["payload"])) == body
    assert report["signer"]["payloadSha256"] == hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()
    assert independent_verify(envelope, signer_key(http, clean_lab)["publicKeyPem"])
    # stable: the second read is the stored report
    assert http.get(f"{base}/api/v1/scans/{scan_id}/report").json() == report
    assert http.get(f"{base}/-/audit").json()["scan_events"] == events_before + 2
    assert "lab_scanner_scan_events_total" in http.get(f"{base}/metrics").text


def test_findings_are_deterministic(clean_lab: LabConfig, http: httpx.Client) -> None:
    ids = [_submit(http, clean_lab, SBOM.read_bytes(), scan_seconds=0).json()["id"] for _ in range(2)]
    reports = [http.get(f"{clean_lab.url('scanner')}/api/v1/scans/{i}/report").json() for i in ids]
    assert reports[0]["findings"] == reports[1]["findings"]
    assert reports[0]["summary"] == reports[1]["summary"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[]", "SBOM must be a JSON object"),
        (b'{"bomFormat":"SPDX","specVersion":"1.5","components":[]}', 'bomFormat must be "CycloneDX"'),
        (b'{"bomFormat":"CycloneDX","components":[]}', "specVersion is required"),
        (b'{"bomFormat":"CycloneDX","specVersion":"1.5"}', "components must be a list"),
        (b'{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{}]}', "components[0] needs a name"),
    ],
)
def test_scan_rejects_invalid_sboms(clean_lab: LabConfig, http: httpx.Client, body: bytes, reason: str) -> None:
    response = _submit(http, clean_lab, body)
    assert response.status_code == 400 and response.json()["reason"] == reason


def test_scan_unknown_id(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("scanner")
    assert http.get(f"{base}/api/v1/scans/nope").status_code == 404
    assert http.get(f"{base}/api/v1/scans/nope/report").status_code == 404
    assert _submit(http, clean_lab, b"not json").status_code == 400


# --- runtime ingest -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/runtime/events", "/runtime/events"])
def test_runtime_event_ingest_and_lookup(clean_lab: LabConfig, http: httpx.Client, path: str) -> None:
    base = clean_lab.url("runtime")
    event = json.loads(RUNTIME_EVENT.read_text())
    event["eventId"] = f"{event['eventId']}-{path.count('/')}"
    accepted = http.post(f"{base}{path}", json=event)
    assert accepted.status_code == 202
    assert accepted.json()["eventIds"] == [event["eventId"]] and accepted.json()["accepted"] == 1
    found = http.get(f"{base}/api/v1/runtime/events", params={"eventId": event["eventId"]}).json()
    assert found["count"] == 1
    record = found["events"][0]
    assert record["event"] == event and record["kind"] == "ContainerStart"
    assert record["tenant"] == event["tenant"] and record["node"] == event["node"]
    assert http.get(f"{base}/api/v1/runtime/events/{event['eventId']}").json()["eventId"] == event["eventId"]
    again = http.post(f"{base}{path}", json={"events": [event]}).json()
    assert again["accepted"] == 0 and again["duplicates"] == 1


def test_runtime_batch_and_errors(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("runtime")
    batch = [{"eventId": "batch-a", "kind": "ContainerStart"}, {"event": {"eventId": "batch-b", "kind": "Drift"}}]
    assert http.post(f"{base}/runtime/events", json=batch).json()["eventIds"] == ["batch-a", "batch-b"]
    assert http.get(f"{base}/api/v1/runtime/events", params=[("eventId", "batch-a"), ("eventId", "batch-b")]).json()["count"] == 2
    assert http.get(f"{base}/api/v1/runtime/events/none").status_code == 404
    assert http.post(f"{base}/runtime/events", json=[1]).status_code == 400
    assert http.post(f"{base}/runtime/events", content=b"x").status_code == 400


# --- notify and web -------------------------------------------------------------------------


def test_notify_channels(clean_lab: LabConfig, http: httpx.Client) -> None:
    body = http.get(f"{clean_lab.url('notify')}/api/v1/notify/channels").json()
    assert any(c["name"] == "#launch-bridge" for c in body["channels"])


def test_web_pages_need_the_login(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("web")
    for path in ("/", "/policy"):
        away = http.get(f"{base}{path}")
        assert away.status_code == 302 and away.headers["location"] == f"/login?next=%2F{path[1:]}"
    form = http.get(f"{base}/login")
    assert form.status_code == 200 and 'type="password" name="password"' in form.text
    wrong = http.post(f"{base}/login", data={"username": WEB_USER, "password": "not-it", "next": "/policy"})
    assert wrong.status_code == 401 and "Wrong user name or password." in wrong.text and "not-it" not in wrong.text
    assert SESSION_COOKIE not in http.cookies
    right = http.post(f"{base}/login", data={"username": WEB_USER, "password": service_env(clean_lab)["LAB_WEB_PASSWORD"],
                                             "next": "/policy"})
    assert right.status_code == 302 and right.headers["location"] == "/policy" and SESSION_COOKIE in http.cookies
    assert http.get(f"{base}/policy").status_code == 200


def test_web_dashboard_and_policy(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("web")
    web_login(http, clean_lab)
    page = http.get(f"{base}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="dashboard"' in page.text and 'id="widget-scans"' in page.text
    assert "<script" not in page.text.lower()
    assert not re.search(r'(src|href)="(https?:)?//', page.text)  # no external URLs
    policy = http.get(f"{base}/policy")
    assert policy.status_code == 200 and 'id="policy-view"' in policy.text
    digest = re.compile(r'class="policy-digest">([0-9a-f]{64})<')
    assert digest.search(page.text).group(1) == digest.search(policy.text).group(1)  # type: ignore[union-attr]
