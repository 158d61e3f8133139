"""Section 3 (rehearsal) bookkeeping, Section 9 (the rehearsal log across runs) and Section 7's
docs follow-up (the gaps those runs found, for docs/ops/launch-readiness.md).

The rehearsal must complete without manual interventions.  An *intervention* is anything an
operator had to do by hand inside the run: a resumed attempt, a ``--confirm`` of an interrupted
step, a waived gate, a broken lock.  Deviations are steps that did not pass.
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ..engine.steps import Runbook, StepContext

__all__ = ["docs_follow_up", "rehearsal_log", "rehearsal_log_rows", "wall_time_and_deviations"]

_INTERVENTIONS = {"run-resume": "resumed after a failure", "waiver": "gate waived", "lock-broken": "lock broken",
                  "intervention": "manual intervention"}


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def assess(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Wall time, deviations and interventions of one run's ledger."""
    steps = [r for r in records if r.get("kind") == "step"]
    starts = [r for r in records if r.get("kind") in ("run-start", "run-resume")]
    begin = _parse(starts[0]["ts"]) if starts else (_parse(steps[0]["started"]) if steps else None)
    end = max((_parse(r["ts"]) for r in records), default=None)
    wall = (end - begin).total_seconds() if begin and end else 0.0
    deviations = [f"{s['step_id']}: {s['outcome']} — {s.get('message') or s.get('observed', '')}"
                  for s in steps if s["outcome"] in ("failed", "waived")
                  and not s["step_id"].endswith(".wall-time")]
    interventions = [f"{_INTERVENTIONS[r['kind']]} ({r.get('gate') or r.get('step_id') or r.get('ts')})"
                     for r in records if r.get("kind") in _INTERVENTIONS]
    confirmed = [r for r in records if r.get("kind") == "step" and r.get("confirmed")]
    interventions += [f"interrupted step re-run with --confirm ({r['step_id']})" for r in confirmed]
    return {"wall_s": wall, "deviations": deviations, "interventions": interventions, "steps": len(steps)}


def wall_time_and_deviations(rb: Runbook) -> dict[str, Any]:
    """3.wall-time: total wall time and deviations into the rehearsal log; zero interventions required."""
    def act(ctx: StepContext) -> str:
        a = assess(rb.run.read_ledger())
        ctx.data.update(a)
        ctx.artifact("3.rehearsal-log-entry.json", json.dumps(a, indent=2))
        ctx.check(not a["interventions"], f"{len(a['interventions'])} manual intervention(s): "
                                          + "; ".join(a["interventions"]))
        ctx.check(not a["deviations"], f"{len(a['deviations'])} deviation(s): " + "; ".join(a["deviations"]))
        return f"wall time {a['wall_s']:.1f}s over {a['steps']} steps; 0 deviations; 0 manual interventions"

    return rb.step("3.wall-time", "Total wall time, deviations and manual interventions", owner="DevOps engineer",
                   expect="rehearsal completes without manual interventions or deviations", action=act)


def rehearsal_log_rows(executed: Path) -> list[dict[str, Any]]:
    """One row per sealed run under ``executed/``: date, what was exercised, outcome, follow-up, wall time."""
    rows = []
    for manifest_path in sorted(executed.glob("*/*/manifest.json")):
        try:
            m = json.loads(manifest_path.read_text())
            records = [json.loads(line) for line in (manifest_path.parent / "ledger.jsonl").read_text().splitlines()
                       if line.strip()]
        except (OSError, ValueError):
            continue
        steps = [r for r in records if r.get("kind") == "step"]
        sections = sorted({s["section"] for s in steps}, key=lambda x: [int(p) for p in x.split(".") if p.isdigit()])
        a = assess(records)
        follow = [d for d in a["deviations"] if ": failed" in d][:3]
        rows.append({
            "date": str(m.get("started", ""))[:16].replace("T", " "),
            "run_id": m.get("run_id", manifest_path.parent.name),
            "exercised": f"{m.get('phase')} on {m.get('env')}{' (plan)' if m.get('dry_run') else ''}: "
                         f"{len(steps)} steps in sections {', '.join(sections)}",
            "outcome": m.get("outcome", "running"),
            "follow_up": "; ".join(follow) or ("none" if m.get("outcome") == "passed" else m.get("reason", "")),
            "wall_s": round(a["wall_s"], 1),
            "interventions": len(a["interventions"]),
        })
    return rows


def rehearsal_log_html(rows: list[dict[str, Any]]) -> str:
    e = html.escape
    body = "".join(
        f"<tr><td>{e(r['date'])}</td><td>{e(r['exercised'])}<br><code>{e(r['run_id'])}</code></td>"
        f"<td>{e(r['outcome'])}</td><td>{e(r['follow_up'])}</td><td>{r['wall_s']:.1f}s</td>"
        f"<td>{r['interventions']}</td></tr>" for r in rows)
    return ("<table><tr><th>Date (UTC)</th><th>What we exercised</th><th>Outcome</th><th>Follow-up</th>"
            f"<th>Wall time</th><th>Interventions</th></tr>{body}</table>")


def rehearsal_log(rb: Runbook) -> dict[str, Any]:
    """9.log: the rehearsal log generated from every run under executed/."""
    rows = rehearsal_log_rows(rb.root / "executed")
    rb.show_html(rehearsal_log_html(rows))

    def act(ctx: StepContext) -> str:
        import csv
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["date", "run_id", "exercised", "outcome", "follow_up", "wall_s",
                                                 "interventions"])
        writer.writeheader()
        writer.writerows(rows)
        ctx.artifact("9.rehearsal-log.csv", buf.getvalue())
        if not rows:
            return "0 runs logged: no sealed run under executed/ yet"
        return f"{len(rows)} runs logged; {sum(r['outcome'] == 'passed' for r in rows)} passed"

    return rb.step("9.log", "Rehearsal log from every run", owner="DevOps Guild",
                   expect="every run under executed/ logged with date, what was exercised, outcome, follow-up, "
                          "wall time", action=act)


def docs_follow_up(rb: Runbook) -> dict[str, Any]:
    """7.docs: gaps and follow-ups for docs/ops/launch-readiness.md, from every run's deviations."""
    def act(ctx: StepContext) -> str:
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
