"""What the change and incident tickets get (Section 8's "Record Location"), as Jira wiki markup.

The cells send it with ``rb.http`` to the ticket system's REST API (``ticket.*`` in params)::

    rb.http("5.ticket-results", "POST {ticket.url}/rest/api/2/issue/{change_ticket}/comment",
            auth="{ticket.token}", json={"body": ticket.results(rb, "Smoke tests", SMOKE)}, ...)

Everything here is read from the run's ledger (step outcomes with their UTC times) and the
approvals store (who approved which gate, when); nothing is invented and nothing secret is read
(the ledger is masked).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.steps import Runbook

__all__ = ["approvals", "artifacts_of", "incident", "report_of", "results"]


def _cell(text: Any) -> str:
    return str(text).replace("|", "/").replace("\n", " ")[:300] or " "


def _steps(rb: "Runbook") -> dict[str, dict[str, Any]]:
    """Each step's latest record in this run (a resumed attempt's replaces the earlier)."""
    from ..evidence.report import latest_steps

    return latest_steps(rb.run.read_ledger())


def results(rb: "Runbook", heading: str, steps: list[str] | str) -> str:
    """A table of these steps (ids, or a section's prefix such as ``"5."``: every step of it this run
    has recorded so far): outcome, start and end (UTC), what was observed (or what failed)."""
    seen = _steps(rb)
    step_ids = [s for s in seen if s.startswith(steps)] if isinstance(steps, str) else steps
    rows = ["||Step||Outcome||Started (UTC)||Ended (UTC)||Observed||"]
    for sid in step_ids:
        r = seen.get(sid)
        if r is None:
            rows.append(f"|{sid}|not run| | | |")
            continue
        rows.append(f"|{sid}|{r['outcome'].upper()}|{r.get('started', '')}|{r.get('ended', '')}|"
                    f"{_cell(r.get('message') or r.get('observed') or '')}|")
    return (f"h3. {heading}: {rb.env.name}, release {rb.env.release}\n"
            f"Run {rb.run.run_id} (evidence: executed/{rb.env.name}/{rb.run.run_id}, `cutover verify` checks it)\n"
            + "\n".join(rows))


def approvals(rb: "Runbook", gate: str) -> str:
    """Who approved ``gate`` (role, name, UTC time, the change and run named), from the approvals store."""
    from ..engine.approvals import ApprovalStore

    g = rb.env.approvals.gates[gate]
    rows = ["||Role||Name||Decision||At (UTC)||Run||Comment||"]
    rows += [f"|{r['role']}|{_cell(r['name'])}|{r['decision']}|{r.get('at', '')}|{r.get('run') or '-'}|"
             f"{_cell(r.get('comment') or '')}|" for r in ApprovalStore(rb.root, rb.env).decisions(gate)]
    return (f"h3. Approval: {g.title}\nRequired: {' + '.join(g.roles)} ({rb.env.name}, change {rb.env.change_ticket})\n"
            + "\n".join(rows))


def incident(rb: "Runbook") -> dict[str, str]:
    """The incident ticket of a rollback: a summary and a description with the failed steps, the
    decision and a root-cause section for the people who investigate ("capture root cause notes")."""
    records = rb.run.read_ledger()
    failed = [r for r in records if r.get("kind") == "step" and r.get("outcome") == "failed"]
    decision: dict[str, Any] = next((r for r in reversed(records) if r.get("kind") == "decision"), {})
    lines = [f"Rollback of the Stella Ops {rb.env.release} cutover on {rb.env.name} (change {rb.env.change_ticket}).",
             f"Run {rb.run.run_id} (evidence: executed/{rb.env.name}/{rb.run.run_id}).",
             f"Decision: {_cell(decision.get('reason') or decision.get('decision') or 'rollback')}", "",
             "h3. Failed steps", "||Step||Ended (UTC)||Expected / observed||"]
    lines += [f"|{r['step_id']}|{r.get('ended', '')}|{_cell(r.get('message', ''))}|" for r in failed] \
        or ["|none recorded| | |"]
    lines += ["", "h3. Root cause notes",
              "(to be filled in by the investigating guild: trigger, scope, fix, follow-ups)"]
    return {"summary": f"Rollback: Stella Ops {rb.env.release} on {rb.env.name} ({rb.env.change_ticket})",
            "description": "\n".join(lines)}


def artifacts_of(rb: "Runbook", *, step: str, pattern: str = "*") -> list[str]:
    """The files ``step`` kept in this run (matching ``pattern``), to attach to a ticket."""
    kept = _steps(rb).get(step, {}).get("artifacts", [])
    return [str(rb.run.path / a) for a in kept if fnmatch.fnmatch(Path(a).name, pattern)]


def _planned(run: Path) -> bool:
    """A plan (dry run) has the phase's name too, but nothing of the change in it; unreadable: skip."""
    import json

    try:
        return bool(json.loads((run / "manifest.json").read_text()).get("dry_run", True))
    except (OSError, ValueError):
        return True


def report_of(rb: "Runbook", *, phase: str) -> list[tuple[str, str]]:
    """The HTML record of this environment's latest ``phase`` run -- a real one, not a plan --
    (``cutover``: the cutover's final report), named ``<run id>.html``; none if it has not run here."""
    runs = sorted(p for p in (rb.root / "executed" / rb.env.name).glob(f"*-{phase}")
                  if (p / "html" / "index.html").is_file() and not _planned(p))
    return [(f"{runs[-1].name}.html", str(runs[-1] / "html" / "index.html"))] if runs else []
