"""Start lab services from one interpreter: ``python -m stellaops_lab._launch`` (stdin: the jobs).

Each service is its own process, as ever, but they no longer each start Python and import tornado,
cryptography and their service module (~0.13 CPU-s a service, seven at every ``up``, every lab
apply and every rollback): this launcher imports them once, forks one child per service and exits.
Each child starts a new session, writes to its log, takes the jobs' environment, works in the lab's
data folder, is named ``lab-<service>`` (``/proc/PID/comm``: how ``_control`` recognises it, since a
forked child keeps the launcher's command line) and runs :func:`stellaops_lab.serve.main`.

Jobs: ``[{"service": ..., "args": [serve's arguments], "log": path, "env": {...}, "data_dir": path,
"pid_file": path}]``; each child's pid file is written as soon as it is forked (whoever called the
launcher may be killed before it reads the pids: a service nobody recorded would hold its port against
every later ``up``), then the pids are printed (JSON), in order.  Nothing is forked before every
import has succeeded.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
from typing import Any

__all__ = ["COMM_PREFIX", "main"]

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
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(f"{pid}\n")
    os.replace(tmp, path)


def main() -> None:
    jobs = json.load(sys.stdin)
    from . import serve

    for job in jobs:  # every import and every log file first: what cannot start fails the launch, not a child
        importlib.import_module(f"{__package__}.{serve._MODULES[job['service']]}")
    logs = [os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) for job in jobs]
    sys.stdout.flush()
    sys.stderr.flush()
    pids: list[int] = []
    try:
        for job, log in zip(jobs, logs):
            pid = os.fork()
            if pid == 0:
                _child(job, log, serve)
            pids.append(pid)
            _write_pid(job["pid_file"], pid)
    except OSError:  # (out of processes, a pid file not written): no half-started lab nobody recorded
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        raise
    print(json.dumps(pids))


if __name__ == "__main__":
    main()
