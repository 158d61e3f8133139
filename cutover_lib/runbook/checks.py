"""The go / rollback decision after the smoke tests (Sections 5 and 8).

The smoke tests themselves are cells of ``notebooks/07_smoke.ipynb`` (``rb.http`` / ``rb.sh``);
this reads their outcomes from the run's ledger and records the decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..engine.steps import NotApplicable, Runbook, StepContext
from ..evidence.evidence import utc_now

__all__ = ["decision"]


# ----------------------------------------------------------------------------- decision

def decision(rb: Runbook, step_id: str, *, smoke: Sequence[str]) -> dict[str, Any]:
    """After Section 5: *go* when every smoke test of ``smoke`` passed (its latest record in this
    run), otherwise *rollback* (Section 6).  A smoke test that never ran counts as failed."""
    latest: dict[str, str] = {}
    for rec in rb.run.read_ledger():
        if rec.get("kind") == "step" and rec.get("step_id") in smoke:
            latest[rec["step_id"]] = rec["outcome"]
    if rb.dry_run:  # a plan: nothing was deployed and no smoke test ran, so there is nothing to decide
        rb.record("decision", decision="not evaluated", failed=[],
                  reason="a plan (dry run): the smoke tests were planned, not run")

        def planned(ctx: StepContext) -> str:
            raise NotApplicable("a plan (dry run): the decision is not evaluated")

        return rb.step(step_id, "Go / rollback decision", owner="Cutover lead",
                       expect="every smoke test passed (announce success) — otherwise roll back", action=planned)
    failed = [s for s in smoke if latest.get(s) not in ("passed", "skipped", "waived")]
    verdict = "rollback" if failed else "go"
    reason = ("smoke tests failed: " + ", ".join(failed)) if failed else f"all {len(smoke)} smoke tests passed"
    since = (utc_now() - rb.env.t0).total_seconds() / 60  # from T0 in params (Section 2), not the first step
    limit = rb.env.slo.smoke_deadline.total_seconds() / 60
    on_time = since <= limit  # (on the exact time: 45.04 minutes is late, though it rounds to 45.0)
    rb.record("decision", decision=verdict, reason=reason, failed=failed, minutes_since_t0=round(since, 1),
              deadline_minutes=round(limit), on_time=on_time)
    when = f"T+{since:.0f}m" if abs(since) < 24 * 60 else f"{since / 1440:+.0f} days from T0"

    def act(ctx: StepContext) -> str:
        if failed:  # the card points to what comes next: the rollback's record and this run's folder
            ctx.data["next"] = [["Rollback (Section 6): 08_rollback", "08_rollback.html"],
                                [f"Run folder {rb.run.run_id}", "../"]]
        ctx.check(not failed, f"{reason} ({when}) -> trigger rollback (Section 6): notebooks/08_rollback.ipynb runs "
                              f"next in this run ({rb.run.run_id})")
        return f"GO: {reason}; decided at {when} ({'deadline' if on_time else 'past the deadline'} T+{limit:.0f}m)"

    return rb.step(step_id, "Go / rollback decision", owner="Cutover lead",
                   expect="every smoke test passed (announce success) — otherwise roll back", action=act)

