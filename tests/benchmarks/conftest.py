"""Benchmarks (``make benchmark``): each figure measured side by side with its anchor in one
run, printed with its goal, and summed up in one table at the end.  They are deselected from
``make test`` (the ``benchmark`` marker); under ``make benchmark`` a figure that misses its goal
fails its test.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


_FIGURES: list["Figure"] = []


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    goal: float
    anchor: str = ""

    @property
    def met(self) -> bool:
        return self.value <= self.goal

    def line(self) -> str:
        return (f"{self.name}: {self.value:.2f} {self.unit} (goal <= {self.goal:g} {self.unit}: "
                f"{'met' if self.met else 'MISSED'}){'; ' + self.anchor if self.anchor else ''}")


@pytest.fixture
def figure() -> Callable[..., Figure]:
    """``figure(name, value, unit, goal, anchor="")``: print the figure now, list it in the
    closing table, and fail the test when it misses its goal."""

    def record(name: str, value: float, unit: str, goal: float, anchor: str = "") -> Figure:
        fig = Figure(name, value, unit, goal, anchor)
        _FIGURES.append(fig)
        print("\n" + fig.line())
        assert fig.met, fig.line()
        return fig

    return record


def median_wall(argv: list[str], n: int = 5, **kwargs: object) -> float:
    """The median wall time of ``argv`` over ``n`` runs (it must exit 0)."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, **kwargs)  # type: ignore[call-overload]
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def trivial_notebook(path: Path) -> Path:
    """A parameters cell (``x = 1``) and ``print(x + 1)``: the least a notebook run can do."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("x = 1")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell("print(x + 1)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("benchmark figures (each against its goal)")
    for fig in _FIGURES:
        terminalreporter.write_line(fig.line())
