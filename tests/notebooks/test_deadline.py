"""A whole-notebook deadline stops a hung kernel for certain and says why."""

from __future__ import annotations

import time

import nbformat
import pytest

from cutover_lib._kernels import execute_notebook
from cutover_lib._runner import NotebookFailed, _notebook_failure

pytestmark = pytest.mark.notebooks


def test_hung_notebook_is_stopped_at_its_deadline(tmp_path):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("x = 1")
    p.metadata["tags"] = ["parameters"]
    marker = tmp_path / "kernel.pid"
    nb.cells = [p, nbformat.v4.new_code_cell(f"import os, time\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\n"
                                             "time.sleep(600)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "hung.ipynb"
    nbformat.write(nb, str(src))
    started = time.monotonic()
    with pytest.raises(NotebookFailed) as ei:
        execute_notebook(src, tmp_path / "out.ipynb", {"x": 2}, tmp_path, cell_timeout=600, deadline=8)
    assert time.monotonic() - started < 30
    code, message = _notebook_failure(ei.value)
    assert code == 1 and "NotebookDeadline: hung.ipynb exceeded its 8s deadline (timeouts.notebook)" in message
    pid = int(marker.read_text())
    deadline = time.monotonic() + 10
    import os

    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the hung kernel {pid} is still running")
