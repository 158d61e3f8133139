"""Section 2 on time: each activity (T-24h ... T+4h) is a *slot*, the phase that carries it out
at T0 + its offset (``slots:`` in ``notebooks/phases.yaml``).

* :func:`slot_table` -- every slot with its planned UTC time (``cutover schedule``, ``cutover bridge``);
* :func:`check_on_time` -- before a run: a slot started far from its hour, or a phase that runs
  several slots at once, needs ``--at-any-time`` where the timeline is enforced (prod); the
  answer is recorded in the run either way;
* :func:`slot_runs` -- the newest run of each slot in an environment (the T-30m go/no-go, the
  bridge status, the change page);
* :class:`SmokeDeadline` -- during the T0 slot's run, in the runner process: at T+30m and T+45m
  without a smoke decision, an alarm to the bridge naming the step still running.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.durations import format_duration, spoken_duration
from ..errors import UsageError
from ..evidence.evidence import utc_now
from ..evidence.timeline import ACTIVITIES
from .phases import load_phases, load_slots

if TYPE_CHECKING:
    from ..config.models import Environment
    from ..evidence.evidence import RunFolder

__all__ = ["Slot", "SmokeDeadline", "check_on_time", "go_no_go_given", "running_now", "slot_name", "slot_of",
           "slot_runs", "slot_table"]


@dataclass(frozen=True)
class Slot:
    label: str          # "T-24h", as Section 2 says it
    name: str           # "t-24h": what `--phase` takes and unit names carry ("t+45m" -> "tplus45m" there)
    phase: str
    offset: timedelta
    planned: datetime
    activity: str
    owner: str


def slot_name(label: str) -> str:
    return label.lower()


def slot_table(root: Path, env: "Environment") -> list[Slot]:
    """Every slot of ``notebooks/phases.yaml``, in Section 2's order, with its planned time."""
    slots = load_slots(root)
    return [Slot(a.label, slot_name(a.label), slots[a.label], a.offset, env.t0 + a.offset, a.activity, a.owner)
            for a in ACTIVITIES if a.label in slots]


def slot_of(root: Path, phase: str) -> str | None:
    """The slot label a phase carries out (None: no slot of its own, e.g. rollback, readiness)."""
    return next((label for label, p in load_slots(root).items() if p == phase), None)


def _covered(root: Path, phase: str) -> list[str]:
    """The slots whose notebooks a phase without a slot of its own runs (readiness: T-24h .. T-6h)."""
    phases = load_phases(root)
    mine = set(phases.get(phase, []))
    return [label for label, p in load_slots(root).items() if p != phase and set(phases[p]) & mine]


def check_on_time(root: Path, env: "Environment", phase: str, *, at_any_time: bool, dry_run: bool,
                  resumed: bool = False, now: datetime | None = None) -> dict[str, Any] | None:
    """The ``slot`` record of a run about to start (None: a phase outside the timeline, e.g. rollback).

    A slot is on time when it starts between ``timeline.early`` before and ``timeline.late``
    after T0 + its offset.  Where the timeline is enforced (prod, or ``timeline.enforce``) a run
    off its hour -- or of a phase that runs several slots at once -- stops here (exit 2) unless
    ``--at-any-time``; elsewhere it runs and the record says so.  A plan (dry run) is made ahead
    of time on purpose, and a resume goes on with a slot that started on time: recorded, never
    refused."""
    now = now or utc_now()
    label = slot_of(root, phase)
    covered = [] if label else _covered(root, phase)
    if label is None and not covered:
        return None
    enforced = env.timeline.enforced
    rec: dict[str, Any] = {"kind": "slot", "slot": label, "t0": env.t0.isoformat(), "started": now.isoformat(),
                           "enforced": enforced, "at_any_time": at_any_time, "dry_run": dry_run, "resumed": resumed}
    if label is None:
        rec.update(covers=covered, on_time=False,
                   note=f"runs slots {', '.join(covered)} at once (each has its own hour)")
        why = f"phase {phase} runs slots {', '.join(covered)} at once, and in {env.name} each runs at its own hour"
        fix = "run each slot at its hour (cutover schedule --env " + env.name + "), or say --at-any-time (recorded)"
    else:
        planned = env.t0 + next(a.offset for a in ACTIVITIES if a.label == label)
        off = now - planned
        on_time = -env.timeline.early <= off <= env.timeline.late
        when = f"{spoken_duration(off)} {'early' if off.total_seconds() < 0 else 'late'}"
        rec.update(planned=planned.isoformat(), off_by_s=round(off.total_seconds(), 1), on_time=on_time,
                   note=f"slot {label} planned {planned:%Y-%m-%d %H:%M} UTC; started {when}"
                        + ("" if on_time else f" (outside -{format_duration(env.timeline.early)} / "
                                              f"+{format_duration(env.timeline.late)})"))
        why = (f"slot {label} ({phase}) of {env.name} is planned at {planned:%Y-%m-%d %H:%M} UTC "
               f"(T0 {env.t0:%Y-%m-%d %H:%M} UTC); now is {when}")
        fix = (f"run it at its hour (it may start {format_duration(env.timeline.early)} early to "
               f"{format_duration(env.timeline.late)} late), fix t0 in params/{env.name}.yaml, or say --at-any-time "
               "(recorded)")
        if on_time:
            return rec
    if enforced and not at_any_time and not dry_run and not resumed:
        raise UsageError(why, hint=fix)
    return rec


def _manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def slot_runs(root: Path, env: "Environment") -> list[dict[str, Any]]:
    """Each slot with the newest run (not a plan) of this release that carried it out in this
    environment -- its own phase's, or a phase that ran it with others (readiness) -- newest first
    by run id.  The T-2h rehearsal is looked for in ``rehearsal.env`` when params name one."""
    phases = load_phases(root)
    out = []
    for slot in slot_table(root, env):
        env_name = (env.rehearsal.env or env.name) if slot.phase == "rehearsal" else env.name
        carriers = {p for p, nbs in phases.items() if set(phases[slot.phase]) <= set(nbs)}
        latest = None
        folder = root / "executed" / env_name
        for path in sorted(folder.glob("*T*Z-*"), reverse=True) if folder.is_dir() else []:
            m = _manifest(path)
            if m.get("phase") in carriers and not m.get("dry_run") and m.get("release") == env.release:
                latest = {"run": path.name, "env": env_name, "phase": m.get("phase"), "outcome": m.get("outcome"),
                          "started": m.get("started"), "ended": m.get("ended"), "sealed": bool(m.get("sealed")),
                          "failed_not_blocking": m.get("failed_not_blocking") or []}
                break
        out.append({"slot": slot, "run": latest})
    return out


def go_no_go_given(root: Path, env: "Environment") -> dict[str, Any]:
    """Where the timeline is enforced, T0 needs the T-30m GO of this release: the newest run of the
    T-30m slot passed (its gate approved by the guild leads), is sealed and untouched, and started
    no earlier than T-30m less ``timeline.early`` -- a GO from an earlier date does not count.
    Raises :class:`GateNotApproved` (exit 3) naming what is missing."""
    from ..errors import GateNotApproved
    from ..evidence.tamper import verify_run

    slot = next((s for s in slot_table(root, env) if s.label == "T-30m"), None)
    if slot is None:
        return {"note": "no T-30m slot in notebooks/phases.yaml"}
    run = next(r["run"] for r in slot_runs(root, env) if r["slot"].label == "T-30m")
    earliest = slot.planned - env.timeline.early
    problem = ("none was run" if run is None else
               f"{run['run']} is {run['outcome']}" if run["outcome"] != "passed" else
               f"{run['run']} is not sealed" if not run["sealed"] else
               f"{run['run']} started before {earliest:%Y-%m-%d %H:%M} UTC (another day's GO)"
               if datetime.fromisoformat(run["started"]) < earliest else
               f"{run['run']} changed since it was sealed"
               if verify_run(root / "executed" / env.name / run["run"], root=root) else "")
    if problem:
        raise GateNotApproved(f"T0 of {env.name} needs the T-30m go/no-go of release {env.release} to be GO: {problem}",
                              hint=f"at T-30m: cutover run --env {env.name} --phase t-30m (the guild leads record "
                                   f"GO with cutover approve --gate go-no-go)")
    return {"run": run["run"], "ended": run["ended"]}


def running_now(run: "RunFolder", planned: Sequence[str] = ()) -> str | None:
    """What a run is doing, from its ledger: the step under way (a mutating step's intent), else the
    notebook under way and the last step it finished ("07_smoke.ipynb, after 5.api-health"); between
    two notebooks (or before the first) the one of ``planned`` (the phase's notebooks) that comes
    next ("06_validation.ipynb next, after 05_apply.ipynb"); else None."""
    notebook = step = last = None
    ended: list[str] = []
    for rec in run.read_ledger():
        kind = rec.get("kind")
        if kind == "notebook-start":
            notebook, step, last = rec.get("notebook"), None, None
        elif kind == "notebook-end":
            ended.append(str(rec.get("notebook")))
            notebook = step = last = None
        elif kind == "intent":
            step = rec.get("step_id")
        elif kind == "step":
            step, last = (None if rec.get("step_id") == step else step), rec.get("step_id")
    if step:
        return f"{step} ({notebook})" if notebook else step
    if notebook:
        return f"{notebook}, after {last}" if last else notebook
    following = [nb for nb in planned if nb not in ended]
    if not following:
        return None
    return f"{following[0]} next, after {ended[-1]}" if ended else f"{following[0]} next (the run is starting)"


class SmokeDeadline:
    """During the T0 slot's run (in the runner process, never the kernel): at each of
    ``timeline.alarms`` after T0 (T+30m, T+45m) with no smoke decision in the run's ledger yet, an
    alarm to the bridge naming the step still running.  An alarm already due when the run starts
    is posted at once if it fell due within ``timeline.late`` (an off-schedule run far from T0 gets
    none).  Each post is recorded in the ledger."""

    def __init__(self, env: "Environment", run: "RunFolder", send: Callable[[Any], Any],
                 current: Callable[[], str | None]) -> None:
        self.env, self.run, self.send, self.current = env, run, send, current
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def due(self, now: datetime) -> list[timedelta]:
        return [a for a in self.env.timeline.alarms if now - self.env.t0 < a + self.env.timeline.late]

    def start(self) -> "SmokeDeadline":
        alarms = self.due(utc_now())
        if alarms:
            self._thread = threading.Thread(target=self._loop, args=(alarms,), name="cutover-deadline", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _decided(self) -> bool:
        return any(r.get("kind") == "decision" for r in self.run.read_ledger())

    def _loop(self, alarms: list[timedelta]) -> None:
        for alarm in sorted(alarms):
            wait = (self.env.t0 + alarm - utc_now()).total_seconds()
            if wait > 0 and self._stop.wait(wait):
                return
            if self._stop.is_set() or self._decided():
                return
            self.alarm(alarm)

    def alarm(self, at: timedelta) -> None:
        from ..evidence.bridge_timeline import smoke_deadline_alarm

        minutes = int(at.total_seconds() // 60)
        since = (utc_now() - self.env.t0).total_seconds() / 60
        self.send(smoke_deadline_alarm(self.env, self.run.run_id, minutes, since, self.current(),
                                       int(self.env.slo.smoke_deadline.total_seconds() // 60)))
        self.run.append({"kind": "deadline-alarm", "at": f"T+{minutes}m", "minutes_since_t0": round(since, 1),
                         "running": self.current()})
