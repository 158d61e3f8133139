"""Issue 12: a post-smoke approval approves one run's smoke results -- it names the run, and counts
only when recorded after that run's smoke decision passed (``approvals.gates.post-smoke.after``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cutover_lib.engine.approvals import ApprovalStore
from cutover_lib.evidence.evidence import RunFolder, iso, utc_now
from cutover_lib.config.params import load_environment
from cutover_lib.cli.app import app

RUN = "20261129T140000Z-stage-cutover"


def cli(*args: str):
    res = CliRunner().invoke(app, list(args))
    assert "Traceback" not in res.output
    return res


def cutover_run(project: Path, run_id: str = RUN, decision: str | None = "passed") -> RunFolder:
    run = RunFolder.create(project / "executed", "stage", "cutover", run_id=run_id)
    run.append({"kind": "step", "step_id": "5.api-health", "outcome": "passed", "ended": iso(utc_now())})
    if decision:
        run.append({"kind": "step", "step_id": "5.decision", "outcome": decision, "ended": iso(utc_now()),
                    "message": "" if decision == "passed" else "5.runtime-event failed"})
    return run


def approve(project: Path, *extra: str, role: str = "devops-lead", name: str = "Sam Okafor"):
    return cli("approve", "--env", "stage", "--gate", "post-smoke", "--role", role, "--name", name,
               "--record", "CHG-1", "--root", str(project), *extra)


def test_an_approval_names_the_run_whose_smoke_results_it_approves(project: Path):
    res = approve(project)
    assert res.exit_code == 2
    assert "gate post-smoke (Post-smoke success) approves one run's results (5.decision): name the run" in res.output
    assert "--run RUN_ID" in res.output
    cutover_run(project)
    ok = approve(project, "--run", RUN)
    assert ok.exit_code == 0, ok.output
    assert f"; run {RUN} (5.decision passed at " in ok.output
    rec = ApprovalStore(project, load_environment("stage", project / "params")).records()[-1]
    assert rec["run"] == RUN and rec["after"] == "5.decision" and rec["at"] >= rec["after_at"]


@pytest.mark.parametrize("setup,run_id,why", [
    (lambda p: cutover_run(p, decision=None), RUN, f"run {RUN} has no 5.decision result yet"),
    (lambda p: cutover_run(p, decision="failed"), RUN, f"run {RUN}: 5.decision failed, so there is nothing to approve"),
    (lambda p: None, "20261129T140000Z-stage-nope", "no run 20261129T140000Z-stage-nope under executed/stage/"),
    (lambda p: None, "../../etc", "run id '../../etc' is not valid"),
])
def test_nothing_to_approve_is_refused_naming_why(project: Path, setup, run_id: str, why: str):
    setup(project)
    res = approve(project, "--run", run_id)
    assert res.exit_code == 2 and why in res.output, res.output


def test_run_is_refused_for_a_gate_not_approved_per_run(project: Path):
    cutover_run(project)
    res = cli("approve", "--env", "stage", "--gate", "plan", "--role", "cto", "--name", "Ada", "--record", "CHG-1",
              "--run", RUN, "--root", str(project))
    assert res.exit_code == 2 and "gate plan (Production deployment plan) is not approved per run" in res.output


def test_only_this_runs_approvals_after_its_decision_count(project: Path):
    env = load_environment("stage", project / "params")
    store = ApprovalStore(project, env)
    first = cutover_run(project)
    other = cutover_run(project, "20261129T150000Z-stage-cutover")
    assert approve(project, "--run", other.run_id).exit_code == 0  # another run's smoke results
    decided = [r for r in first.read_ledger() if r.get("step_id") == "5.decision"][-1]["ended"]
    assert store.status("post-smoke", RUN, decided).missing == ["devops-lead", "product-owner"]
    assert approve(project, "--run", RUN).exit_code == 0
    assert approve(project, "--run", RUN, role="product-owner", name="Jordan Lee").exit_code == 0
    assert store.status("post-smoke", RUN, decided).satisfied
    # the smoke tests ran again in this run (a resume) and passed later: approve those results anew
    again = iso(utc_now())
    first.append({"kind": "step", "step_id": "5.decision", "outcome": "passed", "ended": again})
    assert store.status("post-smoke", RUN, again).missing == ["devops-lead", "product-owner"]
    # a run without a passed decision has nothing approved
    assert store.status("post-smoke", RUN, None).missing == ["devops-lead", "product-owner"]
