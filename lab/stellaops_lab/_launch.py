"""Start lab services from one interpreter: ``python -m stellaops_lab._launch`` (stdin: the jobs).

Each service is its own process, as ever, but they no longer each start Python and import tornado,
cryptography and their service module (~0.13 CPU-s a service, seven at every ``up``, every lab
apply and every rollback): this launcher imports them once, forks one child per service and exits.
Each child starts a new session, writes to its log, takes the jobs' environment, works in the lab's
data folder, is named ``lab-<service>`` (``/proc/PID/comm``: how ``_control`` recognises it, since a
forked child keeps the launcher's command line) and runs :func:`stellaops_lab.serve.main`.

Jobs: ``[{"service": ..., "args": [serve's arguments], "log": path, "env": {...}, "data_dir": path,
"pid_file": path}]``.  Nothing is forked before every import has succeeded.

``python -m stellaops_lab._launch spawn`` starts programs instead (the lab's Prometheus), with
``posix_spawn`` in a new session: ``[{"argv": [...], "log": path, "env": {...}, "pid_file": path}]``.
They are reparented away from the caller, who never holds a child it would have to reap.

Either way each process's pid file is written the moment it is started (whoever called the launcher may
be killed before it reads the pids: a process nobody recorded would hold its port against every later
start); if one cannot be written, every process started so far is killed and the launch fails.  Then
the pids are printed (JSON), in order.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["COMM_PREFIX", "main", "spawn"]

#: ``/proc/PID/comm`` of a forked service: ``lab-scanner`` (at most 15 characters, the kernel's limit)
COMM_PREFIX = "lab-"
_PR_SET_NAME = 15


def _child(job: dict[str, Any], log: int, serve: Any) -> None:
    """In the forked child: detach, redirect, rename, serve; never returns."""
    code: object = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)  # (the launcher's pipes are gone from this process: its caller sees EOF)
        os.close(null)
        os.environ.clear()
        os.environ.update(job["env"])
        os.chdir(job["data_dir"])
        try:
            import ctypes

            ctypes.CDLL(None).prctl(_PR_SET_NAME, f"{COMM_PREFIX}{job['service']}".encode()[:15], 0, 0, 0)
        except (OSError, AttributeError):
            pass
        serve.main(job["args"])
        code = 0
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001 - a service that cannot start says why in its log
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


def _write_pid(path: str, pid: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="ascii") as handle:
            handle.write(f"{pid}\n")
        os.replace(tmp, path)
    finally:  # (after a failed replace: no temporary file left in the lab's run folder)
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _start_recorded(jobs: list[dict[str, Any]], start: Callable[[dict[str, Any]], int]) -> list[int]:
    """``start(job)`` for each job, its pid file written at once; every process started so far is
    killed when one cannot start or its pid file cannot be written (no process nobody recorded)."""
    pids: list[int] = []
    try:
        for job in jobs:
            pids.append(start(job))
            _write_pid(job["pid_file"], pids[-1])
    except OSError:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # (one that already died: kill the others all the same)
                os.kill(pid, signal.SIGKILL)
        raise
    return pids


def spawn(jobs: list[dict[str, Any]]) -> list[int]:
    """Start each job's program (``argv``) in a new session, its output appended to its log."""
    def start(job: dict[str, Any]) -> int:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        return os.posix_spawn(job["argv"][0], job["argv"], job["env"], file_actions=actions, setsid=True)

    return _start_recorded(jobs, start)


def main() -> None:
    jobs = json.load(sys.stdin)
    if sys.argv[1:] == ["spawn"]:
        print(json.dumps(spawn(jobs)))
        return
    from . import serve

    for job in jobs:  # every import and every log file first: what cannot start fails the launch, not a child
        importlib.import_module(f"{__package__}.{serve._MODULES[job['service']]}")
    for job in jobs:
        job["log_fd"] = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()

    def fork(job: dict[str, Any]) -> int:
        pid = os.fork()
        if pid == 0:
            _child(job, job["log_fd"], serve)
        return pid

    print(json.dumps(_start_recorded(jobs, fork)))


if __name__ == "__main__":
    main()
