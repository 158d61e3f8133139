"""``cutover ...`` as a new process, forked from one that has already imported the tool (tests only).

A test that runs ``python -m cutover_lib.cli.app run ...`` wants a process of its own -- its exit
code, its signals, its ``os._exit``, its kernel -- but pays ~0.5 CPU-s of interpreter start and
imports (papermill, nbclient, jupyter_client, nbformat, nbconvert) for each, on a suite of a
hundred runs.  Here each pytest process starts one server (``python tests/forkrun.py SOCKET``)
that imports those once and then forks one child per command: the child takes the caller's
working folder, environment, standard streams and argv, and runs the module as ``python -m``
would, so what the command does, prints and exits with is the command's own.

What differs from a fresh interpreter, and why that is safe here:
- the modules were imported under the server's environment: a command whose ``PYTHON*``,
  ``LANG`` or ``LC_*`` variables differ (they act at interpreter start) is run as a plain
  subprocess instead;
- the child's parent is the server, not the test (nothing here looks at its parent; a test
  that signals its run or inspects its process tree starts it with ``subprocess`` itself);
- ``/proc/PID/cmdline`` is the server's (the tool never reads it).

The server is single-threaded (it forks), reaps its children through pidfds, and exits when
its caller goes away.  :func:`run` falls back to ``subprocess.run`` when no server can start,
and always with ``CUTOVER_TEST_NO_FORK=1`` (to compare, or to rule the server out).
"""

from __future__ import annotations

import atexit
import json
import locale
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

__all__ = ["run"]

#: what the server imports before it forks: what a ``cutover run`` imports before its first step
WARM = ("cutover_lib.cli.app", "cutover_lib.engine.runner", "cutover_lib.engine.kernels", "papermill",
        "papermill.engines", "nbclient", "jupyter_client.manager", "jupyter_client.asynchronous", "nbformat",
        "nbconvert", "nbconvert.exporters.html", "jinja2", "httpx", "yaml")
MODULE = "cutover_lib.cli.app"

_server: dict[str, object] = {}
_lock = threading.Lock()


# ---------------------------------------------------------------- the caller's side

def run(argv: list[str], *, cwd: str | os.PathLike[str], env: dict[str, str] | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m cutover_lib.cli.app ARGV`` in ``cwd`` with ``env`` (default: this process's),
    output captured as text: what ``subprocess.run(..., capture_output=True, text=True)`` returns."""
    env = dict(os.environ if env is None else env)
    sock = _connect(env)
    if sock is None:
        return subprocess.run([sys.executable, "-m", MODULE, *argv], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        request = {"argv": [str(a) for a in argv], "cwd": str(cwd), "env": env,
                   "sigint_ignored": signal.getsignal(signal.SIGINT) is signal.SIG_IGN}
        socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [0, out_w, err_w])
    finally:
        os.close(out_w)
        os.close(err_w)
    reply = sock.makefile("rb")
    pid = int(_reply(reply)["pid"])
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    deadline = None if timeout is None else time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        for fd in chunks:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                _kill(pid)
                for fd in list(sel.get_map()):
                    os.close(fd)
                sock.close()
                raise subprocess.TimeoutExpired([MODULE, *argv], timeout or 0)
            for key, _ in sel.select(left):
                data = os.read(key.fd, 65536)
                if data:
                    chunks[key.fd].append(data)
                else:
                    sel.unregister(key.fd)
                    os.close(key.fd)
    code = int(_reply(reply)["returncode"])
    sock.close()
    text = {fd: _text(b"".join(parts)) for fd, parts in chunks.items()}
    return subprocess.CompletedProcess([MODULE, *argv], code, text[out_r], text[err_r])


def _reply(reply: Any) -> dict[str, Any]:
    line = reply.readline()
    if not line:
        raise RuntimeError("the fork server (tests/forkrun.py) ended before the command did; "
                           "CUTOVER_TEST_NO_FORK=1 runs the tests' commands without it")
    return json.loads(line)


def _text(data: bytes) -> str:
    """As ``subprocess.run(..., text=True)`` decodes: the locale's encoding, universal newlines."""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _connect(env: dict[str, str]) -> socket.socket | None:
    """A connection to this process's server (started on first use), or None: run it plainly."""
    if os.environ.get("CUTOVER_TEST_NO_FORK") == "1":
        return None
    with _lock:
        if _server.get("pid") != os.getpid():
            _server.clear()
            _server["pid"] = os.getpid()
            _server["python_env"] = _python_env(os.environ)  # what the server starts with
            _server["path"] = _start()
        path = _server["path"]
    if path is None or _python_env(env) != _server["python_env"]:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def _python_env(env: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    """The variables an interpreter reads as it starts (its flags, its streams' encoding)."""
    return {k: v for k, v in env.items() if k.startswith(("PYTHON", "LC_")) or k == "LANG"}


def _start() -> str | None:
    folder = tempfile.mkdtemp(prefix="cutover-fork-")
    path = os.path.join(folder, "s")
    proc = subprocess.Popen([sys.executable, __file__, path, str(os.getpid())], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    assert proc.stdout is not None
    ready = proc.stdout.readline().strip() == b"ready"
    proc.stdout.close()
    atexit.register(_stop, proc, folder)  # (it would also go when this process does; this reaps it)
    return path if ready else None


def _stop(proc: subprocess.Popen[bytes], folder: str) -> None:
    proc.kill()
    proc.wait()
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- the server

def _warm_html() -> None:
    """One small notebook rendered as a run's first HTML export is: what nbconvert compiles at its
    first use (the template, mistune's and pygments' expressions: ~0.2 CPU-s) is then compiled once
    here instead of in every run -- as a run's second notebook finds it."""
    import nbformat

    from cutover_lib.evidence.report import render_notebook_html

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Step\n\n*Expected* `result`"),
                                         nbformat.v4.new_code_cell("rb.sh('1.x', 'true')  # a cell")])
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    with tempfile.NamedTemporaryFile("w", suffix=".ipynb") as f:
        nbformat.write(nb, f)
        f.flush()
        render_notebook_html(f.name)


def serve(path: str, caller: int) -> None:
    import importlib

    for name in WARM:
        importlib.import_module(name)
    _warm_html()
    import gc

    gc.collect()
    gc.freeze()  # what is imported now is never scanned by a child's collections (no copy-on-write of it)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    watch = os.pidfd_open(caller)  # readable when the caller has exited: then so does the server
    sel.register(watch, selectors.EVENT_READ, "caller")
    print("ready", flush=True)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, connection)
    while True:
        for key, _ in sel.select():
            if key.data == "caller":
                for pid, _conn in children.values():
                    _kill(pid)
                shutil.rmtree(os.path.dirname(path), ignore_errors=True)
                os._exit(0)
            if key.data == "accept":
                conn, _ = listener.accept()
                pid = _fork(conn, [listener.fileno(), watch, *children, *(c.fileno() for _, c in children.values())])
                if pid is None:
                    conn.close()
                    continue
                pidfd = os.pidfd_open(pid)
                children[pidfd] = (pid, conn)
                sel.register(pidfd, selectors.EVENT_READ, "child")
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            else:
                pid, conn = children.pop(key.fd)
                sel.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(status)
                try:
                    conn.sendall(json.dumps({"returncode": code}).encode() + b"\n")
                except OSError:
                    pass
                conn.close()


def _fork(conn: socket.socket, close: list[int]) -> int | None:
    """Read one request from ``conn`` and fork its child; the child never returns."""
    msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    buf = msg
    while not buf.endswith(b"\n"):
        more = conn.recv(1 << 20)
        if not more:
            for fd in fds:
                os.close(fd)
            return None
        buf += more
    request = json.loads(buf)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    code = 1
    try:
        for fd in (*close, conn.fileno()):
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _as_new_process(request)
        import runpy

        sys.modules.pop(MODULE, None)  # python -m runs it as __main__ only

        runpy.run_module(MODULE, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - shown as a fresh interpreter would show it
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    os._exit(code)


def _as_new_process(request: dict) -> None:
    """The state a fresh ``python -m`` would start this command with, where the server's differs."""
    import random

    atexit._clear()  # the server's imports registered them for the server
    signal.signal(signal.SIGINT, signal.SIG_IGN if request["sigint_ignored"] else signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # (from TMPDIR again)
    random.seed()
    sys.argv = [MODULE, *request["argv"]]
    sys.path.insert(0, os.getcwd())  # python -m puts the working folder first


if __name__ == "__main__":
    sys.path.pop(0)  # this folder (tests/) is not on a command's path
    serve(sys.argv[1], int(sys.argv[2]))
