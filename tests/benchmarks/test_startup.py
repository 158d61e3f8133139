"""Start-up: the ``cutover`` command against a bare ``python -c pass`` (goal 2 of the
performance issue), and one notebook through the runner against bare papermill."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import median_wall, trivial_notebook

pytestmark = pytest.mark.benchmark

REPO = Path(__file__).resolve().parents[2]
CUTOVER = str(Path(sys.executable).with_name("cutover"))


def test_help_is_close_to_bare_python(figure):
    bare = median_wall([sys.executable, "-c", "pass"], n=9)
    helped = median_wall([CUTOVER, "--help"], n=9)
    figure("cutover --help / python -c pass", helped / bare, "x", 3,
           f"{helped * 1000:.0f} ms against {bare * 1000:.0f} ms")


def test_params_check_is_close_to_bare_python(figure):
    bare = median_wall([sys.executable, "-c", "pass"], n=9)
    checked = median_wall([CUTOVER, "params", "check", "--env", "prod", "--root", str(REPO)], n=9)
    figure("cutover params check --env prod / python -c pass", checked / bare, "x", 5,
           f"{checked * 1000:.0f} ms against {bare * 1000:.0f} ms")


def test_one_notebook_through_the_runner_against_bare_papermill(tmp_path, figure):
    """The runner's path for a single notebook (kernel, papermill, deadline watchdog) against
    the papermill CLI doing the same: the tool must not be slower than its engine."""
    src = trivial_notebook(tmp_path / "in.ipynb")
    papermill_cli = shutil.which("papermill", path=str(Path(sys.executable).parent))
    assert papermill_cli, "papermill's CLI is installed with papermill"
    bare = median_wall([papermill_cli, str(src), str(tmp_path / "bare.ipynb"), "-p", "x", "2", "--no-progress-bar"],
                       n=3, cwd=tmp_path)
    code = ("import sys, pathlib; from cutover_lib.engine.kernels import execute_notebook; p = pathlib.Path(sys.argv[1]); "
            "execute_notebook(p / 'in.ipynb', p / 'ours.ipynb', {'x': 2}, p, 60, 120)")
    ours = median_wall([sys.executable, "-c", code, str(tmp_path)], n=3)
    assert nbformat.read(str(tmp_path / "ours.ipynb"), 4).cells[-1].outputs[0]["text"] == "3\n"
    figure("one notebook, runner / bare papermill CLI", ours / bare, "x", 1.0,
           f"{ours:.2f} s against {bare:.2f} s (process, kernel, one cell)")
