import json
import os
import stat

import pytest

from cutover_lib.errors import EvidenceError
from cutover_lib.evidence.evidence import GENESIS, RunFolder, atomic_write, sha256_bytes, write_new
from cutover_lib.evidence.tamper import verify_run


@pytest.fixture
def sealed(tmp_path):
    run = RunFolder.create(tmp_path / "executed", "local", "readiness", run_id="20260101T000000Z-local-readiness")
    run.write_manifest({"env": "local", "phase": "readiness"})
    for i in range(3):
        run.append({"kind": "step", "step_id": f"1.s{i}", "outcome": "passed"})
    atomic_write(run.path / "notebooks" / "01.ipynb", "{}")
    atomic_write(run.path / "artifacts" / "a.log", "hello\n")
    atomic_write(run.path / "html" / "index.html", "<html></html>")
    run.seal({"outcome": "passed"})
    return run


def test_layout_and_modes(sealed):
    assert stat.S_IMODE(sealed.path.stat().st_mode) == 0o700
    for sub in ("notebooks", "html", "artifacts"):
        assert stat.S_IMODE((sealed.path / sub).stat().st_mode) == 0o700
    for f in sealed.path.rglob("*"):
        if f.is_file():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_ledger_is_a_hash_chain(sealed):
    lines = sealed.ledger_path.read_bytes().splitlines()
    prev = GENESIS
    for i, line in enumerate(lines, start=1):
        rec = json.loads(line)
        assert rec["seq"] == i and rec["prev"] == prev
        prev = sha256_bytes(line)
    assert json.loads(lines[-1])["kind"] == "run-end"


def test_untouched_run_verifies(sealed):
    assert verify_run(sealed.path) == []


def test_every_single_byte_change_is_detected(sealed):
    files = [p for p in sealed.path.rglob("*") if p.is_file()]
    for f in files:
        original = f.read_bytes()
        for pos in {0, len(original) // 2, len(original) - 1}:
            data = bytearray(original)
            data[pos] ^= 0x01
            f.write_bytes(bytes(data))
            assert verify_run(sealed.path), f"change at byte {pos} of {f.name} not detected"
        f.write_bytes(original)
    assert verify_run(sealed.path) == []


def test_removed_added_and_dropped_ledger_line(sealed):
    (sealed.path / "artifacts" / "a.log").unlink()
    assert "missing: artifacts/a.log" in verify_run(sealed.path)
    atomic_write(sealed.path / "artifacts" / "a.log", "hello\n")
    (sealed.path / "artifacts" / "extra.txt").write_text("x")
    assert "added: artifacts/extra.txt" in verify_run(sealed.path)
    (sealed.path / "artifacts" / "extra.txt").unlink()
    lines = sealed.ledger_path.read_bytes().splitlines(keepends=True)
    sealed.ledger_path.write_bytes(b"".join(lines[:1] + lines[2:]))
    findings = verify_run(sealed.path)
    assert any("broken chain link" in f for f in findings)
    assert any("changed: ledger.jsonl" == f for f in findings)


def test_reordered_ledger_lines(sealed):
    lines = sealed.ledger_path.read_bytes().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    sealed.ledger_path.write_bytes(b"".join(lines))
    assert any("broken chain link" in f for f in verify_run(sealed.path))


def test_consistent_forgery_of_manifest_is_caught_by_ledger_seal(sealed):
    f = sealed.path / "artifacts" / "a.log"
    f.write_text("forged\n")
    m = json.loads(sealed.manifest_path.read_text())
    from cutover_lib.evidence.evidence import sha256_file
    m["files"]["artifacts/a.log"] = sha256_file(f)
    sealed.manifest_path.write_text(json.dumps(m))
    assert "manifest.json: file list does not match the digest sealed in the ledger" in verify_run(sealed.path)


def test_runs_never_share_a_folder(tmp_path):
    a = RunFolder.create(tmp_path, "local", "x", run_id="20260101T000000Z-local-x")
    b = RunFolder.create(tmp_path, "local", "x", run_id="20260101T000000Z-local-x")
    assert a.path != b.path and b.path.name.endswith(".2")


def test_write_new_never_replaces(tmp_path):
    p = tmp_path / "a.log"
    assert write_new(p, "one") == p
    second = write_new(p, "two")
    assert second.name == "a.2.log" and p.read_text() == "one"


def test_disk_full_is_a_clear_error_and_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "ledger.jsonl"
    atomic_write(p, "old\n")
    real_write = os.write

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(EvidenceError, match="disk full while writing evidence"):
        atomic_write(p, "new\n")
    monkeypatch.setattr(os, "write", real_write)
    assert p.read_text() == "old\n"
    assert [x.name for x in tmp_path.iterdir()] == ["ledger.jsonl"]


def test_open_rejects_non_run_folder(tmp_path):
    with pytest.raises(EvidenceError, match="is not a run folder"):
        RunFolder.open(tmp_path)
