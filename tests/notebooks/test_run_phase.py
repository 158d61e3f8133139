"""A phase really executed through papermill into an evidence folder, then verified."""

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nb_helpers import approve_all

pytestmark = pytest.mark.notebooks


def cutover(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cutover_lib.cli.app", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def project(lab_project):
    approve_all(lab_project)
    return lab_project


def test_readiness_runs_through_papermill_and_verifies(project):
    res = cutover("run", "--env", "local", "--phase", "readiness", "--root", str(project), cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    run = Path(next(ln for ln in res.stdout.splitlines() if ln.startswith("evidence: ")).split(": ", 1)[1])
    assert f"report:   {run}/html/index.html" in res.stdout
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["outcome"] == "passed" and manifest["sealed"] and manifest["params_sha256"]
    nb = json.loads((run / "notebooks" / "01_roles_and_timeline.ipynb").read_text())
    mimes = [o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", [])]
    steps = [m["application/vnd.stellaops.cutover.step+json"] for m in mimes
             if "application/vnd.stellaops.cutover.step+json" in m]
    assert [s["step_id"] for s in steps] == ["1.roles", "1.bridge", "2.timeline", "8.matrix"]
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "run_dir = " in "".join(injected[0]["source"])
    index = (run / "html" / "index.html").read_text()
    assert "1.roles" in index and "PASSED" in index
    for html in (run / "html").glob("*.html"):
        text = html.read_text()
        for bad in ('<script src="http', "<script src='http", '<link rel="stylesheet" href="http', "@import url(http",
                    "src=\"https://"):
            assert bad not in text, (html.name, bad)
    for f in run.rglob("*"):
        assert stat.S_IMODE(f.stat().st_mode) == (0o700 if f.is_dir() else 0o600), f
    ok = cutover("verify", str(run), cwd=project)
    assert ok.returncode == 0, ok.stderr
    (run / "html" / "index.html").write_text(index.replace("PASSED", "PASSES", 1))
    bad = cutover("verify", str(run), cwd=project)
    assert bad.returncode == 1 and "changed: html/index.html" in bad.stderr


def test_second_run_gets_its_own_folder(project):
    before = set((project / "executed" / "local").glob("*-local-readiness*"))
    for _ in range(2):
        assert cutover("run", "--env", "local", "--phase", "readiness", "--root", str(project),
                       cwd=project).returncode == 0
    assert len(set((project / "executed" / "local").glob("*-local-readiness*")) - before) == 2


@pytest.mark.parametrize("override, shown", [("t0=2026-12-01T10:00:00Z", "2026-12-01 10:00"),
                                             ("t0=2026-12-01 09:30:00+00:00", "2026-12-01 09:30")])
def test_a_t0_override_reaches_the_notebooks(project, override, shown):
    """YAML reads the value as a datetime; it travels to the kernel as ISO text and the notebook's
    own timeline (computed in the kernel) and the report both use it."""
    res = cutover("run", "--env", "local", "--phase", "readiness", "-p", override, "--root", str(project),
                  cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    run = Path(next(ln for ln in res.stdout.splitlines() if ln.startswith("evidence: ")).split(": ", 1)[1])
    nb = json.loads((run / "notebooks" / "01_roles_and_timeline.ipynb").read_text())
    outputs = json.dumps([c.get("outputs", []) for c in nb["cells"]])
    assert shown in outputs
    assert shown in (run / "html" / "index.html").read_text()
