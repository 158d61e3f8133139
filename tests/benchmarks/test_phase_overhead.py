"""Goal 1: what the tool adds to a phase.  ``cutover plan`` and ``cutover run`` of the lab
cutover (4 notebooks), each timed as a user runs it (the ``cutover`` process, wall clock);
the overhead per notebook is that wall time minus the steps' own time (the ledger's
``duration_s``), divided by the notebooks.  Anchor: bare papermill per notebook (a kernel
start and one cell, the least any notebook runner can do)."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import trivial_notebook
from nb_helpers import started_lab

pytestmark = pytest.mark.benchmark

CUTOVER = str(Path(sys.executable).with_name("cutover"))


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with started_lab(tmp_path_factory.mktemp("bench")) as root:
        yield root


def _phase(root: Path, verb: str) -> tuple[float, float, int]:
    """(wall s, steps' own s, notebooks) of one ``cutover <verb> --env local --phase cutover``."""
    argv = [CUTOVER, verb, "--env", "local", "--phase", "cutover", "--root", str(root)]
    if verb == "run":
        argv += ["--waive", "all"]
    t = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, cwd=root)
    wall = time.perf_counter() - t
    assert res.returncode == 0, res.stdout + res.stderr
    run_dir = Path(next(ln for ln in res.stdout.splitlines() if ln.startswith("evidence: ")).split(": ", 1)[1])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    records = [json.loads(line) for line in (run_dir / "ledger.jsonl").read_text().splitlines()]
    steps = sum(r.get("duration_s", 0) for r in records if r.get("kind") == "step")
    return wall, steps, len(manifest["notebooks"])


def _bare_papermill(tmp: Path) -> float:
    trivial_notebook(tmp / "in.ipynb")
    cli = shutil.which("papermill", path=str(Path(sys.executable).parent))
    assert cli
    times = []
    for i in range(3):
        t = time.perf_counter()
        subprocess.run([cli, "in.ipynb", f"out{i}.ipynb", "--no-progress-bar"], cwd=tmp, check=True,
                       capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@pytest.mark.parametrize("verb", ["plan", "run"])
def test_orchestration_overhead_per_notebook(lab_root, tmp_path, verb, figure):
    _phase(lab_root, verb)  # first run: lab warm, caches written
    samples = [_phase(lab_root, verb) for _ in range(3)]
    per_nb = statistics.median((wall - steps) / nbs for wall, steps, nbs in samples)
    wall, steps, nbs = samples[len(samples) // 2]
    bare = _bare_papermill(tmp_path)
    figure(f"cutover {verb} (lab cutover): overhead per notebook", per_nb, "s", 0.5,
           f"phase {wall:.2f} s for {steps:.2f} s of steps in {nbs} notebooks; bare papermill per notebook "
           f"{bare:.2f} s")
