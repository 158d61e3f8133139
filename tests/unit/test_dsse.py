"""cutover_lib.evidence.dsse: PAE, signing, verification, key ids, and the committed demo bundle."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from cutover_lib.evidence import dsse as _dsse
from cutover_lib.evidence.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
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


def test_urlsafe_padded_base64_is_accepted_unpadded_is_not(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """Issue 12: URL-safe base64 is read (the DSSE spec allows it, securesystemslib reads it); padding
    is required, as securesystemslib requires it."""
    payload = b"\xfb\xff\xfe" * 5 + b"?"
    doc = sign_envelope("application/octet-stream", payload, ec_key).to_dict()
    sig = base64.b64decode(doc["signatures"][0]["sig"])
    doc["payload"] = base64.urlsafe_b64encode(payload).decode()
    doc["signatures"][0]["sig"] = base64.urlsafe_b64encode(sig).decode()
    assert "-" in doc["payload"] and "_" in doc["payload"] and doc["payload"].endswith("=")
    assert verify_envelope(doc, {key_id(ec_key): _pem(ec_key)}).ok
    doc["payload"] = doc["payload"].rstrip("=")
    result = verify_envelope(doc, {key_id(ec_key): _pem(ec_key)})
    assert not result.ok
    assert result.reason == ("malformed envelope: invalid base64: length 22 is not a multiple of 4 "
                             "('=' padding is required) (in payload)")


@pytest.mark.parametrize(
    ("where", "text", "reason"),
    [
        ("payload", "eA==\n", "character '\\n' at offset 4"),
        ("payload", "e A==", "character ' ' at offset 1"),
        ("payload", "-A!=", "character '!' at offset 2"),  # URL-safe decoding used to drop the '!'
        ("signatures[0].sig", "eA=\t", "character '\\t' at offset 3"),
        ("signatures[0].sig", "eA", "length 2 is not a multiple of 4"),
    ],
)
def test_junk_in_base64_is_one_line_naming_the_field(where: str, text: str, reason: str,
                                                     ec_key: ec.EllipticCurvePrivateKey) -> None:
    doc = sign_envelope("t", b"x", ec_key).to_dict()
    if where == "payload":
        doc["payload"] = text
    else:
        doc["signatures"][0]["sig"] = text
    result = verify_envelope(doc, {key_id(ec_key): _pem(ec_key)})
    assert not result.ok and "\n" not in result.reason
    assert result.reason.startswith(f"malformed envelope: invalid base64: {reason}")
    assert result.reason.endswith(f"(in {where})")
    with pytest.raises(ValueError, match="invalid base64"):
        Envelope.from_dict(doc)


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


# --------------------------------------------------------------------------- issue 12: interop with securesystemslib
# securesystemslib (the reference DSSE implementation of the secure-systems-lab) signs what we verify and
# verifies what we sign; its reader (Envelope.from_dict -> b64dec: base64.b64decode(validate=True), then
# the same with altchars "-_") is the yardstick for which base64 we accept.

from securesystemslib import exceptions as sslib_exceptions  # noqa: E402 - the dev extra installs it
from securesystemslib.dsse import Envelope as SslibEnvelope  # noqa: E402
from securesystemslib.signer import CryptoSigner, SSlibKey  # noqa: E402

# a fixed Ed25519 key: its signatures are deterministic, so every case below runs on the same strings
ED_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))  # (its signature below has "+" and "/")
INTEROP_PAYLOAD = b"\xfb\xef\xbe\xff\xff\xff" + b'{"_type":"https://in-toto.io/Statement/v1"}'  # '+' and '/' in base64


def _sslib_key(private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> SSlibKey:
    return SSlibKey.from_crypto(private.public_key(), keyid=key_id(private))


def _sslib_verifies(doc: dict, private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bool:
    try:
        envelope = SslibEnvelope.from_dict(json.loads(json.dumps(doc)))  # (from_dict rewrites its input)
        envelope.verify([_sslib_key(private)], 1)
    except (ValueError, sslib_exceptions.VerificationError):  # binascii.Error is a ValueError
        return False
    return True


@pytest.mark.parametrize("make_key", [lambda: ec.generate_private_key(ec.SECP256R1()), lambda: ED_KEY],
                         ids=["ecdsa-p256", "ed25519"])
def test_securesystemslib_verifies_our_envelopes(make_key) -> None:  # type: ignore[no-untyped-def]
    key = make_key()
    doc = sign_envelope(IN_TOTO_PAYLOAD_TYPE, INTEROP_PAYLOAD, key).to_dict()
    assert _sslib_verifies(doc, key)
    doc["payloadType"] = "text/plain"  # and it checks what it verifies: PAE covers the type
    assert not _sslib_verifies(doc, key)


@pytest.mark.parametrize("make_key", [lambda: ec.generate_private_key(ec.SECP256R1()), lambda: ED_KEY],
                         ids=["ecdsa-p256", "ed25519"])
def test_we_verify_securesystemslib_envelopes(make_key) -> None:  # type: ignore[no-untyped-def]
    key = make_key()
    theirs = SslibEnvelope(INTEROP_PAYLOAD, IN_TOTO_PAYLOAD_TYPE, {})
    theirs.sign(CryptoSigner(key, _sslib_key(key)))
    doc = theirs.to_dict()
    result = verify_envelope(doc, {key_id(key): _pem(key)})
    assert result.ok and result.keyid == key_id(key), result.reason
    assert Envelope.from_dict(doc).payload == INTEROP_PAYLOAD
    other = ed25519.Ed25519PrivateKey.generate()
    assert not verify_envelope(doc, {key_id(other): _pem(other)}).ok


def _urlsafe(text: str) -> str:
    return text.replace("+", "-").replace("/", "_")


# how a base64 field is mangled, and whether securesystemslib accepts the envelope afterwards
JUNK = [
    ("as-written", lambda t: t, True),
    ("url-safe", _urlsafe, True),
    ("mixed-alphabets", lambda t: t.replace("+", "-", 1), True),
    ("missing-padding", lambda t: t.rstrip("="), False),
    ("url-safe-missing-padding", lambda t: _urlsafe(t).rstrip("="), False),
    ("extra-padding", lambda t: t + "=", False),
    ("bang-inside", lambda t: t[:8] + "!" + t[8:], False),
    ("bang-inside-url-safe", lambda t: _urlsafe(t)[:8] + "!" + _urlsafe(t)[8:], False),
    ("space-inside", lambda t: t[:8] + " " + t[8:], False),
    ("newline-inside", lambda t: t[:8] + "\n" + t[8:], False),
    ("newline-inside-url-safe", lambda t: _urlsafe(t)[:8] + "\n" + _urlsafe(t)[8:], False),
    ("trailing-newline", lambda t: t + "\n", False),
    ("tab-inside", lambda t: t[:8] + "\t" + t[8:], False),
    ("non-ascii-inside", lambda t: t[:8] + "é" + t[8:], False),
    ("padding-inside", lambda t: t[:8] + "==" + t[8:], False),
]


@pytest.mark.parametrize("field", ["payload", "sig"])
@pytest.mark.parametrize(("case", "mangle", "accepted"), JUNK, ids=[c[0] for c in JUNK])
def test_base64_verdicts_match_securesystemslib(field: str, case: str, mangle, accepted: bool) -> None:  # type: ignore[no-untyped-def]
    """Issue 12: each mangled envelope is accepted or rejected exactly as securesystemslib does (the
    ``accepted`` column says what it does today; if either side drifts, this fails)."""
    doc = sign_envelope(IN_TOTO_PAYLOAD_TYPE, INTEROP_PAYLOAD, ED_KEY).to_dict()
    original = doc["payload"] if field == "payload" else doc["signatures"][0]["sig"]
    assert "+" in original and "/" in original and original.endswith("=")  # every case changes something
    mangled = mangle(original)
    if field == "payload":
        doc["payload"] = mangled
    else:
        doc["signatures"][0]["sig"] = mangled
    ours = verify_envelope(doc, {key_id(ED_KEY): _pem(ED_KEY)})
    theirs = _sslib_verifies(doc, ED_KEY)
    assert (ours.ok, theirs) == (accepted, accepted), (case, ours.reason)
    if not accepted:
        where = "payload" if field == "payload" else "signatures[0].sig"
        assert ours.reason.startswith("malformed envelope: invalid base64: ") and ours.reason.endswith(f"(in {where})")
        assert "\n" not in ours.reason
