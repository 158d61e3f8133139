"""Section 8: approvals per change, gates, waivers, one person one role, the widget callbacks."""

from pathlib import Path

import pytest

from cutover_lib.engine.approvals import ApprovalStore, approval_form, gate_status, require
from cutover_lib.errors import GateNotApproved, UsageError
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.config.params import load_environment
from nb_helpers import variant
from cutover_lib.engine.steps import Runbook

REPO = Path(__file__).resolve().parents[2]


def make_rb(tmp_path, env="prod", **kw):
    e = variant(env, overrides=kw.pop("overrides", None))
    run = RunFolder.create(tmp_path / "executed", env, "t")
    return Runbook(e, run, root=tmp_path, notebook="nb.ipynb", **kw)


def test_prod_gate_without_approvals_stops_with_the_command(tmp_path):
    rb = make_rb(tmp_path)
    with pytest.raises(GateNotApproved) as ei:
        require(rb, "plan")
    assert "gate plan (Production deployment plan) lacks approval from cto, devops-lead" in ei.value.message
    assert "cutover approve --env prod --gate plan --role cto --name 'NAME' --record CHG-2025-1027-LAUNCH" in ei.value.hint
    last = rb.run.read_ledger()[-1]
    assert last["step_id"] == "8.gate-plan" and last["outcome"] == "failed"


def test_approved_gate_passes_and_copies_the_approvals_into_the_run(tmp_path):
    rb = make_rb(tmp_path)
    store = ApprovalStore(tmp_path, rb.env)
    store.record(gate="plan", role="cto", name="Ada Lovelace", record="CHG-2025-1027-LAUNCH", comment="go")
    store.record(gate="plan", role="devops-lead", name="Grace Hopper", record="CHG-2025-1027-LAUNCH")
    rec = require(rb, "plan")
    assert rec["outcome"] == "passed" and "Ada Lovelace (cto" in rec["observed"]
    copied = [r for r in rb.run.read_ledger() if r["kind"] == "approval"]
    assert {r["name"] for r in copied} == {"Ada Lovelace", "Grace Hopper"}
    assert all(r["env"] == "prod" and r["change"] == "CHG-2025-1027-LAUNCH" and r["at"].endswith("Z") for r in copied)


def test_plan_approval_given_before_applies_to_a_later_run(tmp_path):
    rb1 = make_rb(tmp_path)
    store = ApprovalStore(tmp_path, rb1.env)
    store.record(gate="plan", role="cto", name="A", record="CHG-1")
    store.record(gate="plan", role="devops-lead", name="B", record="CHG-1")
    rb2 = make_rb(tmp_path)  # another run, same change
    assert require(rb2, "plan")["outcome"] == "passed"


def test_one_person_cannot_fill_two_roles(tmp_path):
    env = load_environment("prod", REPO / "params")
    store = ApprovalStore(tmp_path, env)
    store.record(gate="plan", role="cto", name="Ada Lovelace", record="CHG-1")
    with pytest.raises(UsageError, match="one person cannot fill two roles"):
        store.record(gate="plan", role="devops-lead", name="ada lovelace", record="CHG-1")


def test_approval_for_another_environment_does_not_count(tmp_path):
    stage = load_environment("stage", REPO / "params")
    ApprovalStore(tmp_path, stage).record(gate="plan", role="cto", name="A", record="CHG-1")
    ApprovalStore(tmp_path, stage).record(gate="plan", role="devops-lead", name="B", record="CHG-1")
    rb = make_rb(tmp_path, "prod")
    assert gate_status(rb, "plan").missing == ["cto", "devops-lead"]


def test_unknown_gate_role_and_disallowed_approver(tmp_path):
    env = variant("prod", 'approvals.approvers={"cto": ["Ada Lovelace"]}')
    store = ApprovalStore(tmp_path, env)
    with pytest.raises(UsageError, match="unknown gate 'launch'"):
        store.record(gate="launch", role="cto", name="A", record="CHG-1")
    with pytest.raises(UsageError, match="role 'product-owner' does not approve gate plan"):
        store.record(gate="plan", role="product-owner", name="A", record="CHG-1")
    with pytest.raises(UsageError, match="Mallory is not an approver for role cto in prod"):
        store.record(gate="plan", role="cto", name="Mallory", record="CHG-1")


def test_rejection_blocks(tmp_path):
    rb = make_rb(tmp_path)
    store = ApprovalStore(tmp_path, rb.env)
    store.record(gate="t0", role="devops-lead", name="A", record="#launch-bridge")
    store.record(gate="t0", role="module-reps", name="B", record="#launch-bridge", decision="reject",
                 comment="scanner guild not ready")
    with pytest.raises(GateNotApproved, match="rejected by B \\(module-reps\\): scanner guild not ready"):
        require(rb, "t0")


def test_waiver_in_stage_is_recorded_and_refused_in_prod(tmp_path):
    rb = make_rb(tmp_path, "stage", waive=["t0"])
    rec = require(rb, "t0")
    assert rec["outcome"] == "waived"
    waivers = [r for r in rb.run.read_ledger() if r["kind"] == "waiver"]
    assert waivers and waivers[0]["missing"] == ["devops-lead", "module-reps"]
    prod = make_rb(tmp_path, "prod", waive=["all"])
    with pytest.raises(GateNotApproved, match="cannot be waived in prod"):
        require(prod, "t0")


def test_widget_callbacks_only_record_and_next_step_then_runs(tmp_path, monkeypatch):
    """The form's buttons fire real ipywidgets callbacks; the gate step after them passes."""
    rb = make_rb(tmp_path, interactive=True)
    monkeypatch.setattr(rb, "_display", True)
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: None)
    form = approval_form(rb, "t0")
    with pytest.raises(GateNotApproved) as ei:
        require(rb, "t0")
    assert "the approval form in the cell above" in ei.value.hint
    for role, name in (("devops-lead", "Grace Hopper"), ("module-reps", "Linus Scanner")):
        form.fields["name"].value = name
        form.fields["role"].value = role
        form.fields["record"].value = "#launch-bridge"
        form.approve_button.click()
    assert require(rb, "t0")["outcome"] == "passed"
    assert len([r for r in rb.run.read_ledger() if r["kind"] == "approval" and r.get("via") == "notebook"]) >= 2


# --------------------------------------------------------------------------- issue 12: approvals a hand cannot write
def _approved_plan(tmp_path):
    rb = make_rb(tmp_path)
    store = ApprovalStore(tmp_path, rb.env)
    store.record(gate="plan", role="cto", name="Ada Lovelace", record="CHG-2025-1027-LAUNCH")
    return rb, store


def _forged_line(store, **fields):
    import json

    rec = {"seq": len(store.path.read_text().splitlines()) + 1, "ts": "2026-01-01T00:00:00.000Z", "kind": "approval",
           "gate": "plan", "gate_title": "x", "env": "prod", "change": "CHG-2025-1027-LAUNCH", "role": "devops-lead",
           "name": "Mallory", "decision": "approve", "at": "2026-01-01T00:00:00Z", "record": "CHG", "comment": "",
           "via": "cli", "recorded_by": "x@y", "prev": "0" * 64, **fields}
    with open(store.path, "a") as f:
        f.write(json.dumps(rec) + "\n")


@pytest.mark.parametrize("tamper", ["appended", "edited", "removed", "reordered", "garbage"])
def test_a_hand_made_approvals_file_stops_the_gate(tmp_path, tamper):
    from cutover_lib.errors import EvidenceError

    rb, store = _approved_plan(tmp_path)
    store.record(gate="plan", role="devops-lead", name="Grace Hopper", record="CHG-2025-1027-LAUNCH")
    lines = store.path.read_text().splitlines()
    if tamper == "appended":
        _forged_line(store)
    elif tamper == "edited":
        store.path.write_text("\n".join([lines[0].replace("Ada Lovelace", "Ada Lovelacf"), lines[1]]) + "\n")
    elif tamper == "removed":
        store.path.write_text(lines[1] + "\n")
    elif tamper == "reordered":
        store.path.write_text("\n".join([lines[1], lines[0]]) + "\n")
    else:
        store.path.write_text(lines[0] + "\n{not json\n" + lines[1] + "\n")
    with pytest.raises(EvidenceError) as ei:
        store.records()
    assert ei.value.exit_code == 1 and "executed/_approvals/prod/CHG-2025-1027-LAUNCH.jsonl line " in ei.value.message
    assert "changed outside cutover" in ei.value.message and "record the approvals again" in ei.value.hint
    with pytest.raises(Exception) as stop:  # the gate's step fails on it, with the reason in the ledger
        require(rb, "plan")
    last = rb.run.read_ledger()[-1]
    assert last["step_id"] == "8.gate-plan" and last["outcome"] == "failed" and "line " in last["message"]
    with pytest.raises(EvidenceError):  # and no new decision is chained onto a broken file
        store.record(gate="plan", role="cto", name="Someone Else", record="CHG-2025-1027-LAUNCH")
    assert stop.value is not None


def test_approvals_count_only_for_their_environment_and_change(tmp_path):
    """A consistent chain that carries another change's (or environment's) decision: not counted."""
    from cutover_lib.evidence.evidence import HashChain

    rb, store = _approved_plan(tmp_path)
    HashChain(store.path).append({"kind": "approval", "gate": "plan", "env": "prod", "change": "CHG-OTHER",
                                  "role": "devops-lead", "name": "Grace Hopper", "decision": "approve",
                                  "at": "2026-01-01T00:00:00Z", "record": "CHG-OTHER"})
    HashChain(store.path).append({"kind": "approval", "gate": "plan", "env": "stage", "change": "CHG-2025-1027-LAUNCH",
                                  "role": "devops-lead", "name": "Grace Hopper", "decision": "approve",
                                  "at": "2026-01-01T00:00:00Z", "record": "CHG"})
    assert gate_status(rb, "plan").missing == ["devops-lead"]


@pytest.mark.parametrize("spelling", ["ada lovelace", "ADA  LOVELACE", "\uff21\uff44\uff41 Lovelace",
                                      "Ada Love\u200blace", "\u202eAda Lovelace", " Ada\tLovelace "])
def test_one_person_is_one_person_however_the_name_is_spelled(tmp_path, spelling):
    env = load_environment("prod", REPO / "params")
    store = ApprovalStore(tmp_path, env)
    store.record(gate="plan", role="cto", name="Ada Lovelace", record="CHG-1")
    with pytest.raises(UsageError, match="one person cannot fill two roles"):
        store.record(gate="plan", role="devops-lead", name=spelling, record="CHG-1")


def test_named_approvers_match_however_the_name_is_spelled_and_no_one_else(tmp_path):
    env = variant("prod", 'approvals.approvers={"cto": ["Ada Lovelace"]}')
    store = ApprovalStore(tmp_path, env)
    store.record(gate="plan", role="cto", name="\uff21da  lovelace", record="CHG-1")
    with pytest.raises(UsageError, match="is not an approver for role cto"):
        store.record(gate="plan", role="cto", name="Ada Lovelace2", record="CHG-1")
    with pytest.raises(UsageError, match="needs the approver's name"):
        store.record(gate="plan", role="cto", name="\u200b \u200d", record="CHG-1")
