"""Notebook execution: papermill in the runner's own process, one kernel per run.

A kernel start and a first cell's imports cost ~0.5 s of CPU; one per notebook made that most
of a lab run.  Here papermill runs inside the runner, and a run's notebooks share one kernel,
started before the run folder is even written and importing the phase's modules as it boots
(IPython ``exec_lines``, in a throw-away namespace).  Between notebooks the kernel is put back
to a clean state (see :class:`Kernels`).  It keeps no IPython history (the cells are evidence).

Kernels talk over IPC (unix) sockets in a private folder made per run (mode 0700), so
nothing listens on a TCP port during a cutover and two runs never share a socket path.
A whole-notebook deadline kills the kernel's process group (the kernel is a session leader:
the commands it started go with it); a kernel whose runner dies stops itself (ipykernel's
parent poller).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["KERNEL_ENV", "Kernels", "NotebookFailed", "execute_notebook", "warm_imports"]

#: the run kernels' environment on top of the runner's: library warnings stay out of the record
KERNEL_ENV = {"PYTHONWARNINGS": "ignore"}
_NO_HISTORY = "--HistoryManager.enabled=False"  # (its sqlite file and saving thread: ~0.09 CPU-s)


class NotebookFailed(Exception):
    """A notebook stopped: ``ename`` is the error's name (``StepFailed``, ``NotebookDeadline``, ...)."""

    def __init__(self, ename: str, evalue: str) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename, self.evalue = ename, evalue


def warm_imports(notebook: Path) -> str:
    """The top-level import statements of a notebook's code cells, as one block of code
    (empty when there are none or the notebook cannot be read)."""
    try:
        nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    lines: list[str] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell.get("source", []))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                lines.append(ast.unparse(node))
    return "\n".join(dict.fromkeys(lines))


@lru_cache(maxsize=1)
def _manager_class() -> type:
    """jupyter_client's async kernel manager, with one client made and connected at kernel start.

    nbclient asks the manager for a client and waits until the kernel answers; a client connected early is
    subscribed to IOPub long before it is used, and its wait skips jupyter_client's closing 0.2 s IOPub
    flush (nbclient matches every output to its request by parent id: no startup message lands in a cell).
    """
    from queue import Empty

    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager

    class ReadyClient(AsyncKernelClient):  # type: ignore[misc]
        def start_channels(self, *args: Any, **kwargs: Any) -> None:
            kwargs["hb"] = False  # no heartbeat thread: the kernel manager knows whether the kernel lives
            if not self.channels_running:  # started early; nbclient starts it again
                super().start_channels(*args, **kwargs)

        async def wait_for_ready(self, timeout: float | None = None) -> None:
            deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
            while True:
                self.kernel_info()
                try:
                    msg = await self.shell_channel.get_msg(timeout=1)
                except Empty:
                    msg = {"msg_type": None}
                if msg["msg_type"] == "kernel_info_reply":
                    try:  # IOPub is connected once the kernel's status message arrives
                        await self.iopub_channel.get_msg(timeout=0.2)
                    except Empty:
                        pass
                    else:
                        self._handle_kernel_info_reply(msg)
                        break
                if not await self._async_is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")
            while True:  # drop what has already arrived, without waiting for more
                try:
                    await self.iopub_channel.get_msg(timeout=0)
                except Empty:
                    break

    class EarlyClientKernelManager(AsyncKernelManager):  # type: ignore[misc]
        """One client per kernel, made and connected when the kernel starts; it serves every
        notebook the kernel runs (nbclient does not close a client it did not create)."""

        _kc: Any = None

        @property
        def kernel_spec(self) -> Any:
            """The ``python3`` kernel, run by :mod:`.kernel_main` (ipykernel without its debugger)."""
            spec = super().kernel_spec
            if spec is not None and spec.argv[1:3] == ["-m", "ipykernel_launcher"]:
                spec.argv = [spec.argv[0], "-m", f"{__package__}.kernel_main", *spec.argv[3:]]
            return spec

        def client(self, **kwargs: Any) -> Any:
            if self._kc is None:
                self._kc = super().client(**kwargs)
            return self._kc

        def close_client(self) -> None:
            if self._kc is not None:
                self._kc.stop_channels()
                self._kc = None

    EarlyClientKernelManager.client_factory = ReadyClient  # type: ignore[assignment]  # a traitlets Type
    return EarlyClientKernelManager


@lru_cache(maxsize=1)
def _engine_name() -> str:
    """papermill's nbclient engine, saving the output notebook at most once a second.

    papermill writes the whole output notebook (deep copy, schema validation, indented JSON)
    at the start and the end of every cell: quadratic in the notebook's length, and most of
    a short step's cost.  Here the notebook is written when it starts, then at most once per
    ``SAVE_EVERY`` seconds while cells run (papermill's own autosave keeps a long cell's output
    flowing), and always when it ends, failed or not.  The ledger, written at every step, is
    the record of what happened; a crash loses at most a second of the notebook's outputs.
    """
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

    class ThrottledSaves(NotebookExecutionManager):  # type: ignore[misc]
        SAVE_EVERY = 1.0
        forced = True  # the first save (notebook start) always happens

        def save(self, **kwargs: Any) -> None:
            if self.forced or (self.now() - self.last_save_time).total_seconds() >= self.SAVE_EVERY:
                self.forced = False
                super().save(**kwargs)

        def notebook_complete(self, **kwargs: Any) -> None:
            self.forced = True  # its closing save always happens
            super().notebook_complete(**kwargs)

    class CutoverEngine(NBClientEngine):  # type: ignore[misc]
        @classmethod
        def execute_notebook(cls, nb: Any, kernel_name: str, output_path: str | None = None,
                             progress_bar: bool = True, log_output: bool = False, autosave_cell_every: int = 30,
                             **kwargs: Any) -> Any:
            nb_man = ThrottledSaves(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                                    autosave_cell_every=autosave_cell_every)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

    papermill_engines.register("cutover", CutoverEngine)
    return "cutover"


#: run once in a new kernel, before it reports ready: what a notebook may change in the process
#: (working folder, environment) as it was at start, so the next notebook starts from it again
_BASELINE = """
import os as _os, sys as _sys, types as _types
_b = _types.ModuleType("_cutover_kernel_baseline")
_b.cwd, _b.env = _os.getcwd(), dict(_os.environ)
_sys.modules[_b.__name__] = _b
del _os, _sys, _types, _b
"""

#: between two notebooks in one kernel: back to the baseline, an empty namespace and a new
#: session (execution counts start at 1 again)
_RESET = """
def _cutover_reset():
    import gc, os, sys
    b = sys.modules["_cutover_kernel_baseline"]
    os.chdir(b.cwd)
    os.environ.clear()
    os.environ.update(b.env)
    collect, gc.collect = gc.collect, lambda *a, **k: 0  # reset() ends in a full collection (~50 ms)
    try:
        get_ipython().reset(new_session=True)  # the namespace, this function included
    finally:
        gc.collect = collect
_cutover_reset()
"""


def _remove_stale_socket_folders() -> None:
    """Socket folders left by runs that were killed (kill -9 skips every clean-up): a folder
    named after a process of this user that no longer exists is removed."""
    for folder in Path(tempfile.gettempdir()).glob("cutover-k-*-*"):
        try:
            pid = int(folder.name.split("-")[2])
            if folder.stat().st_uid != os.getuid():
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, IndexError, OSError):
            continue


class Kernels:
    """The kernel a run's notebooks execute in.  Use as a context manager.

    One kernel serves the notebooks of a run one after the other, the way an operator would
    work through them in one JupyterLab session, but with nothing carried over: before each
    notebook after the first, the kernel's namespace is emptied, its working folder and
    environment are put back as they were at start, and its execution count starts again at
    1.  Imported modules stay imported (that is the saving).  A notebook that fails, crashes or
    runs past its deadline has its kernel killed, and the next notebook gets a new one.
    """

    def __init__(self, cwd: Path, *, env: dict[str, str] | None = None) -> None:
        self.cwd = Path(cwd)
        self.env = {**os.environ, **(env or {})}
        self._dir: Path | None = None
        self._idle: Any = None  # a live kernel, no notebook in it
        self._used = False  # the idle kernel has run a notebook (reset it before the next)
        self._stopped: list[Any] = []
        self._count = 0

    def __enter__(self) -> "Kernels":
        from ..errors import UsageError

        if self._dir is not None:  # entered early (see start_early)
            return self
        _remove_stale_socket_folders()
        try:  # short: a unix socket path has ~107 bytes
            self._dir = Path(tempfile.mkdtemp(prefix=f"cutover-k-{os.getpid()}-"))
        except OSError as exc:
            raise UsageError(f"cannot create the kernel's socket folder in the temporary folder: {exc}",
                             hint="set TMPDIR to a writable local folder") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self, warm: str) -> Any:
        from jupyter_core.utils import run_sync

        assert self._dir is not None, "use Kernels as a context manager"
        self._count += 1
        km = _manager_class()(kernel_name="python3", transport="ipc",
                              connection_file=str(self._dir / f"k{self._count}.json"))
        lines = [_BASELINE]
        if warm:  # in a throw-away namespace: only sys.modules changes
            lines.append(f"try:\n    exec(compile({warm!r}, '<warm-up>', 'exec'), {{}})\nexcept Exception:\n    pass")
        run_sync(km.start_kernel)(extra_arguments=[f"--IPKernelApp.exec_lines={json.dumps(lines)}", _NO_HISTORY],
                                  cwd=str(self.cwd), env=self.env)
        km.client().start_channels()
        return km

    def prepare(self, notebook: Path) -> None:
        """Start the kernel now, importing what ``notebook`` (the first to run) imports, while
        the caller does other work."""
        if self._idle is None:
            self._idle = self._start(warm_imports(notebook))
            self._used = False

    def take(self) -> Any:
        """The kernel for the next notebook: the idle one, reset, or a new one."""
        from jupyter_core.utils import run_sync

        km, self._idle = self._idle, None
        if km is not None and self._used:
            kc = km.client()  # the previous notebook's client, still connected
            try:
                if not run_sync(km.is_alive)():
                    raise RuntimeError("the kernel is gone")
                reply = run_sync(kc.execute_interactive)(_RESET, silent=True, store_history=False, timeout=10,
                                                         output_hook=lambda msg: None)
                if reply["content"]["status"] != "ok":
                    raise RuntimeError(reply["content"].get("evalue", "reset failed"))
            except Exception:  # noqa: BLE001 - a kernel that cannot be reset is replaced
                self.stop(km)
                km = None
        return km if km is not None else self._start("")

    def release(self, km: Any) -> None:
        """A notebook finished cleanly in ``km``: keep it, and its connected client, for the next."""
        if self._idle is not None:
            self.stop(self._idle)
        self._idle, self._used = km, True

    @staticmethod
    def kill(km: Any) -> None:
        """SIGKILL the kernel's process group (the kernel and every command it started)."""
        pid = getattr(getattr(km, "provisioner", None), "pid", None)
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self, km: Any) -> None:
        """Kill a kernel now; reaping it and removing its files wait for :meth:`close`."""
        self.kill(km)
        km.close_client()
        self._stopped.append(km)

    def close(self) -> None:
        from jupyter_core.utils import run_sync

        if self._idle is not None:
            self.stop(self._idle)
            self._idle = None
        for km in self._stopped:
            process = getattr(getattr(km, "provisioner", None), "process", None)
            try:
                if process is not None:  # killed: reaped at once (jupyter_client polls every 0.1 s)
                    process.wait(timeout=5)
                run_sync(km.shutdown_kernel)(now=True)
            except Exception:  # noqa: BLE001 - already gone: nothing left to clean
                pass
        self._stopped.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def execute_notebook(nb_in: Path, nb_out: Path, parameters: dict[str, Any], cwd: Path, cell_timeout: float,
                     deadline: float, *, kernels: Kernels | None = None) -> None:
    """Run one notebook with papermill into ``nb_out`` (written even when it fails).

    Raises :class:`NotebookFailed`: the failing cell's error, ``NotebookDeadline`` past
    ``deadline`` seconds (the kernel is killed), or ``NotebookCrashed`` if the kernel died.
    """
    if kernels is None:
        with Kernels(cwd, env=KERNEL_ENV) as own:
            own.prepare(nb_in)
            return execute_notebook(nb_in, nb_out, parameters, cwd, cell_timeout, deadline, kernels=own)
    import papermill
    from papermill.exceptions import PapermillExecutionError

    km = kernels.take()
    expired = threading.Event()

    def on_deadline() -> None:
        expired.set()
        Kernels.kill(km)

    def deadline_passed() -> NotebookFailed:
        return NotebookFailed("NotebookDeadline", f"{Path(nb_in).name} exceeded its {deadline:g}s deadline "
                              "(timeouts.notebook, plus what the notebook's metadata adds); the kernel was stopped")

    timer = threading.Timer(deadline, on_deadline)
    timer.daemon = True
    timer.start()
    try:
        papermill.execute_notebook(
            str(nb_in), str(nb_out), parameters=parameters, cwd=str(cwd), kernel_name="python3", km=km,
            engine_name=_engine_name(), progress_bar=False, log_output=False, request_save_on_cell_execute=False,
            autosave_cell_every=5, execution_timeout=cell_timeout)
    except PapermillExecutionError as exc:
        kernels.stop(km)
        if expired.is_set():
            raise deadline_passed() from None
        raise NotebookFailed(exc.ename, str(exc.evalue)) from None
    except BaseException as exc:  # nbclient/zmq errors become a notebook outcome; Ctrl-C stops the kernel
        kernels.stop(km)
        if not isinstance(exc, Exception):
            raise
        if expired.is_set():
            raise deadline_passed() from None
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise NotebookFailed("NotebookCrashed", f"the notebook's kernel died: {detail}") from None
    finally:
        timer.cancel()
    if expired.is_set():
        kernels.stop(km)
        raise deadline_passed()
    kernels.release(km)
