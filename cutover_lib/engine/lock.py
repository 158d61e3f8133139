"""One run at a time per environment: the lock file ``executed/<env>/.lock``, breaking a stale
one, and the rule for names that become folders (environments, run ids)."""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from ..errors import LockHeld, UsageError
from ..evidence.evidence import RunFolder, _disk_error, atomic_write, iso, utc_now

__all__ = ["EnvLock", "break_lock", "checked_name"]


class EnvLock:
    """One run at a time per environment: ``executed/<env>/.lock`` holds pid, host, user, run id."""

    def __init__(self, executed: Path, env: str) -> None:
        self.path = executed / env / ".lock"
        self.env = env

    def holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            return {"pid": None, "host": "?", "user": "?", "run_id": "? (unreadable lock file)", "unreadable": True}

    def is_stale(self, holder: dict[str, Any]) -> bool:
        if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
            return False
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def rename(self, run_id: str) -> None:
        """Name the run folder in the lock once it exists (the lock is taken before it is created)."""
        atomic_write(self.path, json.dumps({**(self.holder() or {}), "run_id": run_id}))

    def acquire(self, run_id: str, resume_of: RunFolder | None = None) -> None:
        """Take the lock or raise :class:`LockHeld`.  Resuming a crashed run takes over that run's
        own stale lock (its process is gone on this host), and the takeover is recorded."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:  # a read-only or full disk: one line, not a traceback
            raise _disk_error(self.path.parent, exc) from None
        h = self.holder()
        if resume_of is not None and h and h.get("run_id") == run_id and self.is_stale(h):
            resume_of.append({"kind": "lock-taken-over", "holder": h, "by": getpass.getuser()})
            self.path.unlink(missing_ok=True)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "user": getpass.getuser(),
                "run_id": run_id, "since": iso(utc_now())}
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            h = self.holder() or {}
            who = f"run {h.get('run_id')} (pid {h.get('pid')} on {h.get('host')}, user {h.get('user')}, since {h.get('since')})"
            if self.is_stale(h) or h.get("unreadable"):
                what = "the lock file is empty or unreadable" if h.get("unreadable") else "that process is gone"
                raise LockHeld(f"environment {self.env} is locked by {who}, but {what} (stale lock)",
                               hint=f"if no run is active, break it with: cutover unlock --env {self.env}") from None
            raise LockHeld(f"environment {self.env} is locked by {who}: one run at a time",
                           hint="wait for it to finish") from None
        except OSError as exc:
            raise _disk_error(self.path, exc) from None
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)

    def release(self) -> None:
        h = self.holder()
        if h and h.get("pid") == os.getpid() and h.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)


#: environment names and run ids: one path component inside executed/, never a path
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def checked_name(kind: str, value: str, hint: str) -> str:
    if not _NAME.fullmatch(value or ""):
        raise UsageError(f"{kind} {value!r} is not valid: letters, digits, '.', '_' and '-' only, starting with a "
                         "letter or digit (a name, not a path)", hint=hint)
    return value


def break_lock(root: Path, env: str) -> str:
    """Remove a stale lock (its process is gone on this host) and record the break.  An empty or
    unreadable lock file (a crash while it was written) is set aside, not deleted."""
    checked_name("environment", env, "pass the name of a params/<env>.yaml, e.g. --env prod")
    lock = EnvLock(root / "executed", env)
    holder = lock.holder()
    if holder is None:
        return f"no lock held for {env}"
    if holder.get("unreadable"):
        try:
            age = time.time() - lock.path.stat().st_mtime
        except FileNotFoundError:
            return f"no lock held for {env}"
        if age < 10:
            raise LockHeld(f"the lock of {env} is being written right now", hint="try again in a few seconds")
        kept = lock.path.with_name(f".lock.unreadable-{utc_now():%Y%m%dT%H%M%SZ}")
        os.replace(lock.path, kept)
        return (f"cleared the unreadable lock of {env}; its content is kept as executed/{env}/{kept.name} "
                "for the record")
    if not lock.is_stale(holder):
        raise LockHeld(f"environment {env} is locked by live run {holder.get('run_id')} (pid {holder.get('pid')} "
                       f"on {holder.get('host')}); refusing to break it", hint="wait for that run to finish")
    run_dir = root / "executed" / env / str(holder.get("run_id"))
    if _NAME.fullmatch(str(holder.get("run_id"))) and run_dir.is_dir():
        RunFolder(run_dir).append({"kind": "lock-broken", "holder": holder, "by": getpass.getuser(),
                                   "host": socket.gethostname()})
    lock.path.unlink(missing_ok=True)
    return f"broke stale lock of {env} held by run {holder.get('run_id')} (pid {holder.get('pid')}); recorded"
