"""Section 6 bookkeeping: assess the failure scope, tell stakeholders, seed the incident notes.
The rollback actions themselves are the deploy adapters' (``deploy.rollback``) and the restores
are ``backup.restore_*``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..engine.steps import Runbook, StepContext

__all__ = ["assess", "notify_stakeholders"]


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


def assess(rb: Runbook) -> dict[str, Any]:
    """6.assess: what failed, and is it systemic (apply or smoke failures) -- logs stay preserved."""
    def act(ctx: StepContext) -> str:
        failed, source = _failed_steps(rb)
        smoke = [r["step_id"] for r in failed if r["step_id"].startswith(("4.2", "4.3", "5."))]
        ctx.data.update({"failed": [r["step_id"] for r in failed], "source_run": source,
                         "systemic": bool(smoke)})
        ctx.artifact("6.failure-scope.json", json.dumps(
            [{k: r.get(k) for k in ("step_id", "title", "expect", "message", "artifacts")} for r in failed], indent=2))
        if not failed:
            return "no failed step recorded: rollback requested by the operator"
        scope = "systemic (release apply or smoke tests failed)" if smoke else "partial"
        return f"{len(failed)} failed step(s) in {source}: {', '.join(ctx.data['failed'])}; scope {scope}; " \
               "logs and artifacts preserved in the evidence"

    return rb.step("6.assess", "Assess failure scope", owner="Cutover lead",
                   expect="failure scope known; logs and artifacts preserved", action=act)


def notify_stakeholders(rb: Runbook) -> dict[str, Any]:
    """6.notify: post the rollback to the bridge and write the incident ticket's root cause notes."""
    def act(ctx: StepContext) -> str:
        from ..adapters.notify import Bridge

        failed, source = _failed_steps(rb)
        lines = [f"# Rollback of {rb.env.release} in {rb.env.name} ({rb.env.incident_ticket or 'incident ticket'})",
                 "", f"Change: {rb.env.change_ticket}. Evidence: {source or rb.run.run_id}.", "",
                 "## What failed", ""]
        lines += [f"- `{r['step_id']}` {r['title']}: expected {r.get('expect')}; {r.get('message')}" for r in failed]
        lines += ["", "## Root cause notes", "", "- (to be completed by the cutover lead)", ""]
        ctx.artifact("6.incident-notes.md", "\n".join(lines))
        text = (f":rewind: Rolled back {rb.env.name} to {rb.env.previous_release} "
                f"({len(failed)} failed step(s): {', '.join(r['step_id'] for r in failed) or 'operator request'}). "
                f"Incident {rb.env.incident_ticket or '-'}; root cause notes to follow.")
        res = Bridge(rb.env.bridge).post(text, kind="rollback")
        ctx.data["bridge"] = {"ok": res.ok, "attempts": res.attempts}
        if not res.ok:
            ctx.log(f"bridge post failed ({res.error}); tell stakeholders by phone / pager")
        return f"incident notes written; bridge notified: {res.ok}"

    return rb.step("6.notify", "Notify stakeholders; root cause notes for the incident ticket", owner="Cutover lead",
                   expect="stakeholders told of the rollback; incident notes started", mutating=True,
                   command=f"POST #{rb.env.bridge.channel} rollback notice; write 6.incident-notes.md", action=act)
