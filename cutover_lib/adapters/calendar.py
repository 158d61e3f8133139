"""``rb.invite``: a meeting the runbook schedules, written out in its cell (an iCalendar invite).

The cell holds the meeting itself -- summary, attendees, when and how long -- as templates over
params::

    rb.invite("7.retrospective", "Retrospective: Stella Ops {release} launch ({change_ticket})",
              attendees=["devops-guild@example.org", "product-owner@example.org"],
              at="24h", within="48h", length="1h", title="Schedule the retrospective within 48 hours")

The step writes ``<step_id>.ics`` (RFC 5545, one VEVENT; start on the hour ``at`` from now) to the
evidence: the operator sends it from their calendar, or a ticket cell attaches it.  It fails when
the meeting would start later than ``within`` from now or has no attendee.  Writing the invite sends
nothing, so it is not a mutating step.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from ..config.durations import parse_duration, spoken_duration
from ..config.template import render_text
from ..engine.cellmech import CellMechanics
from ..engine.result import Result, _title
from ..errors import CheckFailed, ParamsError
from ..evidence.evidence import utc_now

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.steps import StepContext

__all__ = ["CalendarVerbs"]

_ADDRESS = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+")  # name@domain.tld, nothing around it


class CalendarVerbs(CellMechanics):
    """Mixed into :class:`~cutover_lib.Runbook`: the cell-level verb ``invite``."""

    def invite(self, step_id: str, summary: str, *, attendees: Sequence[str], at: str = "24h",
               within: str = "48h", length: str = "1h", description: str = "", title: str | None = None,
               owner: str | None = None, required: bool = True) -> Result:
        """Write the invite to ``summary`` (a template over params) for ``attendees`` (addresses,
        templates too), starting on the hour ``at`` from now and lasting ``length``, as step
        ``step_id``; expected: it starts within ``within`` of now and invites everyone listed."""
        result = Result(step_id)
        want = {"starts within": within, "attendees": len(attendees)}
        try:
            text = render_text(summary, self.env)
            about = render_text(description, self.env) if description else ""
            people = [render_text(a, self.env) for a in attendees]
            odd = [p for p in people if not _ADDRESS.fullmatch(p)]
            if odd:
                raise ParamsError([f"rb.invite {step_id}: attendee {p!r} is not an e-mail address" for p in odd],
                                  hint="list each attendee as name@domain in the cell")
            try:
                offset, limit, span = (parse_duration(render_text(v, self.env)) for v in (at, within, length))
            except ValueError as exc:
                raise ParamsError([f"rb.invite {step_id}: {exc}"], hint="at=, within= and length= take 24h, 90m, ...")
        except (ParamsError, CheckFailed) as exc:
            return self._failed_step(step_id, title, owner, want, f"invite: {summary}", exc, False, required,
                                     result)
        run_id = self.run.run_id

        def act(ctx: "StepContext") -> str:
            from icalendar import Calendar, Event, vCalAddress

            ctx.check(bool(people), "no attendee: the invite would reach nobody")
            now = utc_now()
            start = (now + offset).replace(minute=0, second=0, microsecond=0)
            start += timedelta(hours=1) if start < now + offset else timedelta(0)
            cal = Calendar()
            cal.add("prodid", "-//stellaops-cutover//invite//EN")
            cal.add("version", "2.0")
            event = Event()
            event.add("uid", f"{uuid.uuid4()}@stellaops-cutover")
            event.add("summary", text)
            event.add("dtstart", start)
            event.add("dtend", start + span)
            event.add("dtstamp", now)
            event.add("description", f"{about}\n\nEvidence: {run_id} ({step_id}).".lstrip())
            for who in people:
                event.add("attendee", vCalAddress(f"MAILTO:{who}"))
            cal.add_component(event)
            ctx.artifact(f"{step_id}.ics", cal.to_ical())
            ctx.data["invite"] = {"start": f"{start:%Y-%m-%dT%H:%M:%SZ}", "attendees": people}
            ctx.check(start - now <= limit, f"starts {spoken_duration(start - now)} from now, later than {within}")
            return f"invite for {start:%Y-%m-%d %H:%M} UTC ({spoken_duration(start - now)} from now) " \
                   f"to {len(people)} attendee(s): {', '.join(people)}"

        result.text = text
        result.record = self.step(step_id, title or _title(step_id), owner=owner or self.owner,
                                  expect=f"an invite starting within {within} for {', '.join(people) or 'nobody'}",
                                  command=f"invite: {text} ({length}, at now + {at}) -> {step_id}.ics", action=act,
                                  required=required)
        return self._restored(result)
