"""Benchmarks (``make benchmark``): printed ratios measured side by side in one run; they never
fail ``make test`` (deselected there by the ``benchmark`` marker).

* ``cutover --help`` against ``python -c pass`` (fast start: no heavy imports);
* one notebook through the runner's papermill path against a bare kernel start + one cell.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.benchmark


def _median(argv: list[str], n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def test_help_is_close_to_bare_python():
    bare = _median([sys.executable, "-c", "pass"])
    helped = _median([sys.executable, "-m", "cutover_lib.cli", "--help"])
    print(f"\ncutover --help: {helped * 1000:.0f} ms; python -c pass: {bare * 1000:.0f} ms; "
          f"ratio {helped / bare:.1f}x")


def test_notebook_orchestration_overhead(tmp_path):
    from jupyter_client.manager import start_new_kernel

    from cutover_lib._runner import _execute

    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("x = 1")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell("print(x + 1)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "in.ipynb"
    nbformat.write(nb, str(src))

    def bare() -> float:
        t = time.perf_counter()
        km, kc = start_new_kernel(kernel_name="python3")
        kc.execute_interactive("print(2)", timeout=60)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        return time.perf_counter() - t

    def ours(i: int) -> float:
        t = time.perf_counter()
        _execute(src, tmp_path / f"out{i}.ipynb", {"x": 2}, tmp_path, 60, 120)
        return time.perf_counter() - t

    b = statistics.median(bare() for _ in range(3))
    o = statistics.median(ours(i) for i in range(3))
    print(f"\none notebook via the runner (papermill, IPC kernel, own process): {o:.2f} s; bare kernel start + "
          f"one cell: {b:.2f} s; overhead ratio {o / b:.1f}x ({o - b:.2f} s per notebook)")
    assert json.loads((tmp_path / "out0.ipynb").read_text())["cells"][1]["outputs"][0]["text"] == ["3\n"]
