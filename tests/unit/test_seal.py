"""Issue 12: evidence a forger cannot re-seal.  A run's seal is a DSSE signature by the operator's
key over the manifest (every field) and the ledger head; ``cutover verify`` trusts only the keys
the environment's params name (else the verifying operator's own), plus ``--key``."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cutover_lib.evidence.dsse import key_id
from cutover_lib.evidence.evidence import GENESIS, RunFolder, _canonical, atomic_write, sha256_bytes
from cutover_lib.evidence.seal import SEAL, key_path, operator_key, public_pem
from cutover_lib.evidence.tamper import verify_run
from cutover_lib.cli.app import app

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str):
    res = CliRunner().invoke(app, list(args))
    assert "Traceback" not in res.output
    return res


def make_run(root: Path, env: str = "local", outcome: str = "rolled-back") -> RunFolder:
    run = RunFolder.create(root / "executed", env, "cutover", run_id=f"20260101T000000Z-{env}-cutover")
    run.write_manifest({"env": env, "tier": "prod" if env == "prod" else "local", "phase": "cutover",
                        "operator": "ada"})
    run.append({"kind": "step", "step_id": "5.api-health", "outcome": "failed"})
    run.append({"kind": "decision", "decision": "rollback"})
    atomic_write(run.path / "artifacts" / "5.api-health.log", "HTTP 503\n")
    atomic_write(run.path / "html" / "index.html", "<html>ROLLED BACK</html>")
    run.seal({"outcome": outcome})
    return run


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with the shipped params: the trust a run's environment sets comes from there."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "params", root / "params")
    return root


def forge_consistently(run: RunFolder) -> None:
    """What a forger with write access does: rewrite the ledger (a valid chain, the failed step now
    passed, no rollback) and the manifest (new hashes, head, count, outcome), as the sealing code would."""
    atomic_write(run.path / "html" / "index.html", "<html>PASSED</html>")
    others = {k: v for k, v in run.file_hashes().items() if k != "ledger.jsonl"}
    records = [r for r in run.read_ledger() if r.get("kind") != "decision"]
    lines, prev = [], GENESIS
    for seq, rec in enumerate(records, start=1):
        rec = {k: v for k, v in rec.items() if k not in ("seq", "prev")}
        if rec.get("outcome") in ("failed", "rolled-back"):
            rec["outcome"] = "passed"
        if rec.get("kind") == "run-end":
            rec["files_digest"] = sha256_bytes(_canonical(others).encode())
        line = _canonical({**rec, "seq": seq, "prev": prev})
        lines.append(line)
        prev = sha256_bytes(line.encode())
    run.ledger_path.write_text("\n".join(lines) + "\n")
    manifest = run.read_manifest()
    manifest.update({"outcome": "passed", "files": run.file_hashes(), "ledger_head": prev,
                     "ledger_records": len(lines)})
    run.write_manifest(manifest)


def test_a_fresh_run_is_signed_by_this_operator_and_verifies(tmp_path: Path, project: Path):
    run = make_run(project)
    assert verify_run(run.path) == []
    env = json.loads((run.path / SEAL).read_text())
    assert env["payloadType"] == "application/vnd.stellaops-cutover.seal.v1+json"
    assert env["signer"]["keyid"] == key_id(operator_key(create=False)) == env["signatures"][0]["keyid"]
    assert stat.S_IMODE(key_path().stat().st_mode) == 0o600
    res = cli("verify", str(run.path))
    assert res.exit_code == 0 and f"sealed by {env['signer']['keyid']} (this operator's key" in res.output


def test_a_consistent_rewrite_of_ledger_and_manifest_fails(project: Path):
    run = make_run(project)
    forge_consistently(run)
    findings = verify_run(run.path)
    assert "manifest.json: changed since it was signed (a field other than the file list, too)" in findings
    assert any("signed ledger_head" in f for f in findings)
    res = cli("verify", str(run.path))
    assert res.exit_code == 1 and "this evidence cannot be trusted" in res.output


def test_a_manifest_only_edit_of_any_field_fails(project: Path):
    for field, value in (("outcome", "passed"), ("operator", "mallory"), ("commit", "deadbeef"), ("reason", "")):
        run = make_run(project / field)
        manifest = run.read_manifest()
        manifest[field] = value
        run.write_manifest(manifest)
        assert "manifest.json: changed since it was signed (a field other than the file list, too)" \
            in verify_run(run.path, root=project), field


def test_a_forger_who_re_signs_with_their_own_key_is_not_trusted_unless_passed_with_key(project: Path,
                                                                                          tmp_path: Path,
                                                                                          monkeypatch):
    run = make_run(project)
    mine = operator_key(create=False)
    forge_consistently(run)
    monkeypatch.setenv("CUTOVER_OPERATOR_KEY", str(tmp_path / "forger.pem"))
    from cutover_lib.evidence.seal import sign_seal

    forger = sign_seal(run)["keyid"]
    assert forger != key_id(mine)
    monkeypatch.setenv("CUTOVER_OPERATOR_KEY", str(tmp_path / "auditor.pem"))  # the operator who sealed verifies
    (tmp_path / "auditor.pem").write_bytes(_pem_private(mine))
    findings = verify_run(run.path)
    assert findings == [f"seal.dsse.json: sealed by key {forger}, which is not trusted for this environment "
                        f"(this operator's key: local names no trust.run_keys)"]
    (tmp_path / "forger.pub.pem").write_text(public_pem(operator_key_at(tmp_path / "forger.pem")))
    assert verify_run(run.path, keys=[tmp_path / "forger.pub.pem"]) == []  # the auditor says whom to trust


def _pem_private(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def operator_key_at(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def test_prod_trusts_only_the_keys_its_params_name(project: Path, tmp_path: Path):
    run = make_run(project, env="prod", outcome="passed")
    keys = project / "deploy-keys"
    keys.mkdir()
    text = (project / "params" / "prod.yaml").read_text().replace("run_keys: [deploy/keys/operators/prod]",
                                                                  f"run_keys: [{keys}]")
    (project / "params" / "prod.yaml").write_text(text)
    own = key_id(operator_key(create=False))
    assert verify_run(run.path) == [f"seal.dsse.json: sealed by key {own}, which is not trusted for this environment "
                                    f"(params/prod.yaml trust.run_keys)"]
    (keys / "ada.pem").write_text(public_pem(operator_key(create=False)))
    assert verify_run(run.path) == []
    res = cli("verify", str(run.path))
    assert res.exit_code == 0 and "(params/prod.yaml trust.run_keys)" in res.output


def test_a_prod_run_away_from_its_project_needs_root_or_key(tmp_path: Path):
    run = make_run(tmp_path / "elsewhere", env="prod", outcome="passed")
    res = cli("verify", str(run.path))
    assert res.exit_code != 0 and "cannot tell which keys may seal prod runs" in res.output
    (tmp_path / "ada.pem").write_text(public_pem(operator_key(create=False)))
    assert cli("verify", str(run.path), "--key", str(tmp_path / "ada.pem")).exit_code == 0


@pytest.mark.parametrize("change,finding", [
    (lambda r: atomic_write(r.path / "artifacts" / ".hidden", "x"), "added: artifacts/.hidden"),
    (lambda r: (r.path / "artifacts" / ".a.log.tmp-123").write_text("x"), "added: artifacts/.a.log.tmp-123"),
    (lambda r: (r.path / "empty").mkdir(), "added: empty/ (a folder)"),
    (lambda r: (r.path / "notebooks").rmdir(), "missing: notebooks/ (a folder)"),
    (lambda r: (r.path / "artifacts" / "link").symlink_to("/etc/passwd"),
     "link: artifacts/link -> /etc/passwd (evidence is never a link)"),
    (lambda r: os.mkfifo(r.path / "artifacts" / "pipe"), "added: artifacts/pipe (not a regular file)"),
    (lambda r: (r.path / SEAL).write_text("{not json"), "changed: seal.dsse.json (not a JSON document"),
    (lambda r: (r.path / SEAL).unlink(), "missing: seal.dsse.json (the run's signature"),
])
def test_every_kind_of_change_is_named(project: Path, change, finding):
    run = make_run(project)
    change(run)
    findings = verify_run(run.path)
    assert any(f.startswith(finding) for f in findings), findings
    res = cli("verify", str(run.path))
    assert res.exit_code == 1, res.output
