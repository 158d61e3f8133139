"""Lab signer: DSSE signing and verification with a persistent P-256 key.

A named stand-in for the Stella Ops Signer. ``POST /api/v1/signer/sign`` takes a "bundle":

* if the body is a DSSE envelope (a JSON object with string ``payloadType`` and base64
  ``payload``; ``signatures`` may be absent or empty), the decoded payload is re-signed
  under its own ``payloadType``;
* otherwise the payload is **the raw request body bytes exactly as posted** and the
  payload type is ``application/vnd.in-toto+json``; so ``sha256(file you posted)`` equals
  ``signer.payloadSha256``.

The signature is ECDSA P-256 / SHA-256 (DER, base64) over the DSSE PAE. Under the
``signer.bad_signature`` fault the signature is a valid ECDSA signature over *other*
bytes, so it never verifies.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from cutover_lib.evidence.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    Signature,
    b64decode,
    key_id,
    pae,
    sign_envelope,
    verify_envelope,
)

from ._keys import load_or_create_key, load_trusted_keys, public_pem
from ._web_base import LabHandler, ServiceContext, utc_now

__all__ = ["ALGORITHM", "handlers", "is_envelope"]

ALGORITHM = "ES256"


def is_envelope(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("payloadType"), str)
        and isinstance(doc.get("payload"), str)
    )


class KeyHandler(LabHandler):
    def get(self) -> None:
        self.send_json(
            {
                "keyid": self.ctx.cache["keyid"],
                "algorithm": ALGORITHM,
                "publicKeyPem": self.ctx.cache["pem"],
            }
        )


class SignHandler(LabHandler):
    def post(self) -> None:
        doc = self.json_body()
        if is_envelope(doc):
            try:
                payload = b64decode(doc["payload"])
            except ValueError as exc:
                self.send_json({"error": "invalid_envelope", "reason": str(exc)}, 400)
                return
            payload_type = doc["payloadType"]
        else:
            payload = self.request.body
            payload_type = IN_TOTO_PAYLOAD_TYPE
        key: ec.EllipticCurvePrivateKey = self.ctx.cache["key"]
        keyid: str = self.ctx.cache["keyid"]
        if self.ctx.fault("bad_signature"):
            wrong = key.sign(pae(payload_type, payload + b"\n#lab-fault"), ec.ECDSA(hashes.SHA256()))
            envelope = Envelope(payload_type, payload, (Signature(keyid, wrong),))
        else:
            envelope = sign_envelope(payload_type, payload, key, keyid)
        self.ctx.db.execute(
            "INSERT INTO counters (name, value) VALUES ('signatures', 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1"
        )
        self.send_json(
            {
                "envelope": envelope.to_dict(),
                "signer": {
                    "keyid": keyid,
                    "algorithm": ALGORITHM,
                    "signedAt": utc_now(),
                    "payloadSha256": hashlib.sha256(payload).hexdigest(),
                    "payloadType": payload_type,
                },
            }
        )


class VerifyHandler(LabHandler):
    def post(self) -> None:
        doc = self.json_body()
        if isinstance(doc, dict) and isinstance(doc.get("envelope"), dict):
            doc = doc["envelope"]
        keys: dict[str, Any] = load_trusted_keys(self.ctx.trust_dirs)
        keys[self.ctx.cache["keyid"]] = self.ctx.cache["pem"]
        result = verify_envelope(doc, keys)
        body: dict[str, Any] = {"ok": result.ok, "keyid": result.keyid, "reason": result.reason}
        if result.ok:
            body["payloadSha256"] = hashlib.sha256(b64decode(doc["payload"])).hexdigest()
            body["payloadType"] = doc["payloadType"]
        self.send_json(body)


def _signatures(ctx: ServiceContext) -> int:
    row = ctx.db.execute("SELECT value FROM counters WHERE name = 'signatures'").fetchone()
    return int(row[0]) if row else 0


def handlers(ctx: ServiceContext) -> list[tuple[str, type, dict[str, Any]]]:
    key = load_or_create_key(ctx.data_dir / "keys" / "signer.pem")
    ctx.cache.update({"key": key, "keyid": key_id(key), "pem": public_pem(key)})
    ctx.counters["lab_signer_signatures_total"] = ("DSSE signatures produced.", lambda: _signatures(ctx))
    args = {"ctx": ctx}
    return [
        (r"/api/v1/signer/key", KeyHandler, args),
        (r"/api/v1/signer/sign", SignHandler, args),
        (r"/api/v1/signer/verify", VerifyHandler, args),
    ]
