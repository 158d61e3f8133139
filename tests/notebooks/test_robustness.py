"""Issue 12, robustness: a read-only ``executed/`` and a run folder deleted while the run writes to
it end in one line and exit 1 -- no traceback, the lock not left behind, nothing else touched; an
ASCII-only terminal and a 130 kB ``-p`` value are just a run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.notebooks


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    for name in ("params", "notebooks", "samples", "deploy", "secrets"):
        shutil.copytree(REPO / name, root / name)
    (root / "executed" / "local").mkdir(parents=True)
    return root


def cutover_ro(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``cutover ARGS`` with ``executed/`` bind-mounted read-only (a private mount namespace)."""
    ex = root / "executed"
    cmd = " ".join([f"mount --bind {ex} {ex} && mount -o remount,bind,ro {ex} && exec", sys.executable, "-m",
                    "cutover_lib.cli.app", *args, "--root", str(root)])
    return subprocess.run(["unshare", "-m", "sh", "-c", cmd], cwd=root, capture_output=True, text=True, timeout=300)


def test_a_read_only_executed_folder_is_one_line(root: Path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a read-only bind mount needs root and unshare")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    before = sorted(p.relative_to(root) for p in (root / "executed").rglob("*"))
    for args in (("plan", "--env", "local", "--phase", "readiness"),
                 ("approve", "--env", "local", "--gate", "plan", "--role", "cto", "--name", "Ada", "--record", "C")):
        res = cutover_ro(root, *args)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "Traceback" not in res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: cannot write evidence ") \
            and "the filesystem is read-only (run from a checkout whose executed/ folder is writable)" in lines[0], lines
    assert sorted(p.relative_to(root) for p in (root / "executed").rglob("*")) == before


def test_a_run_folder_deleted_mid_run_is_one_line_and_the_lock_is_released(root: Path):
    nb_path = root / "notebooks" / "01_roles_and_timeline.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "Runbook.open" in c.source)
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("import shutil; shutil.rmtree(rb.run.path)  # someone's rm -rf"))
    nbformat.write(nb, nb_path)
    res = subprocess.run([sys.executable, "-m", "cutover_lib.cli.app", "plan", "--env", "local", "--phase", "readiness",
                          "--root", str(root)], cwd=root, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("error: the evidence folder ")
    assert "is gone (moved or deleted while in use)" in res.stderr
    assert not (root / "executed" / "local" / ".lock").exists()
    assert list((root / "executed" / "local").iterdir()) == []  # nothing half-made put back


def test_an_ascii_only_terminal_and_a_130_kb_override_are_just_a_run(root: Path):
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "LANG": "C", "LC_ALL": "C"}
    big = "x" * 130_000
    res = subprocess.run([sys.executable, "-m", "cutover_lib.cli.app", "plan", "--env", "local", "--phase", "readiness",
                          "-p", f"description={big}", "--root", str(root)], cwd=root, env=env, capture_output=True,
                         timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert b"Traceback" not in res.stderr and b"outcome: planned" in res.stdout
    res.stdout.decode("ascii")  # every byte the terminal got is ASCII
