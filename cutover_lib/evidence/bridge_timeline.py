"""#launch-bridge and Section 2's clock: the T+30m / T+45m smoke-deadline alarm and the change
status posted between slots (``cutover bridge``); the T-30m bridge call is an ``rb.bridge`` cell.
Pure message builders, like those of :mod:`cutover_lib.adapters.notify`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..adapters.notify import Message, _attachment, _fields
from .report import not_blocking_text

if TYPE_CHECKING:
    from ..config.models import Environment

__all__ = ["change_status", "smoke_deadline_alarm"]


def smoke_deadline_alarm(env: "Environment", run_id: str, at_minutes: int, since_t0_minutes: float,
                         running: str | None, deadline_minutes: int) -> Message:
    """T+``at_minutes`` and no smoke decision yet: who must act, and what is still running."""
    now = running or "between steps"
    breach = at_minutes >= deadline_minutes
    text = (f":rotating_light: **T+{at_minutes}m** on **{env.name}**: no smoke decision yet "
            f"({since_t0_minutes:.0f} min after T0 {env.t0:%H:%M} UTC); still running: {now}. "
            + ("The T+{0}m smoke deadline has passed: cutover lead, announce success or trigger the rollback "
               "(Section 6).".format(deadline_minutes) if breach else
               f"The smoke deadline is T+{deadline_minutes}m."))
    att = _attachment(f"{env.name} · T+{at_minutes}m without a smoke decision", f"still running: {now}",
                      "failed" if breach else "waived", _fields(
                          ("Deadline", f"T+{deadline_minutes}m", True),
                          ("Since T0", f"{since_t0_minutes:.1f} min", True),
                          ("Still running", now, False), ("Run", run_id, False),
                          ("Change ticket", env.change_ticket, True)))
    return Message(text, [att], "deadline-alarm")


def _since_t0(now: datetime, t0: datetime) -> str:
    """``T-1h 20m`` / ``T+0h 35m``: where the change is on Section 2's clock."""
    seconds = int((now - t0).total_seconds())
    h, m = divmod(abs(seconds) // 60, 60)
    return f"T{'-' if seconds < 0 else '+'}{h}h {m:02d}m"


def _state(row: dict[str, Any], now: datetime) -> str:
    run = row["run"]
    if run is not None:
        return str(run.get("outcome") or "running")
    return "due" if row["slot"].planned <= now else "not yet run"


def _shown(row: dict[str, Any], now: datetime) -> str:
    """The slot's state as the bridge reads it: a run that passed with failed ``required=False``
    steps names them (never a clean pass)."""
    left = (row["run"] or {}).get("failed_not_blocking") or []
    return _state(row, now) + (f" ({not_blocking_text(left)})" if left else "")


def change_status(env: "Environment", rows: list[dict[str, Any]], now: datetime, running: str | None,
                  closed: str | None = None) -> Message:
    """Where the change stands between slots: the last slot run, the next one due, a run holding
    the lock, and one field per slot.  ``rows``: :func:`cutover_lib.engine.slots.slot_runs`; ``closed``: how the
    change closed (the last post of ``cutover bridge``)."""
    done = [(r["run"].get("started") or r["run"]["run"], i, r) for i, r in enumerate(rows) if r["run"]]
    last_row = max(done, key=lambda d: (d[0], d[1]))[2] if done else None
    last = (f"{last_row['slot'].label} {_shown(last_row, now)} ({last_row['run']['run']})" if last_row
            else "no slot run yet")
    upcoming = next((r["slot"] for r in rows if r["run"] is None and r["slot"].planned + env.timeline.late >= now),
                    None)
    nxt = f"{upcoming.label} at {upcoming.planned:%H:%M} UTC ({upcoming.activity})" if upcoming else "no slot left"
    head = (f"**{env.name}** change {env.change_ticket}, release {env.release} — T0 {env.t0:%Y-%m-%d %H:%M} UTC "
            f"({_since_t0(now, env.t0)})")
    tail = f"last: {last}; next: {nxt}" + (f"; running now: {running}" if running else "")
    text = (f":checkered_flag: {head}: change closed: {closed}; {tail}" if closed else f":clock3: {head}: {tail}")
    states = {_state(r, now) for r in rows if r["run"]}
    if states & {"failed", "blocked", "rollback-failed"}:
        outcome = "failed"
    elif (closed and not closed.startswith("passed")) or states & {"rolled-back", "rollback-pending"}:
        outcome = "waived"
    elif closed or (last_row and _state(last_row, now) == "passed"):
        outcome = "passed"
    else:
        outcome = "planned"
    slots = [(r["slot"].label, f"planned {r['slot'].planned:%H:%M} — {_shown(r, now)}", True) for r in rows]
    att = _attachment(f"{env.name} · change {env.change_ticket}" + (" closed" if closed else " status"),
                      f"{now:%H:%M} UTC ({_since_t0(now, env.t0)})" + (f"; running now: {running}" if running else ""),
                      outcome, _fields(*slots, ("Running now", running, False), ("Closed", closed, False)))
    return Message(text, [att], "bridge-status")
