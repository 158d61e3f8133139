"""Issue 12: a production cutover needs a passed stage rehearsal of the same release, run without
manual interventions, recently (params ``rehearsal``); the check names why each candidate fails."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cutover_lib.engine.admission import passed_rehearsal
from cutover_lib.errors import GateNotApproved
from cutover_lib.evidence.evidence import RunFolder, iso, utc_now
from cutover_lib.config.params import load_environment

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def prod():
    env = load_environment("prod", REPO / "params")
    assert env.rehearsal.env == "stage" and env.rehearsal.within == timedelta(days=14)
    return env


def rehearsal(executed: Path, *, release="2025.09.2", outcome="passed", ended=None, dry_run=False, seal=True,
              records=(), run_id=None) -> RunFolder:
    run = RunFolder.create(executed, "stage", "rehearsal", run_id=run_id)
    run.append({"kind": "run-start", "env": "stage", "phase": "rehearsal"})
    for rec in records:
        run.append(rec)
    run.append({"kind": "step", "step_id": "3.helm-upgrade", "outcome": "passed"})
    manifest = {"run_id": run.run_id, "env": "stage", "phase": "rehearsal", "release": release, "dry_run": dry_run,
                "outcome": outcome, "ended": iso(ended or utc_now())}
    run.write_manifest(manifest)
    if seal:
        run.seal(manifest)
    return run


def test_no_rehearsal_at_all_stops_the_cutover_with_the_command(tmp_path, prod):
    with pytest.raises(GateNotApproved) as ei:
        passed_rehearsal(prod, tmp_path)
    assert ei.value.exit_code == 3
    assert ("no passed stage rehearsal of release 2025.09.2 within 14d (\"rehearsal must complete without manual "
            "interventions before proceeding to production\"): none under executed/stage/") in ei.value.message
    assert ei.value.hint == "rehearse it: cutover run --env stage --phase rehearsal"


def test_a_passed_untouched_rehearsal_of_this_release_counts_and_is_named(tmp_path, prod):
    good = rehearsal(tmp_path, run_id="20261101T100000Z-stage-rehearsal")
    rehearsal(tmp_path, outcome="failed", run_id="20261102T100000Z-stage-rehearsal")  # a newer failed one
    found = passed_rehearsal(prod, tmp_path)
    assert found["run"] == good.run_id and found["env"] == "stage" and found["release"] == "2025.09.2"
    assert found["ledger_head"] == good.read_manifest()["ledger_head"]


@pytest.mark.parametrize("kind, why", [
    ("failed", "not passed"), ("other-release", "release 2025.09.1"), ("old", "ended too long ago"),
    ("plan", "a plan, not a run"), ("unsealed", "not sealed"), ("resumed", "it was resumed"),
    ("waived", "a gate was waived"), ("confirmed", "a step was confirmed by hand"),
    ("params", "its params were changed mid-run"), ("tampered", "changed since it was sealed")])
def test_a_rehearsal_that_does_not_count_is_named_with_why(tmp_path, prod, kind, why):
    kw: dict = {}
    if kind == "failed":
        kw["outcome"] = "failed"
    elif kind == "other-release":
        kw["release"] = "2025.09.1"
    elif kind == "old":
        kw["ended"] = utc_now() - timedelta(days=15)
    elif kind == "plan":
        kw["dry_run"] = True
    elif kind == "unsealed":
        kw["seal"] = False
    elif kind == "resumed":
        kw["records"] = [{"kind": "run-resume", "env": "stage"}]
    elif kind == "waived":
        kw["records"] = [{"kind": "waiver", "gate": "t0"}]
    elif kind == "confirmed":
        kw["records"] = [{"kind": "step", "step_id": "3.up", "outcome": "passed", "confirmed": True}]
    elif kind == "params":
        kw["records"] = [{"kind": "params-changed"}]
    run = rehearsal(tmp_path, **kw)
    if kind == "tampered":
        (run.path / "artifacts" / "x.log").write_text("added after the seal")
    with pytest.raises(GateNotApproved) as ei:
        passed_rehearsal(prod, tmp_path)
    assert f"{run.run_id}: {why}" in ei.value.message


def test_environments_without_the_requirement_need_no_rehearsal(tmp_path):
    assert passed_rehearsal(load_environment("stage", REPO / "params"), tmp_path) is None
    assert passed_rehearsal(load_environment("local", REPO / "params"), tmp_path) is None
