"""One run at a time per environment: the lock, its holder, stale detection and breaking it."""

import json
import os
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cutover_lib.errors import LockHeld
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.engine.runner import EnvLock, break_lock
from cutover_lib.cli.app import app


def hold(project, pid, run_id="20260101T000000Z-local-cutover"):
    lock = project / "executed" / "local" / ".lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "user": "ops", "run_id": run_id,
                                "since": "2026-01-01T00:00:00Z"}))
    return lock


def test_second_run_is_refused_at_once_naming_the_holder(project):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        hold(project, sleeper.pid)
        res = CliRunner().invoke(app, ["run", "--env", "local", "--phase", "readiness", "--root", str(project)])
        assert res.exit_code == 4
        assert f"locked by run 20260101T000000Z-local-cutover (pid {sleeper.pid} on {socket.gethostname()}, user ops" \
            in res.output
        assert "Traceback" not in res.output
        assert not [p for p in (project / "executed" / "local").iterdir() if p.name != ".lock"]  # no run folder
        with pytest.raises(LockHeld, match="refusing to break it"):
            break_lock(project, "local")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_lock_is_reported_with_the_command_and_breaking_is_recorded(project):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = RunFolder.create(project / "executed", "local", "cutover", run_id="20260101T000000Z-local-cutover")
    run.append({"kind": "run-start"})
    hold(project, dead.pid)
    res = CliRunner().invoke(app, ["run", "--env", "local", "--phase", "readiness", "--root", str(project)])
    assert res.exit_code == 4 and "stale lock" in res.output and "cutover unlock --env local" in res.output
    res = CliRunner().invoke(app, ["unlock", "--env", "local", "--root", str(project)])
    assert res.exit_code == 0 and "broke stale lock" in res.output
    assert not (project / "executed" / "local" / ".lock").exists()
    assert run.read_ledger()[-1]["kind"] == "lock-broken"


def test_lock_is_released_by_its_owner_only(tmp_path):
    lock = EnvLock(tmp_path, "stage")
    lock.acquire("r1")
    with pytest.raises(LockHeld):
        EnvLock(tmp_path, "stage").acquire("r2")
    lock.release()
    assert not lock.path.exists()
    # a lock of another process is never removed by release()
    lock.path.write_text(json.dumps({"pid": os.getpid() + 100000, "host": socket.gethostname()}))
    EnvLock(tmp_path, "stage").release()
    assert lock.path.exists()


@pytest.mark.parametrize("name", ["../../etc", "/etc", "a/b", "..", ".hidden", "local\n", ""])
def test_unlock_refuses_names_that_are_paths(project, name):
    res = CliRunner().invoke(app, ["unlock", "--env", name, "--root", str(project)])
    assert res.exit_code == 2, res.output
    assert "is not valid: letters, digits" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("run_id", ["../../../tmp", "/tmp/x", "..", "20260101T000000Z-local-cutover/../../x"])
def test_resume_refuses_run_ids_that_are_paths(project, run_id):
    res = CliRunner().invoke(app, ["run", "--env", "local", "--phase", "cutover", "--resume", run_id,
                                   "--root", str(project)])
    assert res.exit_code == 2 and "run id" in res.output and "is not valid" in res.output, res.output
    assert not (project / "executed" / "local").exists() or not any(
        p.name != ".lock" for p in (project / "executed" / "local").iterdir())


@pytest.mark.parametrize("content", [b"", b'{"pid": 12', b"\xff\xfe garbage"])
def test_an_unreadable_lock_blocks_runs_until_unlock_sets_it_aside(project, content):
    lock = project / "executed" / "local" / ".lock"
    lock.parent.mkdir(parents=True)
    lock.write_bytes(content)
    res = CliRunner().invoke(app, ["run", "--env", "local", "--phase", "readiness", "--root", str(project)])
    assert res.exit_code == 4 and "empty or unreadable (stale lock)" in res.output
    assert "cutover unlock --env local" in res.output
    with pytest.raises(LockHeld, match="being written right now"):  # a lock file just created: hands off
        break_lock(project, "local")
    old = lock.stat().st_mtime - 60
    os.utime(lock, (old, old))
    res = CliRunner().invoke(app, ["unlock", "--env", "local", "--root", str(project)])
    assert res.exit_code == 0 and "cleared the unreadable lock of local" in res.output
    kept = list(lock.parent.glob(".lock.unreadable-*"))
    assert not lock.exists() and len(kept) == 1 and kept[0].read_bytes() == content  # nothing lost
