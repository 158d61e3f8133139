import base64
import json
import urllib.parse
from pathlib import Path

import pytest

from cutover_lib.errors import SecretError
from cutover_lib.config.secrets import MASK, SecretRef, _forget_all_for_tests, mask, mask_obj, register_secret

REPO = Path(__file__).resolve().parents[2]

CANARY = "canary-Zx9-s3cr3t/+="


def test_env_reference_resolves_at_use_and_is_masked(monkeypatch):
    ref = SecretRef("env:CANARY_TOKEN")
    assert mask(f"token={CANARY}") == f"token={CANARY}"  # nothing registered before use
    monkeypatch.setenv("CANARY_TOKEN", CANARY)
    assert ref.resolve() == CANARY
    assert mask(f"token={CANARY}") == f"token={MASK}"
    assert str(ref) == "env:CANARY_TOKEN" and CANARY not in repr(ref)


def test_encoded_forms_are_masked_too():
    register_secret(CANARY)
    for form in (urllib.parse.quote(CANARY, safe=""), urllib.parse.quote_plus(CANARY),
                 base64.b64encode(CANARY.encode()).decode().rstrip("=")):
        assert form not in mask(f"x {form} y")


def test_mask_obj_walks_structures():
    register_secret(CANARY)
    out = mask_obj({"a": [CANARY, {"b": f"pre{CANARY}post"}], CANARY: 1})
    assert CANARY not in repr(out)


def test_file_reference(tmp_path):
    f = tmp_path / "s"
    f.write_text(CANARY + "\n")
    assert SecretRef(f"file:{f}").resolve() == CANARY
    assert MASK in mask(CANARY)


def test_missing_env_and_unreadable_file_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(SecretError, match=r"secret env:NOPE_NOT_SET is not set") as ei:
        SecretRef("env:NOPE_NOT_SET").resolve()
    assert "export NOPE_NOT_SET" in ei.value.hint
    with pytest.raises(SecretError, match="does not exist"):
        SecretRef(f"file:{tmp_path}/missing").resolve()
    with pytest.raises(SecretError, match="cannot be read as text"):
        SecretRef(f"file:{tmp_path}").resolve()


@pytest.mark.parametrize("bad", ["plain", "env:", "k8s:ns/secret", "vault:x"])
def test_bad_references_are_rejected(bad):
    with pytest.raises(ValueError, match="expected"):
        SecretRef(bad)


def test_too_short_secret_is_refused():
    with pytest.raises(SecretError, match="shorter than 4"):
        register_secret("abc")


# --------------------------------------------------------------------------- issue 12: derived forms
@pytest.fixture
def fresh_masker():
    _forget_all_for_tests()
    yield
    _forget_all_for_tests()


def test_a_uri_secret_is_masked_by_its_parts_and_encodings(fresh_masker):
    pw = "S3cr@t-pw-77"
    register_secret("mongodb://backup:S3cr%40t-pw-77@db.internal:27017/stellaops")
    printed = [
        f"authenticating with password {pw}",                                     # the password alone, decoded
        "password=S3cr%40t-pw-77&x=1",                                             # as written in the URI
        "userinfo backup:S3cr%40t-pw-77",                                           # user:password
        "Authorization: Basic " + base64.b64encode(f"backup:{pw}".encode()).decode(),  # inside base64, any offset
        base64.b64encode(b"x" + pw.encode()).decode(), base64.b64encode(b"xy" + pw.encode()).decode(),
        base64.urlsafe_b64encode(b"??" + pw.encode()).decode(),
        json.dumps({"uri": "mongodb://backup:S3cr%40t-pw-77@db.internal:27017/stellaops"}),
    ]
    for line in printed:
        assert "***" in mask(line), line
        assert pw not in mask(line) and "S3cr%40t-pw-77" not in mask(line)
    assert mask("backup connected to db.internal") == "backup connected to db.internal"  # the user is no secret


def test_a_value_with_quotes_is_masked_in_json_and_a_short_uri_password_is_refused(fresh_masker):
    register_secret('to"k\\en-1234')
    assert json.dumps({"t": 'to"k\\en-1234'}) == '{"t": "to\\"k\\\\en-1234"}'
    assert mask(json.dumps({"t": 'to"k\\en-1234'})) == '{"t": "***"}'
    with pytest.raises(SecretError, match="password in a secret URI is shorter than 4 characters"):
        register_secret("postgres://admin:pw@db/x")
