"""``cutover bridge``: keep #launch-bridge updated between slots while the change is open.

Section 1 says "keep #launch-bridge updated every 10 minutes".  While a slot runs, the runner
posts heartbeats; between slots this loop posts the change's status (:func:`change_status`)
every ``bridge.heartbeat`` until the change is closed -- the T+4h slot passed, or a rollback
finished after T0 -- or ``until`` (default T0 + 4h + ``timeline.late``) has passed.

Each post's outcome is appended to ``executed/<env>/bridge.jsonl`` (one JSON line, masked, never
rewritten).  A failing post is a warning and the loop goes on: a dead bridge must not stop the
updates once it is back.  The lock of a running ``cutover run`` is only read, never taken.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..config.durations import format_duration, recorded_time
from ..config.secrets import mask_obj
from ..errors import UsageError
from ..evidence.evidence import _disk_error, iso, utc_now

if TYPE_CHECKING:
    from ..adapters.notify import PostResult
    from ..config.models import Environment

__all__ = ["bridge_loop", "change_closed", "lock_holder"]

#: a rollback's own outcome, or a cutover run's that rolled back in the same run
_ROLLED_BACK = ("rolled-back", "rollback-failed")
#: the bridge call opens at T-30m; started more than an hour before that, the loop waits for it
_CALL = timedelta(minutes=-30)
_EARLY = timedelta(hours=1)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def lock_holder(root: Path, env: "Environment") -> str | None:
    """The run id holding ``executed/<env>/.lock`` (read only: the lock is never taken or broken)."""
    from ..engine.lock import EnvLock

    lock = EnvLock(root / "executed", env.name)
    holder = lock.holder()
    if holder is None:
        return None
    run_id = str(holder.get("run_id") or "?")
    return f"{run_id} (stale lock: its process is gone)" if lock.is_stale(holder) else run_id


def change_closed(root: Path, env: "Environment", rows: list[dict[str, Any]]) -> str | None:
    """How the change closed, or None while it is open: the newest run of the T+4h slot passed
    (started after T0), or a rollback of this release finished after T0 (its own ``rollback``
    phase, or a cutover run that rolled back)."""
    from ..engine.slots import _manifest

    post = next((r["run"] for r in rows if r["slot"].label == "T+4h"), None)
    started = recorded_time(post.get("started")) if post else None
    if post and post.get("outcome") == "passed" and started and started >= env.t0:
        return f"passed (T+4h {post['run']})"
    folder = root / "executed" / env.name
    for path in sorted(folder.glob("*T*Z-*"), reverse=True) if folder.is_dir() else []:
        m = _manifest(path)
        if m.get("release") != env.release or m.get("dry_run"):
            continue
        if m.get("phase") != "rollback" and m.get("outcome") not in _ROLLED_BACK:
            continue
        ended = recorded_time(m.get("ended")) if m.get("ended") else None
        if ended and ended >= env.t0:
            return f"rolled back ({m.get('phase')} {path.name} {m.get('outcome')})"
    return None


def _record(path: Path, now: datetime, result: "PostResult") -> None:
    """Append one line to bridge.jsonl (O_APPEND: earlier lines are never rewritten)."""
    rec = mask_obj({"ts": iso(now), "kind": "bridge-status", "ok": result.ok, "status": result.status,
                    "attempts": result.attempts, "error": result.error})
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(rec, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _disk_error(path, exc) from None


def bridge_loop(root: Path, env: "Environment", *, every: timedelta | None = None, once: bool = False,
                until: datetime | None = None, start_now: bool = False,
                sleep: Callable[[float], None] = time.sleep, now: Callable[[], datetime] = utc_now,
                echo: Callable[[str], None] = print, warn: Callable[[str], None] = _stderr) -> int:
    """Post the change's status every ``every`` (default ``bridge.heartbeat``) until it closes,
    ``until`` passes, or Ctrl-C / SIGTERM (130 / 143, one line on stderr); ``once``: one post.
    Started more than an hour before T-30m, it first waits for T-30m unless ``start_now``.
    Raises :class:`UsageError` (exit 2) when params name no webhook."""
    from ..adapters.notify import Bridge
    from ..engine.slots import slot_runs
    from ..evidence.bridge_timeline import change_status

    if env.bridge.webhook is None:
        raise UsageError(f"bridge.webhook is not set for {env.name}: there is nowhere to post the status",
                         hint=f"set bridge.webhook (e.g. env:LAUNCH_BRIDGE_WEBHOOK) in params/{env.name}.yaml")
    env.bridge.webhook.resolve()  # an unresolvable reference stops here (one line), not at every post
    interval = every if every is not None else env.bridge.heartbeat
    if interval.total_seconds() <= 0:
        raise UsageError("--every must be longer than 0", hint="say e.g. --every 10m")
    deadline = until or env.t0 + timedelta(hours=4) + env.timeline.late
    log = root / "executed" / env.name / "bridge.jsonl"
    bridge = Bridge(env.bridge, verify=env.tls_verify)
    try:
        call = env.t0 + _CALL
        if not once and not start_now and now() < call - _EARLY:
            echo(f"waiting until T-30m ({call:%H:%M} UTC) to post to #{env.bridge.channel} (--now: start now)")
            sleep((call - now()).total_seconds())
        while True:
            t = now()
            if not once and t >= deadline:
                echo(f"stopped: {deadline:%Y-%m-%d %H:%M} UTC has passed (the change window, or --until)")
                return 0
            rows = slot_runs(root, env)
            closed = change_closed(root, env, rows)
            msg = change_status(env, rows, t, lock_holder(root, env), closed=closed)
            result = bridge.send(msg)
            _record(log, t, result)
            if result.ok:
                echo(f"posted {t:%H:%M:%S} UTC to #{env.bridge.channel}: {msg.text.split(': ', 1)[-1]}")
            else:
                warn(f"warning: #{env.bridge.channel} not updated at {t:%H:%M:%S} UTC ({result.error}); "
                     f"trying again in {format_duration(interval)}")
            if closed:
                echo(f"change closed: {closed}; bridge updates end")
                return 0
            if once:
                return 0
            sleep(max(0.0, min(interval.total_seconds(), (deadline - now()).total_seconds())))
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as the CLI raises it (Terminated)
        warn("bridge updates stopped")
        return int(getattr(exc, "exit_code", 130))
