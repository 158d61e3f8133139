"""Section 7: the retrospective invite and the docs follow-up (monitoring is ``rb.promql``)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from ..engine.steps import Runbook, StepContext
from ..evidence.evidence import utc_now

__all__ = ["docs_follow_up", "retrospective_invite"]


def retrospective_invite(rb: Runbook) -> dict[str, Any]:
    """7.retrospective: an .ics invite within 48 h for DevOps, module guilds and the product owner."""
    def act(ctx: StepContext) -> str:
        from icalendar import Calendar, Event, vCalAddress

        start = (utc_now() + timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
        cal = Calendar()
        cal.add("prodid", "-//stellaops-cutover//retrospective//EN")
        cal.add("version", "2.0")
        ev = Event()
        ev.add("uid", f"{uuid.uuid4()}@stellaops-cutover")
        ev.add("summary", f"Retrospective: Stella Ops {rb.env.release} launch ({rb.env.change_ticket})")
        ev.add("dtstart", start)
        ev.add("dtend", start + timedelta(hours=1))
        ev.add("dtstamp", utc_now())
        ev.add("description", f"Launch cutover retrospective within 48 hours (runbook Section 7). Evidence: "
                              f"{rb.run.run_id}. Attendees: DevOps, module guilds, product owner.")
        for who in ("devops-guild", "authority-guild", "scanner-guild", "runtime-guild", "telemetry-guild",
                    "product-owner"):
            ev.add("attendee", vCalAddress(f"MAILTO:{who}@stella-ops.internal"))
        cal.add_component(ev)
        data = cal.to_ical()
        ctx.artifact("7.retrospective.ics", data)
        hours = (start - utc_now()).total_seconds() / 3600
        ctx.check(hours <= 48, f"scheduled {hours:.0f} h out")
        return f"invite for {start:%Y-%m-%d %H:%M} UTC ({hours:.0f} h from now) with 6 attendee groups"

    return rb.step("7.retrospective", "Schedule the retrospective within 48 hours", owner="Cutover lead",
                   expect="an .ics invite within 48 h including DevOps, module guilds and product owner", action=act)


def docs_follow_up(rb: Runbook) -> dict[str, Any]:
    """7.docs: gaps and follow-ups for docs/ops/launch-readiness.md, from every run's deviations."""
    def act(ctx: StepContext) -> str:
        from .rehearsal import rehearsal_log_rows

        rows = rehearsal_log_rows(rb.root / "executed")
        gaps = [r for r in rows if r["outcome"] != "passed"]
        lines = ["# Follow-ups for docs/ops/launch-readiness.md", "",
                 f"Release {rb.env.release}, change {rb.env.change_ticket}. Update the runbook with actual timings "
                 "and lessons learned (Section 8).", ""]
        lines += [f"- {r['date']} {r['exercised']}: {r['outcome']} — {r['follow_up']}" for r in gaps] or \
                 ["- no new gaps found in the recorded runs"]
        ctx.artifact("7.launch-readiness-followups.md", "\n".join(lines) + "\n")
        return f"{len(gaps)} run(s) with gaps listed for docs/ops/launch-readiness.md"

    return rb.step("7.docs", "Docs follow-up reminder (docs/ops/launch-readiness.md)", owner="DevOps Guild",
                   expect="new gaps and follow-ups listed for the readiness doc", action=act, required=False)
