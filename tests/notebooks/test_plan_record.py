"""Issue 14, item 1 (first part): a plan's record can never be read as a success -- its outcome
is PLANNED (exit 0), the go/rollback decision is "not evaluated", the T+45m deadline is not said
to be met, and no PASSED or GO appears in any of its HTML pages."""

from __future__ import annotations

import json
import re

import pytest

from nb_helpers import cutover, steps_of

pytestmark = pytest.mark.notebooks


def test_a_plan_reads_as_planned_everywhere(project):
    res = cutover(project, "plan", "--env", "local", "--phase", "cutover")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "outcome: planned" in res.stdout and "outcome: passed" not in res.stdout
    run = next(project.glob("executed/local/*-local-cutover"))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["outcome"] == "planned" and manifest["dry_run"] is True
    decisions = [json.loads(line) for line in (run / "ledger.jsonl").read_text().splitlines()
                 if json.loads(line).get("kind") == "decision"]
    assert [d["decision"] for d in decisions] == ["not evaluated"]
    assert steps_of(run)["5.decision"]["outcome"] in ("planned", "skipped")
    pages = {p.name: p.read_text() for p in (run / "html").glob("*.html")}
    assert "index.html" in pages and len(pages) > 1
    for name, text in pages.items():
        assert ">PASSED<" not in text, name
        assert not re.search(r"\bGO(:| —)", text), name  # (the prose may say the decision announces GO)
        assert "within the deadline" not in text, name
    assert '<span class="o planned">PLANNED</span> not evaluated' in pages["index.html"]
    assert "planned (dry run): not evaluated" in pages["index.html"]
    # the plan still verifies, and a plan is never counted as a rehearsal or resumed
    assert cutover(project, "verify", str(run)).returncode == 0
