"""Section 2: the T-24h..T+4h schedule computed from T0, and planned vs actual.

Actual times come from the ledger: each activity is tied to the runbook sections whose
steps carry it out, and its actual time is when the first of those steps started (for
T+45m: when the last smoke test ended).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = ["ACTIVITIES", "Activity", "actual_times", "schedule"]


@dataclass(frozen=True)
class Activity:
    label: str
    offset: timedelta
    activity: str
    owner: str
    sections: tuple[str, ...]


ACTIVITIES: tuple[Activity, ...] = (
    Activity("T-24h", timedelta(hours=-24), "Change ticket approved, prod secrets verified, offline kit build "
             "status checked (DEVOPS-OFFLINE-18-005).", "DevOps lead", ("2.t-24h",)),
    Activity("T-12h", timedelta(hours=-12), "Run deploy/tools/validate-profiles.sh; capture logs in ticket.",
             "DevOps engineer", ("2.t-12h",)),
    Activity("T-6h", timedelta(hours=-6), "Freeze non-launch deployments; notify guild leads.", "Product owner",
             ("2.t-6h",)),
    Activity("T-2h", timedelta(hours=-2), "Execute rehearsal in staging (Section 3) using values-stage.yaml to "
             "verify scripts.", "DevOps + module reps", ("3",)),
    Activity("T-30m", timedelta(minutes=-30), "Final go/no-go with guild leads; confirm monitoring dashboards "
             "green.", "Cutover lead", ("2.t-30m",)),
    Activity("T0", timedelta(0), "Execute production cutover steps (Section 4).", "Cutover team", ("4",)),
    Activity("T+45m", timedelta(minutes=45), "Smoke tests complete (Section 5); announce success or trigger "
             "rollback.", "Cutover lead", ("5",)),
    Activity("T+4h", timedelta(hours=4), "Post-cutover metrics review, notify stakeholders, close ticket.",
             "DevOps + product owner", ("7",)),
)


def schedule(t0: datetime) -> list[dict[str, Any]]:
    """Every activity with its planned UTC time."""
    return [{"label": a.label, "planned": t0 + a.offset, "activity": a.activity, "owner": a.owner}
            for a in ACTIVITIES]


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _matches(step_id: str, prefixes: tuple[str, ...]) -> bool:
    return any(step_id == p or step_id.startswith(p + ".") for p in prefixes)


def actual_times(steps: list[dict[str, Any]], smoke_deadline: timedelta, planned: bool = False,
                 t0: datetime | None = None, slot: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Label -> {"actual": datetime, "breach": bool, "note": str} for the activities this run did
    (``planned``: a plan, whose times say when it was planned, and no deadline is met or missed).

    The T+45m deadline counts from ``t0`` (params), not from the first step; a run whose ``slot``
    record says it started off its hour (a rehearsal far from T0) is not judged against it."""
    out: dict[str, dict[str, Any]] = {}
    for a in ACTIVITIES:
        mine = [s for s in steps if _matches(s["step_id"], a.sections)]
        if not mine:
            continue
        if a.label == "T+45m":
            out[a.label] = {"actual": max(_parse(s["ended"]) for s in mine), "breach": False, "note": ""}
        else:
            out[a.label] = {"actual": min(_parse(s["started"]) for s in mine), "breach": False, "note": ""}
    if slot and slot.get("slot") in out:
        mine = out[slot["slot"]]
        mine["note"] = slot.get("note", "") + (" (--at-any-time)" if slot.get("at_any_time") else "")
    if planned:
        for item in out.values():
            item["note"] = "planned (dry run): not evaluated"
        return out
    if "T+45m" in out and t0 is not None:
        took = out["T+45m"]["actual"] - t0
        minutes = int(smoke_deadline.total_seconds() // 60)
        if slot is not None and not slot.get("on_time", True):
            out["T+45m"]["note"] = f"off-schedule run: the T+{minutes}m deadline is not evaluated"
        else:
            late = took > smoke_deadline
            out["T+45m"]["breach"] = late
            out["T+45m"]["note"] = (f"smoke done {took.total_seconds() / 60:.1f} min after T0"
                                    + (f": BREACH of the T+{minutes}m deadline" if late else ", within the deadline"))
    return out
