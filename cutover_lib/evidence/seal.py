"""The seal a forger cannot redo: a DSSE signature over the sealed manifest.

The manifest holds every file's sha256, the ledger head and record count, the outcome, the
operator and every other field of the run; ``seal.dsse.json`` is a DSSE envelope (Ed25519) whose
payload names the run, the manifest's sha256 and the ledger head, signed by the operator's own key:
``$CUTOVER_OPERATOR_KEY``, else ``$XDG_CONFIG_HOME/stellaops-cutover/operator-ed25519.pem``
(``~/.config/...``), created on first use (folder 0700, key 0600).  Rewriting the ledger and the
manifest consistently still needs that private key to seal again.

Which keys are trusted is the environment's params: ``trust.run_keys`` (PEM files, or folders of
``*.pem``) — in prod the reviewed keys of the people who run cutovers.  Where an environment
names none (the lab, dev), the verifying operator's own key is trusted.  ``cutover verify --key``
adds one.  ``cutover key`` prints this operator's public key and key id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EvidenceError
from .evidence import RunFolder, atomic_write, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["PAYLOAD_TYPE", "SEAL", "check_seal", "key_path", "operator_key", "public_pem", "sign_seal",
           "trusted_keys"]

SEAL = "seal.dsse.json"
PAYLOAD_TYPE = "application/vnd.stellaops-cutover.seal.v1+json"


def key_path() -> Path:
    explicit = os.environ.get("CUTOVER_OPERATOR_KEY")
    if explicit:
        return Path(explicit).expanduser()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "stellaops-cutover" / "operator-ed25519.pem"


def operator_key(create: bool = True) -> "Ed25519PrivateKey":
    """This operator's signing key; created (0600, in a 0700 folder) when there is none yet."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = key_path()
    hint = "set CUTOVER_OPERATOR_KEY to a writable path, or fix the folder's permissions"
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise EvidenceError(f"no operator key at {path}", hint="run: cutover key") from None
        key = Ed25519PrivateKey.generate()
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use that one
            return operator_key(create=False)
        except OSError as exc:
            raise EvidenceError(f"cannot create the operator key {path} ({exc.strerror})", hint=hint) from None
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return key
    except OSError as exc:
        raise EvidenceError(f"cannot read the operator key {path} ({exc.strerror})", hint=hint) from None
    try:
        loaded = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise EvidenceError(f"the operator key {path} is not an unencrypted PEM private key ({exc})",
                            hint="move it away; a new key is made on the next seal") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise EvidenceError(f"the operator key {path} is not an Ed25519 key")
    return loaded


def public_pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    public = key.public_key() if hasattr(key, "public_key") else key
    pem: bytes = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode()


def _manifest(run: RunFolder) -> dict[str, Any]:
    try:
        return run.read_manifest()
    except EvidenceError:  # (not JSON: verify names it; the seal then fails on its digest)
        return {}


def _payload(run: RunFolder) -> dict[str, Any]:
    manifest = _manifest(run)
    return {"run_id": run.run_id, "env": manifest.get("env"), "outcome": manifest.get("outcome"),
            "manifest_sha256": sha256_file(run.manifest_path), "ledger_head": manifest.get("ledger_head"),
            "ledger_records": manifest.get("ledger_records")}


def sign_seal(run: RunFolder) -> dict[str, Any]:
    """Sign the sealed manifest with this operator's key; write ``seal.dsse.json``; return the
    payload with the key id."""
    from .dsse import key_id, sign_envelope

    key = operator_key()
    payload = _payload(run)
    envelope = sign_envelope(PAYLOAD_TYPE, json.dumps(payload, sort_keys=True).encode(), key)
    doc = {**envelope.to_dict(), "signer": {"keyid": key_id(key), "public_key": public_pem(key)}}
    atomic_write(run.path / SEAL, json.dumps(doc, indent=2) + "\n")
    return {**payload, "keyid": key_id(key)}


def _pems(path: Path) -> list[Path]:
    return sorted(path.glob("*.pem")) if path.is_dir() else [path]


def trusted_keys(run_path: Path, root: Path | None, extra: list[Path]) -> tuple[dict[str, str], str]:
    """``({keyid: pem}, where they come from)`` for the run's environment: ``--key`` files, the
    environment's ``trust.run_keys``, or -- where the environment names none -- this operator's key."""
    from ..config.params import load_environment
    from ..errors import CutoverError
    from .dsse import key_id, load_public_key

    keys: dict[str, str] = {}
    sources: list[str] = []

    def add(path: Path, label: str) -> None:
        try:
            pem = path.read_text()
            keys[key_id(load_public_key(pem))] = pem
        except (OSError, ValueError, TypeError) as exc:
            raise EvidenceError(f"{label} {path} is not a readable PEM public key ({exc})") from None

    for path in extra:
        add(path, "--key")
    if extra:
        sources.append("--key")
    manifest = _manifest(RunFolder.open(run_path))
    env_name = str(manifest.get("env") or run_path.parent.name)
    base = root or run_path.resolve().parents[2]
    try:
        env = load_environment(env_name, base / "params")
    except CutoverError as exc:
        if keys:
            return keys, " and ".join(sources)
        if manifest.get("tier") == "prod":  # a prod run is never judged by whoever verifies it
            raise EvidenceError(f"cannot tell which keys may seal {env_name} runs: {exc.one_line()}",
                                hint="pass --root (the project the run came from) or --key FILE") from None
        _own(keys)
        return keys, f"this operator's key: no params/{env_name}.yaml at {base} (pass --root or --key)"
    for ref in env.trust.run_keys:
        path = Path(ref) if Path(ref).is_absolute() else base / ref
        for pem in _pems(path):
            add(pem, "trust.run_keys")
    if env.trust.run_keys:
        sources.append(f"params/{env_name}.yaml trust.run_keys")
    elif not extra:
        _own(keys)
        sources.append(f"this operator's key: {env_name} names no trust.run_keys")
    return keys, " and ".join(sources)


def _own(keys: dict[str, str]) -> None:
    """This operator's public key, when there is one (a fresh machine has none: nothing trusted)."""
    from .dsse import key_id

    if key_path().exists():
        own = operator_key(create=False)
        keys[key_id(own)] = public_pem(own)


def check_seal(run: RunFolder, trusted: dict[str, str], source: str) -> tuple[list[str], str | None]:
    """Findings about ``seal.dsse.json`` (signature, trust, what it covers); the key id that sealed."""
    from .dsse import b64decode, verify_envelope

    path = run.path / SEAL
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"missing: {SEAL} (the run's signature; sealed by an older version, or removed)"], None
    except (OSError, ValueError) as exc:
        return [f"changed: {SEAL} (not a JSON document: {exc})"], None
    if not isinstance(doc, dict):
        return [f"changed: {SEAL} (not a DSSE envelope)"], None
    signer: dict[str, Any] = doc["signer"] if isinstance(doc.get("signer"), dict) else {}
    claimed = str(signer.get("keyid", "?"))
    result = verify_envelope(doc, trusted)
    if not result.ok:
        from .dsse import key_id, load_public_key

        try:  # does it verify under the key it names? then it is a real seal, by an untrusted key
            named = verify_envelope(doc, {key_id(load_public_key(signer.get("public_key", ""))): signer["public_key"]})
        except (ValueError, TypeError, KeyError):
            named = None
        if named is not None and named.ok:
            return [f"{SEAL}: sealed by key {claimed}, which is not trusted for this environment ({source})"], claimed
        return [f"{SEAL}: the signature does not verify ({result.reason})"], None
    try:
        payload = json.loads(b64decode(doc["payload"]))
    except (ValueError, KeyError, TypeError):
        return [f"{SEAL}: payload is not JSON"], result.keyid
    findings = []
    if doc.get("payloadType") != PAYLOAD_TYPE:
        findings.append(f"{SEAL}: payload type {doc.get('payloadType')!r} is not {PAYLOAD_TYPE}")
    want = _payload(run) if run.manifest_path.exists() else {}
    for key in ("run_id", "manifest_sha256", "ledger_head", "ledger_records"):
        if payload.get(key) != want.get(key):
            findings.append(f"{SEAL}: signed {key} {payload.get(key)!r} is not this folder's {want.get(key)!r}"
                            if key != "manifest_sha256" else
                            "manifest.json: changed since it was signed (a field other than the file list, too)")
    return findings, result.keyid
