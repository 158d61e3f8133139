"""A whole-notebook deadline stops a hung kernel for certain and says why."""

from __future__ import annotations

import time

import nbformat
import pytest

from cutover_lib.engine.kernels import execute_notebook
from cutover_lib.engine.runner import NotebookFailed, _notebook_failure

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
    assert code == 1 and "NotebookDeadline: hung.ipynb exceeded its 8s deadline (timeouts.notebook" in message
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


def test_the_monitoring_notebook_deadline_follows_the_monitoring_duration(tmp_path):
    """Issue 12: prod monitors for 4 h (Section 7) with a 2 h notebook deadline; 09_post_cutover
    names monitoring.duration in its metadata, so its deadline is 6 h; other notebooks keep 2 h."""
    from pathlib import Path

    from cutover_lib.errors import UsageError
    from cutover_lib.config.params import load_environment
    from cutover_lib.engine.phases import notebook_deadline

    repo = Path(__file__).resolve().parents[2]
    prod = load_environment("prod", repo / "params")
    assert prod.timeouts.notebook.total_seconds() == 2 * 3600 and prod.monitoring.duration.total_seconds() == 4 * 3600
    assert notebook_deadline(prod, repo / "notebooks" / "09_post_cutover.ipynb") == 6 * 3600
    assert notebook_deadline(prod, repo / "notebooks" / "07_smoke.ipynb") == 2 * 3600

    nb = nbformat.v4.new_notebook()
    nb.metadata["cutover"] = {"deadline_adds": ["monitoring.queue_depth_field"]}
    nbformat.write(nb, str(tmp_path / "x.ipynb"))
    with pytest.raises(UsageError, match="names 'monitoring.queue_depth_field', which is not a duration in params"):
        notebook_deadline(prod, tmp_path / "x.ipynb")


def test_a_notebook_outlives_timeouts_notebook_by_what_it_adds(tmp_path):
    """The runner's deadline, end to end on a kernel: 2 s of timeouts.notebook plus 4 s of
    monitoring.duration lets a 3 s cell finish."""
    from pathlib import Path

    from cutover_lib.config.params import load_environment, parse_overrides
    from cutover_lib.engine.phases import notebook_deadline

    repo = Path(__file__).resolve().parents[2]
    env = load_environment("local", repo / "params", parse_overrides(["timeouts.notebook=2s",
                                                                     "monitoring.duration=4s"]))
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("x = 1")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell("import time\ntime.sleep(3)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["cutover"] = {"deadline_adds": ["monitoring.duration"]}
    nbformat.write(nb, str(tmp_path / "monitor.ipynb"))
    deadline = notebook_deadline(env, tmp_path / "monitor.ipynb")
    assert deadline == 6
    execute_notebook(tmp_path / "monitor.ipynb", tmp_path / "out.ipynb", {"x": 2}, tmp_path, deadline, deadline)
    del nb.metadata["cutover"]
    nbformat.write(nb, str(tmp_path / "monitor.ipynb"))
    with pytest.raises(NotebookFailed):
        execute_notebook(tmp_path / "monitor.ipynb", tmp_path / "out2.ipynb", {"x": 2}, tmp_path,
                         notebook_deadline(env, tmp_path / "monitor.ipynb"), notebook_deadline(env, tmp_path / "monitor.ipynb"))
