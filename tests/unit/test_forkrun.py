"""tests/forkrun.py: a command forked from the warm server is the command a fresh interpreter runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import forkrun
import pytest

REPO = Path(__file__).resolve().parents[2]


def fresh(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", forkrun.MODULE, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("argv", [["--help"], ["params", "check", "--env", "nope"], ["params", "check", "--env", "prod"],
                                  ["verify", "/nonexistent/run"]])
def test_a_forked_command_prints_and_exits_as_a_fresh_one(argv: list[str]) -> None:
    if os.environ.get("CUTOVER_TEST_NO_FORK") == "1":
        pytest.skip("CUTOVER_TEST_NO_FORK=1: nothing is forked")
    forked = forkrun.run(argv, cwd=REPO, timeout=120)
    assert forked.args[0] == forkrun.MODULE, "not forked: the server did not start"
    plain = fresh(argv, REPO)
    assert (forked.returncode, forked.stdout, forked.stderr) == (plain.returncode, plain.stdout, plain.stderr)


def test_the_command_gets_the_callers_folder_and_environment(tmp_path: Path) -> None:
    shutil.copytree(REPO / "params", tmp_path / "params")
    for name in ("deploy", "samples", "secrets"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {k: v for k, v in os.environ.items() if k != "STELLAOPS_CLIENT_SECRET"}
    unset = forkrun.run(["params", "check", "--env", "prod"], cwd=tmp_path, env=env, timeout=120)
    assert unset.returncode == 0, unset.stderr
    assert "env:STELLAOPS_CLIENT_SECRET is not set" in unset.stderr
    set_ = forkrun.run(["params", "check", "--env", "prod"], cwd=tmp_path,
                       env={**env, "STELLAOPS_CLIENT_SECRET": "x"}, timeout=120)
    assert set_.returncode == 0 and "STELLAOPS_CLIENT_SECRET is not set" not in set_.stderr
    elsewhere = forkrun.run(["params", "check", "--env", "prod"], cwd=tmp_path.parent, timeout=120)
    assert elsewhere.returncode == 2 and "params/prod.yaml does not exist" in elsewhere.stderr


def test_what_acts_at_interpreter_start_is_run_in_a_fresh_interpreter() -> None:
    res = forkrun.run(["--help"], cwd=REPO, env={**os.environ, "PYTHONIOENCODING": "ascii"}, timeout=120)
    assert res.returncode == 0 and res.args[:2] == [sys.executable, "-m"]


def test_a_command_past_its_timeout_raises_as_subprocess_does_and_the_server_serves_on() -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        forkrun.run(["lab", "--help"], cwd=REPO, timeout=0.001)
    assert forkrun.run(["--help"], cwd=REPO, timeout=120).returncode == 0  # the server serves on
