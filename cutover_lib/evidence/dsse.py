"""DSSE envelopes: pre-authentication encoding, signing and verification.

Implements the Dead Simple Signing Envelope (DSSE v1,
https://github.com/secure-systems-lab/dsse/blob/master/protocol.md):

* the signature covers ``PAE(payloadType, payload)`` where
  ``PAE = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`` (lengths are ASCII decimal
  byte counts);
* ``payload`` and ``sig`` are base64: the standard alphabet, padded, when we write; when we read,
  exactly what securesystemslib's ``Envelope.from_dict`` accepts (its ``b64dec``): strict base64
  with ``=`` padding in the standard alphabet or, failing that, in the URL-safe one (``-`` and
  ``_`` for ``+`` and ``/``; the spec lets a reader accept either). Whitespace, line breaks, any
  other character and missing padding are rejected, never skipped (see :func:`b64decode`);
* keys are ECDSA P-256 with SHA-256 (DER-encoded signatures) or Ed25519.

A key id is the lowercase hex SHA-256 of the public key's DER SubjectPublicKeyInfo, so
anyone holding the PEM can recompute it.

``cryptography`` is imported inside the functions so importing this module stays cheap
(``cutover --help`` must be instant).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Union

if TYPE_CHECKING:  # pragma: no cover - typing only
    from cryptography.hazmat.primitives.asymmetric.ec import (
        EllipticCurvePrivateKey,
        EllipticCurvePublicKey,
    )
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    PrivateKey = Union[EllipticCurvePrivateKey, Ed25519PrivateKey]
    PublicKey = Union[EllipticCurvePublicKey, Ed25519PublicKey]

__all__ = [
    "Envelope",
    "Signature",
    "VerifyResult",
    "b64decode",
    "key_id",
    "load_public_key",
    "pae",
    "payload_sha256",
    "sign_envelope",
    "verify_envelope",
]

#: The payload type of an in-toto attestation (Statement) inside DSSE.
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """Return the DSSE v1 pre-authentication encoding of ``payload_type`` and ``payload``."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=")


def b64decode(text: str) -> bytes:
    """Decode DSSE base64 strictly, as securesystemslib's DSSE reader does.

    First ``base64.b64decode(text, validate=True)`` (standard alphabet), then the same with
    ``altchars="-_"`` (URL-safe). Padding is required; whitespace, line breaks and any other
    character are errors (plain ``b64decode`` would silently drop them, so two different
    strings would carry the same signed bytes). Raises ``ValueError`` with a one-line reason.
    """
    if not isinstance(text, str):
        raise ValueError("expected a base64 string")
    for offset, char in enumerate(text):
        if char not in _B64_CHARS:
            raise ValueError(f"invalid base64: character {char!r} at offset {offset} is not in the standard "
                             f"or URL-safe alphabet (no whitespace or line breaks)")
    data = text.encode("ascii")
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:
        pass
    try:
        return base64.b64decode(data, altchars=b"-_", validate=True)
    except binascii.Error as exc:
        if len(text) % 4:
            raise ValueError(f"invalid base64: length {len(text)} is not a multiple of 4 "
                             f"('=' padding is required)") from None
        raise ValueError(f"invalid base64: {exc}") from None


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Signature:
    """One DSSE signature: the key id hint and the raw signature bytes."""

    keyid: str
    sig: bytes

    def to_dict(self) -> dict[str, str]:
        return {"keyid": self.keyid, "sig": _b64encode(self.sig)}


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope with its payload already base64-decoded."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Envelope":
        """Parse the JSON form (``payloadType``, ``payload``, ``signatures``).

        Raises ``ValueError`` naming the first field that is missing or malformed.
        """
        if not isinstance(data, Mapping):
            raise ValueError("envelope must be a JSON object")
        payload_type = data.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type:
            raise ValueError("envelope has no payloadType")
        if not isinstance(data.get("payload"), str):
            raise ValueError("envelope has no base64 payload")
        try:
            payload = b64decode(data["payload"])
        except ValueError as exc:
            raise ValueError(f"{exc} (in payload)") from None
        raw_sigs = data.get("signatures", [])
        if not isinstance(raw_sigs, list):
            raise ValueError("envelope signatures must be a list")
        sigs: list[Signature] = []
        for index, item in enumerate(raw_sigs):
            if not isinstance(item, Mapping) or not isinstance(item.get("sig"), str):
                raise ValueError("every signature needs a base64 sig")
            keyid = item.get("keyid") or ""
            try:
                sig = b64decode(item["sig"])
            except ValueError as exc:
                raise ValueError(f"{exc} (in signatures[{index}].sig)") from None
            sigs.append(Signature(keyid=str(keyid), sig=sig))
        return cls(payload_type=payload_type, payload=payload, signatures=tuple(sigs))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form, base64 in the standard alphabet."""
        return {
            "payloadType": self.payload_type,
            "payload": _b64encode(self.payload),
            "signatures": [s.to_dict() for s in self.signatures],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_envelope`; ``keyid`` names the key that verified, if any."""

    ok: bool
    keyid: str | None
    reason: str

    def __bool__(self) -> bool:
        return self.ok


def load_public_key(data: "str | bytes | PublicKey") -> "PublicKey":
    """Return a public key object from PEM text/bytes (or pass a key object through)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if isinstance(data, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        return data
    if isinstance(data, str):
        data = data.encode("ascii")
    key = load_pem_public_key(data)
    if not isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    return key


def key_id(public_key: "str | bytes | PublicKey | PrivateKey") -> str:
    """Return the key id: hex SHA-256 of the DER SubjectPublicKeyInfo of the public key."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if isinstance(public_key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        public_key = public_key.public_key()
    key = load_public_key(public_key)
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def sign_envelope(
    payload_type: str,
    payload: bytes,
    private_key: "PrivateKey",
    keyid: str | None = None,
) -> Envelope:
    """Sign ``PAE(payload_type, payload)`` and return a one-signature envelope.

    ``keyid`` defaults to :func:`key_id` of the key's public half.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    message = pae(payload_type, payload)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        sig = private_key.sign(message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(private_key, ed25519.Ed25519PrivateKey):
        sig = private_key.sign(message)
    else:
        raise TypeError(f"unsupported private key type {type(private_key).__name__}")
    kid = keyid if keyid is not None else key_id(private_key)
    return Envelope(payload_type, payload, (Signature(keyid=kid, sig=sig),))


def _verify_one(key: "PublicKey", message: bytes, sig: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(sig, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_envelope(
    envelope: "Mapping[str, Any] | Envelope",
    public_keys: "Mapping[str, str | bytes | PublicKey]",
) -> VerifyResult:
    """Check that at least one signature verifies under one of ``public_keys``.

    ``public_keys`` maps key id to a PEM (str/bytes) or key object. A signature whose
    ``keyid`` names a known key is checked against that key only; a signature with an
    empty or unknown keyid is tried against every key (the DSSE keyid is only a hint).
    Never raises for bad input: a malformed envelope gives ``ok=False`` with the reason.
    """
    try:
        env = envelope if isinstance(envelope, Envelope) else Envelope.from_dict(envelope)
    except ValueError as exc:
        return VerifyResult(False, None, f"malformed envelope: {exc}")
    if not env.signatures:
        return VerifyResult(False, None, "envelope has no signatures")
    if not public_keys:
        return VerifyResult(False, None, "no trusted public keys")
    keys = {kid: load_public_key(k) for kid, k in public_keys.items()}
    message = pae(env.payload_type, env.payload)
    tried: list[str] = []
    for signature in env.signatures:
        if signature.keyid in keys:
            candidates = [(signature.keyid, keys[signature.keyid])]
        else:
            candidates = list(keys.items())
        for kid, key in candidates:
            if _verify_one(key, message, signature.sig):
                return VerifyResult(True, kid, "signature verified")
        tried.append(signature.keyid or "<no keyid>")
    known = any(kid in keys for kid in tried)
    reason = (
        "signature does not verify"
        if known
        else f"no trusted key verifies the signature (keyid {', '.join(tried)})"
    )
    return VerifyResult(False, None, reason)


def payload_sha256(envelope: "Mapping[str, Any] | Envelope") -> str:
    """Return the hex SHA-256 of the decoded payload bytes."""
    env = envelope if isinstance(envelope, Envelope) else Envelope.from_dict(envelope)
    return hashlib.sha256(env.payload).hexdigest()
