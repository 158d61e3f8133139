"""Section 6 bookkeeping: assess the failure scope and seed the incident's root cause notes.
The rollback actions are cells (``rb.sh`` for compose and helm, a deploy plug-in's rollback), the
restores are ``rb.sh`` cells too, and stakeholders are told by an ``rb.bridge`` cell whose message
takes :func:`scope`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..engine.steps import Runbook, StepContext

__all__ = ["assess", "scope"]


def _failed_steps(rb: Runbook) -> tuple[list[dict[str, Any]], str]:
    """Failed steps that led here: this run's, or the latest cutover run's of this environment."""
    records = rb.run.read_ledger()
    failed = [r for r in records if r.get("kind") == "step" and r["outcome"] == "failed"]
    if failed:
        return failed, rb.run.run_id
    runs = sorted((rb.root / "executed" / rb.env.name).glob("*-cutover*/ledger.jsonl"), reverse=True)
    for ledger in runs:
        recs = [json.loads(line) for line in Path(ledger).read_text().splitlines() if line.strip()]
        failed = [r for r in recs if r.get("kind") == "step" and r["outcome"] == "failed"]
        if failed:
            return failed, ledger.parent.name
    return [], ""


def scope(rb: Runbook) -> dict[str, str]:
    """What a rollback message says of its cause: ``failed`` ("2 failed steps: 5.api-health,
    5.signing" or "an operator's request") and ``source`` (the run they failed in)."""
    failed, source = _failed_steps(rb)
    ids = [r["step_id"] for r in failed]
    return {"failed": f"{len(ids)} failed step(s): {', '.join(ids)}" if ids else "an operator's request",
            "source": source or rb.run.run_id}


def assess(rb: Runbook) -> dict[str, Any]:
    """6.assess: what failed, and is it systemic (apply or smoke failures) -- logs stay preserved;
    the incident's root cause notes are started from it (``6.incident-notes.md``)."""
    def act(ctx: StepContext) -> str:
        failed, source = _failed_steps(rb)
        smoke = [r["step_id"] for r in failed if r["step_id"].startswith(("4.2", "4.3", "5."))]
        ctx.data.update({"failed": [r["step_id"] for r in failed], "source_run": source,
                         "systemic": bool(smoke)})
        ctx.artifact("6.failure-scope.json", json.dumps(
            [{k: r.get(k) for k in ("step_id", "title", "expect", "message", "artifacts")} for r in failed], indent=2))
        notes = [f"# Rollback of {rb.env.release} in {rb.env.name} ({rb.env.incident_ticket or 'incident ticket'})",
                 "", f"Change: {rb.env.change_ticket}. Evidence: {source or rb.run.run_id}.", "", "## What failed", ""]
        notes += [f"- `{r['step_id']}` {r['title']}: expected {r.get('expect')}; {r.get('message')}" for r in failed]
        notes += ["", "## Root cause notes", "", "- (to be completed by the cutover lead)", ""]
        ctx.artifact("6.incident-notes.md", "\n".join(notes))
        if not failed:
            return "no failed step recorded: rollback requested by the operator; incident notes started"
        kind = "systemic (release apply or smoke tests failed)" if smoke else "partial"
        return f"{len(failed)} failed step(s) in {source}: {', '.join(ctx.data['failed'])}; scope {kind}; " \
               "logs and artifacts preserved in the evidence; incident notes started"

    return rb.step("6.assess", "Assess failure scope; start the root cause notes", owner="Cutover lead",
                   expect="failure scope known; logs and artifacts preserved; incident notes started", action=act)
