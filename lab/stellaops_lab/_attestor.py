"""Lab attestor: store DSSE envelopes by uuid and re-verify them on request.

A named stand-in for the Stella Ops Attestor. Verification uses the signer's public key,
fetched from ``GET {signer_url}/api/v1/signer/key`` and cached in the process, plus the
trusted public keys (``*.pem`` in the trust folders, by default ``samples/dsse/trusted``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from cutover_lib.evidence.dsse import Envelope, payload_sha256, verify_envelope

from ._keys import load_trusted_keys
from ._web_base import LabHandler, ServiceContext, utc_now

__all__ = ["handlers"]


async def signer_key(ctx: ServiceContext, refresh: bool = False) -> dict[str, Any]:
    """The signer's ``{"keyid", "algorithm", "publicKeyPem"}``, cached per process."""
    if refresh or "signer_key" not in ctx.cache:
        client = AsyncHTTPClient()
        response = await client.fetch(
            f"{ctx.signer_url}/api/v1/signer/key", connect_timeout=2.0, request_timeout=5.0
        )
        ctx.cache["signer_key"] = json.loads(response.body)
    key: dict[str, Any] = ctx.cache["signer_key"]
    return key


def _envelope_of(doc: Any) -> Any:
    """Accept a bare envelope, ``{"envelope": ...}`` or a signer sign response."""
    if isinstance(doc, dict) and isinstance(doc.get("envelope"), dict):
        return doc["envelope"]
    return doc


class SubmitHandler(LabHandler):
    def post(self) -> None:
        doc = _envelope_of(self.json_body())
        try:
            Envelope.from_dict(doc)
        except ValueError as exc:
            self.send_json({"error": "invalid_envelope", "reason": str(exc)}, 400)
            return
        att_id = str(uuid.uuid4())
        digest = payload_sha256(doc)
        submitted = utc_now()
        self.ctx.db.execute(
            "INSERT INTO attestations (uuid, envelope, payload_sha256, submitted_at) VALUES (?,?,?,?)",
            (att_id, json.dumps(doc), digest, submitted),
        )
        self.set_header("Location", f"/api/v1/attestations/{att_id}")
        self.send_json({"uuid": att_id, "payloadSha256": digest, "submittedAt": submitted}, 201)


def _load(ctx: ServiceContext, att_id: str) -> Any:
    return ctx.db.execute("SELECT * FROM attestations WHERE uuid = ?", (att_id,)).fetchone()


class AttestationHandler(LabHandler):
    def get(self, att_id: str) -> None:
        row = _load(self.ctx, att_id)
        if row is None:
            self.send_json({"error": "not_found", "uuid": att_id}, 404)
            return
        self.send_json(
            {
                "uuid": row["uuid"],
                "envelope": json.loads(row["envelope"]),
                "payloadSha256": row["payload_sha256"],
                "submittedAt": row["submitted_at"],
            }
        )


class VerifyHandler(LabHandler):
    async def get(self, att_id: str) -> None:
        await self.post(att_id)

    async def post(self, att_id: str) -> None:
        row = _load(self.ctx, att_id)
        if row is None:
            self.send_json({"error": "not_found", "uuid": att_id, "ok": False}, 404)
            return
        envelope = json.loads(row["envelope"])
        try:
            key = await signer_key(self.ctx)
            wanted = {s.get("keyid") for s in envelope.get("signatures", []) if isinstance(s, dict)}
            if key["keyid"] not in wanted and wanted - {None, ""}:
                key = await signer_key(self.ctx, refresh=True)
        except (HTTPClientError, OSError, ValueError, KeyError) as exc:
            self.send_json(
                {"ok": False, "uuid": att_id, "reason": f"signer key unavailable: {exc}"}, 502
            )
            return
        keys: dict[str, Any] = load_trusted_keys(self.ctx.trust_dirs)
        keys[key["keyid"]] = key["publicKeyPem"]
        result = verify_envelope(envelope, keys)
        self.send_json(
            {
                "ok": result.ok,
                "uuid": att_id,
                "keyid": result.keyid,
                "reason": result.reason,
                "payloadSha256": row["payload_sha256"],
                "verifiedAt": utc_now(),
            }
        )


def _submissions(ctx: ServiceContext) -> int:
    return int(ctx.db.execute("SELECT COUNT(*) FROM attestations").fetchone()[0])


class AuditHandler(LabHandler):
    def get(self) -> None:
        self.send_json({"submissions": _submissions(self.ctx)})


def handlers(ctx: ServiceContext) -> list[tuple[str, type, dict[str, Any]]]:
    ctx.counters["lab_attestor_submissions_total"] = (
        "Attestations stored (from the audit table).",
        lambda: _submissions(ctx),
    )
    args = {"ctx": ctx}
    uid = r"([^/]+)"
    return [
        (r"/api/v1/attestations", SubmitHandler, args),
        (rf"/api/v1/attestations/{uid}", AttestationHandler, args),
        (rf"/api/v1/attestations/{uid}/verify", VerifyHandler, args),
        (r"/-/audit", AuditHandler, args),
    ]
