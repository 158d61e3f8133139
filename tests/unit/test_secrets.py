import base64
import urllib.parse

import pytest

from cutover_lib._errors import SecretError
from cutover_lib._secrets import MASK, SecretRef, mask, mask_obj, register_secret

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
