"""Issue 14, item 1 (first part): a plan's record can never be read as a success -- its outcome
is PLANNED (exit 0), the go/rollback decision is "not evaluated", the T+45m deadline is not said
to be met, and no PASSED or GO appears in any of its HTML pages."""

from __future__ import annotations

import json
import re
import shlex

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
    steps = steps_of(run)
    assert steps["5.decision"]["outcome"] in ("planned", "skipped")
    # what the run would skip here (another deploy mode's cells, an unmet when=) is never "planned"
    for sid in ("4.2.pull", "4.2.up", "4.3.helm-upgrade", "4.1.backup-mongo", "4.1.tool-helm", "4.1.tool-mc"):
        assert steps[sid]["outcome"] == "skipped" and steps[sid]["observed"].startswith("not applicable: "), \
            (sid, steps[sid])
    assert steps["4.2.lab-upgrade"]["outcome"] == "planned" and steps["4.1.tool-stellaops-cli"]["outcome"] == "planned"
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


def test_a_plan_prints_its_commands_its_digest_and_how_to_approve_it(project):
    """Issue 14, item 6: `cutover plan` shows what it would change, the digest an approval pins, and
    the exact approve command per role of the plan gate; that command (a name filled in) works."""
    res = cutover(project, "plan", "--env", "local", "--phase", "cutover")
    assert res.returncode == 0, res.stdout + res.stderr
    run = sorted(project.glob("executed/local/*-local-cutover"))[-1]
    manifest = json.loads((run / "manifest.json").read_text())
    lines = res.stdout.splitlines()
    assert f"plan:     {len(manifest['planned'])} mutating command(s), digest {manifest['plan_digest']}" in lines
    assert "          4.2.lab-upgrade: cutover lab down && STELLAOPS_RELEASE=2025.09.2 cutover lab up" in lines
    assert re.search(r"^    \d\d:\d\d:\d\dZ \[PLANNED\] 5\.api-health ", res.stdout, re.M)  # clock time per step
    approve = [line.removeprefix("approve:  ") for line in lines if line.startswith("approve:  ")]
    assert [a.split("--role ")[1].split()[0] for a in approve] == ["cto", "devops-lead"]
    args = shlex.split(approve[0].replace("--name NAME", "--name 'Avery Chen'"))[1:]  # (without "cutover")
    done = cutover(project, *args, post_smoke=False)
    assert done.returncode == 0 and f"plan {run.name} digest {manifest['plan_digest'][:16]}" in done.stdout, done.stdout
