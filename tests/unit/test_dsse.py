"""cutover_lib._dsse: PAE, signing, verification, key ids, and the committed demo bundle."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from cutover_lib import _dsse
from cutover_lib._dsse import (
    Envelope,
    VerifyResult,
    key_id,
    pae,
    payload_sha256,
    sign_envelope,
    verify_envelope,
)

REPO = Path(__file__).resolve().parents[2]
DEMO_ENVELOPE = REPO / "samples" / "dsse" / "demo.json"
DEMO_PUBLIC_KEY = REPO / "samples" / "dsse" / "trusted" / "demo-signer.pub.pem"


def _pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_exports_are_sorted_and_exist() -> None:
    assert _dsse.__all__ == sorted(_dsse.__all__)
    for name in _dsse.__all__:
        assert hasattr(_dsse, name)


def test_pae_matches_the_spec_example() -> None:
    # https://github.com/secure-systems-lab/dsse/blob/master/protocol.md#test-vectors
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t/é", "ü".encode()) == b"DSSEv1 4 t/\xc3\xa9 2 \xc3\xbc"
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_sign_and_verify_round_trip(ec_key: ec.EllipticCurvePrivateKey) -> None:
    env = sign_envelope("application/vnd.in-toto+json", b'{"a":1}', ec_key)
    doc = env.to_dict()
    assert doc["payload"] == base64.b64encode(b'{"a":1}').decode()
    assert doc["signatures"][0]["keyid"] == key_id(ec_key.public_key())
    result = verify_envelope(doc, {key_id(ec_key): _pem(ec_key)})
    assert result == VerifyResult(True, key_id(ec_key), "signature verified")
    assert bool(result)
    assert payload_sha256(doc) == hashlib.sha256(b'{"a":1}').hexdigest()
    assert Envelope.from_dict(json.loads(env.to_json())) == env


def test_signature_is_over_pae(ec_key: ec.EllipticCurvePrivateKey) -> None:
    from cryptography.hazmat.primitives import hashes

    env = sign_envelope("text/plain", b"hi", ec_key)
    ec_key.public_key().verify(env.signatures[0].sig, b"DSSEv1 10 text/plain 2 hi",
                               ec.ECDSA(hashes.SHA256()))


def test_tampered_payload_fails(ec_key: ec.EllipticCurvePrivateKey) -> None:
    doc = sign_envelope("text/plain", b"original", ec_key).to_dict()
    doc["payload"] = base64.b64encode(b"tampered").decode()
    result = verify_envelope(doc, {key_id(ec_key): ec_key.public_key()})
    assert not result.ok and result.reason == "signature does not verify"


def test_tampered_payload_type_fails(ec_key: ec.EllipticCurvePrivateKey) -> None:
    doc = sign_envelope("text/plain", b"original", ec_key).to_dict()
    doc["payloadType"] = "application/json"
    assert not verify_envelope(doc, {key_id(ec_key): ec_key.public_key()}).ok


def test_tampered_signature_fails(ec_key: ec.EllipticCurvePrivateKey) -> None:
    doc = sign_envelope("text/plain", b"original", ec_key).to_dict()
    sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
    sig[-1] ^= 0x01
    doc["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    assert not verify_envelope(doc, {key_id(ec_key): ec_key.public_key()}).ok


def test_wrong_key_fails(ec_key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    doc = sign_envelope("text/plain", b"x", ec_key).to_dict()
    result = verify_envelope(doc, {key_id(other): _pem(other)})
    assert not result.ok
    assert "no trusted key" in result.reason


def test_keyid_is_only_a_hint(ec_key: ec.EllipticCurvePrivateKey) -> None:
    doc = sign_envelope("text/plain", b"x", ec_key, keyid="").to_dict()
    assert verify_envelope(doc, {"whatever": _pem(ec_key)}).keyid == "whatever"


def test_urlsafe_unpadded_base64_is_accepted(ec_key: ec.EllipticCurvePrivateKey) -> None:
    payload = b"\xfb\xff\xfe" * 5 + b"?"
    doc = sign_envelope("application/octet-stream", payload, ec_key).to_dict()
    doc["payload"] = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    sig = base64.b64decode(doc["signatures"][0]["sig"])
    doc["signatures"][0]["sig"] = base64.urlsafe_b64encode(sig).decode().rstrip("=")
    assert verify_envelope(doc, {key_id(ec_key): _pem(ec_key)}).ok


def test_ed25519_keys_work() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    doc = sign_envelope("text/plain", b"x", key).to_dict()
    assert verify_envelope(doc, {key_id(key): _pem(key)}).ok


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ([], "malformed envelope: envelope must be a JSON object"),
        ({"payload": "eA=="}, "malformed envelope: envelope has no payloadType"),
        ({"payloadType": "t"}, "malformed envelope: envelope has no base64 payload"),
        ({"payloadType": "t", "payload": "%%%"}, "malformed envelope: invalid base64"),
        ({"payloadType": "t", "payload": "eA==", "signatures": [{"keyid": "k"}]},
         "malformed envelope: every signature needs a base64 sig"),
        ({"payloadType": "t", "payload": "eA==", "signatures": []}, "envelope has no signatures"),
    ],
)
def test_malformed_envelopes_never_raise(doc: object, reason: str, ec_key: ec.EllipticCurvePrivateKey) -> None:
    result = verify_envelope(doc, {key_id(ec_key): ec_key.public_key()})  # type: ignore[arg-type]
    assert not result.ok
    assert result.reason.startswith(reason)


def test_no_keys(ec_key: ec.EllipticCurvePrivateKey) -> None:
    doc = sign_envelope("t", b"x", ec_key).to_dict()
    assert verify_envelope(doc, {}).reason == "no trusted public keys"


def test_key_id_is_sha256_of_spki_der(ec_key: ec.EllipticCurvePrivateKey) -> None:
    der = ec_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = hashlib.sha256(der).hexdigest()
    assert key_id(ec_key) == key_id(ec_key.public_key()) == key_id(_pem(ec_key)) == expected
    assert key_id(_pem(ec_key).encode()) == expected


def test_committed_demo_bundle_verifies_with_committed_public_key() -> None:
    envelope = json.loads(DEMO_ENVELOPE.read_text())
    pem = DEMO_PUBLIC_KEY.read_text()
    result = verify_envelope(envelope, {key_id(pem): pem})
    assert result.ok, result.reason
    assert envelope["signatures"][0]["keyid"] == key_id(pem)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    subject = statement["subject"][0]
    sbom = REPO / subject["name"]
    assert subject["digest"]["sha256"] == hashlib.sha256(sbom.read_bytes()).hexdigest()


def test_no_private_key_is_committed() -> None:
    for path in (REPO / "samples").rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY-----" not in path.read_bytes(), path
