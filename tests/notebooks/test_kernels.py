"""One kernel serves a run's notebooks one after the other, with nothing carried over between
them; a failed or lost kernel is replaced; the kernel's sockets live in a private folder."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import nbformat
import pytest

from cutover_lib.engine.kernels import Kernels, NotebookFailed, execute_notebook, warm_imports

pytestmark = pytest.mark.notebooks


def notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("x = 1")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def outputs(path: Path) -> list[str]:
    nb = nbformat.read(str(path), as_version=4)
    return ["".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


PROBE = ("import os, json\n"
         "print(json.dumps({'pid': os.getpid(), 'leftover': 'y' in dir(), 'env': os.environ.get('CUTOVER_TEST_FOO'),"
         " 'cwd': os.getcwd(), 'count': get_ipython().execution_count}))")
DIRTY = "import os\ny = 5\nos.environ['CUTOVER_TEST_FOO'] = 'bar'\nos.chdir('/')"


def test_notebooks_share_a_kernel_and_nothing_else(tmp_path):
    nb = notebook(tmp_path / "a.ipynb", PROBE, DIRTY)
    with Kernels(tmp_path) as kernels:
        kernels.prepare(nb)
        seen = []
        for i in range(3):
            execute_notebook(nb, tmp_path / f"out{i}.ipynb", {"x": 2}, tmp_path, 60, 120, kernels=kernels)
            seen.append(json.loads(outputs(tmp_path / f"out{i}.ipynb")[0]))
    assert len({s["pid"] for s in seen}) == 1  # one kernel...
    for s in seen:  # ...and every notebook starts as in a fresh one
        assert s["leftover"] is False and s["env"] is None and s["cwd"] == str(tmp_path)
        assert s["count"] == 4  # the same in every notebook: numbering restarts at 1
    cells = nbformat.read(str(tmp_path / "out2.ipynb"), as_version=4).cells
    assert [c.execution_count for c in cells if c.cell_type == "code"] == [1, 2, 3, 4]


def test_a_failed_notebook_leaves_a_fresh_kernel_for_the_next(tmp_path):
    bad = notebook(tmp_path / "bad.ipynb", PROBE, "raise RuntimeError('boom')")
    good = notebook(tmp_path / "good.ipynb", PROBE)
    with Kernels(tmp_path) as kernels:
        with pytest.raises(NotebookFailed) as ei:
            execute_notebook(bad, tmp_path / "bad.out.ipynb", {}, tmp_path, 60, 120, kernels=kernels)
        assert (ei.value.ename, ei.value.evalue) == ("RuntimeError", "boom")
        execute_notebook(good, tmp_path / "good.out.ipynb", {}, tmp_path, 60, 120, kernels=kernels)
    first = json.loads(outputs(tmp_path / "bad.out.ipynb")[0])["pid"]
    second = json.loads(outputs(tmp_path / "good.out.ipynb")[0])["pid"]
    assert first != second
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)


def test_a_kernel_lost_between_notebooks_is_replaced_at_once(tmp_path):
    nb = notebook(tmp_path / "a.ipynb", PROBE)
    with Kernels(tmp_path) as kernels:
        execute_notebook(nb, tmp_path / "1.ipynb", {}, tmp_path, 60, 120, kernels=kernels)
        pid = json.loads(outputs(tmp_path / "1.ipynb")[0])["pid"]
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        started = time.monotonic()
        execute_notebook(nb, tmp_path / "2.ipynb", {}, tmp_path, 60, 120, kernels=kernels)
        assert time.monotonic() - started < 8  # no wait for a reset reply that cannot come
    assert json.loads(outputs(tmp_path / "2.ipynb")[0])["pid"] != pid


def test_kernel_sockets_are_private_per_run_and_removed(tmp_path):
    nb = notebook(tmp_path / "a.ipynb", "print(1)")
    with Kernels(tmp_path) as one, Kernels(tmp_path) as two:
        one.prepare(nb)
        two.prepare(nb)
        assert one._dir != two._dir
        for k in (one, two):
            assert k._dir.stat().st_mode & 0o777 == 0o700
        execute_notebook(nb, tmp_path / "1.ipynb", {}, tmp_path, 60, 120, kernels=one)
        execute_notebook(nb, tmp_path / "2.ipynb", {}, tmp_path, 60, 120, kernels=two)
        sockets = [p for p in one._dir.iterdir() if stat.S_ISSOCK(p.stat().st_mode)]
        assert sockets, "IPC sockets live in the run's private folder"
        folders = [one._dir, two._dir]
    assert not any(f.exists() for f in folders)
    assert not list(tmp_path.glob("kernel-ipc*"))  # nothing in the working folder


def test_socket_folders_of_killed_runs_are_removed(tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile

    # a temporary folder of its own: runs in other test processes clean the shared one too
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = Path(tempfile.gettempdir()) / f"cutover-k-{int(gone.stdout)}-abc123"
    stale.mkdir()
    (stale / "k1.json").write_text("{}")
    alive = Path(tempfile.mkdtemp(prefix=f"cutover-k-{os.getpid()}-"))  # this process: kept
    try:
        with Kernels(tmp_path):
            pass
        assert not stale.exists() and alive.exists()
    finally:
        alive.rmdir()


def test_warm_imports_are_the_notebooks_import_lines(tmp_path):
    nb = notebook(tmp_path / "a.ipynb", "from cutover_lib import Runbook\nimport json\nx = json.dumps(1)",
                  "%time import os", "import json", "def f():\n    import secrets\n")
    assert warm_imports(nb) == "from cutover_lib import Runbook\nimport json"
    assert warm_imports(tmp_path / "missing.ipynb") == ""


def test_no_writable_temporary_folder_is_one_clear_error(tmp_path, monkeypatch):
    import tempfile

    from cutover_lib.errors import UsageError

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(UsageError) as ei:
        with Kernels(tmp_path):
            pass
    assert ei.value.exit_code == 2
    assert ei.value.one_line() == ("cannot create the kernel's socket folder in the temporary folder: [Errno 30] "
                                   "Read-only file system (set TMPDIR to a writable local folder)")


def _project(tmp_path: Path, first: str = "01_first.ipynb") -> Path:
    (tmp_path / "params").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "phases.yaml").write_text(f"cutover: [{first}]\nrollback: [{first}]\n")
    notebook(tmp_path / "notebooks" / first, "import json")
    return tmp_path


def _kernel_pids(kernels: Kernels) -> list[int]:
    km = kernels._idle
    return [km.provisioner.pid] if km is not None else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_the_first_kernel_boots_before_the_command_line_is_parsed(tmp_path):
    """``cutover run/plan`` start the first notebook's kernel from their raw arguments (both option
    spellings); the command claims it for the same project root only."""
    from cutover_lib.engine import prestart as _prestart

    root = _project(tmp_path)
    _prestart.start_early(["--env", "local", f"--root={root}", "--phase", "cutover"])
    early = _prestart.claim(root)
    assert early is not None and early.cwd == root and _kernel_pids(early)
    assert _prestart.claim(root) is None  # handed out once
    with early:  # the command's own `with` does not start another
        assert early._idle is not None
        out = tmp_path / "out.ipynb"
        execute_notebook(root / "notebooks" / "01_first.ipynb", out, {}, root, 60, 60, kernels=early)
    assert not early._dir

    _prestart.start_early(["--root", str(root), "--phase", "cutover"])
    stray = _prestart._early
    pids = _kernel_pids(stray)
    assert _prestart.claim(tmp_path / "elsewhere") is None  # another root: closed, not used
    assert stray._dir is None and not any(_alive(p) for p in pids)


@pytest.mark.parametrize("args", [["--phase", "nosuch"], ["--env", "local"], ["--phase"],
                                  ["--phase", "cutover", "--root", "/nonexistent/x"]])
def test_no_early_kernel_when_the_arguments_do_not_say_which(tmp_path, args):
    from cutover_lib.engine import prestart as _prestart

    root = _project(tmp_path)
    try:
        _prestart.start_early([*args, "--root", str(root)] if "--root" not in args else args)
    except Exception:  # noqa: BLE001 - _entry ignores these: the CLI reports them
        pass
    assert _prestart._early is None  # nothing was started, for any root
    assert _prestart.claim(root) is None


def test_a_command_line_error_leaves_no_early_kernel(tmp_path):
    import subprocess
    import sys

    root = _project(tmp_path)
    with open(tmp_path / "err.txt", "w") as err:  # a file, not a pipe: a pipe would wait for the kernel too
        res = subprocess.run([str(Path(sys.executable).with_name("cutover")), "plan", "--phase", "cutover",
                              "--root", str(root), "--no-such-option"], stdout=err, stderr=err, timeout=60)
    assert res.returncode == 2 and "No such option" in (tmp_path / "err.txt").read_text()
    # the kernel it booted before parsing is gone with it (not left to notice its parent died)
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and "cutover_lib.engine.kernel_main" in _cmdline(p)
                 and _cwd(p) == str(root)]
    assert not leftovers


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cwd(p: Path) -> str:
    try:
        return os.readlink(p / "cwd")
    except OSError:
        return ""


def test_an_error_raised_on_purpose_shows_one_line_and_a_bug_its_traceback(tmp_path):
    """A CutoverError in a cell (a gate, a failed check) is the runbook's finding: the notebook shows
    its name, message and hint as the terminal does, no frames of the library; any other error
    keeps IPython's traceback.  The run kernel keeps no IPython history (the cells are evidence)."""
    nb = notebook(tmp_path / "a.ipynb",
                  "print(get_ipython().history_manager.enabled)",
                  "from cutover_lib.errors import GateNotApproved\n"
                  "raise GateNotApproved('gate t0 lacks approval from cto', hint='cutover approve ...')")
    bug = notebook(tmp_path / "b.ipynb", "def inner():\n    return {}['missing']\n\ninner()")
    with Kernels(tmp_path) as kernels:
        with pytest.raises(NotebookFailed) as ei:
            execute_notebook(nb, tmp_path / "a.out.ipynb", {}, tmp_path, 60, 120, kernels=kernels)
        with pytest.raises(NotebookFailed):
            execute_notebook(bug, tmp_path / "b.out.ipynb", {}, tmp_path, 60, 120, kernels=kernels)
    assert (ei.value.ename, ei.value.evalue) == ("GateNotApproved", "gate t0 lacks approval from cto")

    def error_of(path: Path) -> dict:
        cells = nbformat.read(str(path), as_version=4).cells
        return next(o for c in cells if c.cell_type == "code" for o in c.get("outputs", [])
                    if o.output_type == "error")

    assert outputs(tmp_path / "a.out.ipynb")[0].strip() == "False"
    assert error_of(tmp_path / "a.out.ipynb")["traceback"] == [
        "GateNotApproved: gate t0 lacks approval from cto (cutover approve ...)"]
    shown = "\n".join(error_of(tmp_path / "b.out.ipynb")["traceback"])
    assert "inner()" in shown and "KeyError" in shown and len(error_of(tmp_path / "b.out.ipynb")["traceback"]) > 1
