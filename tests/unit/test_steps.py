import sys
from pathlib import Path

import pytest

from cutover_lib.errors import CheckFailed, StepFailed
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.config.params import load_environment
from cutover_lib.config.secrets import register_secret
from cutover_lib.engine.steps import Runbook, status_card

REPO = Path(__file__).resolve().parents[2]
CANARY = "canary-step-71c3aa"


@pytest.fixture
def make_rb(tmp_path):
    def make(**kw):
        env = load_environment("local", REPO / "params")
        run = kw.pop("run", None) or RunFolder.create(tmp_path / "executed", "local", "t")
        return Runbook(env, run, root=tmp_path, notebook="nb.ipynb", **kw)
    return make


def test_passed_step_records_everything(make_rb):
    rb = make_rb()
    rec = rb.step("5.api-health", "API health", owner="Cutover lead", expect="HTTP 200", command="curl x/healthz",
                  action=lambda ctx: "HTTP 200 Healthy")
    assert rec["outcome"] == "passed" and rec["observed"] == "HTTP 200 Healthy"
    assert rec["section"] == "5" and rec["owner"] == "Cutover lead" and rec["command"] == "curl x/healthz"
    assert rec["started"].endswith("Z") and rec["duration_s"] >= 0
    ledger = rb.run.read_ledger()
    assert ledger[-1]["step_id"] == "5.api-health"


def test_failed_required_step_raises_after_evidence(make_rb):
    rb = make_rb()

    def act(ctx):
        ctx.log("observing")
        ctx.check(False, "HTTP 503")

    with pytest.raises(StepFailed, match=r"expected HTTP 200; observed HTTP 503"):
        rb.step("5.api-health", "API health", owner="o", expect="HTTP 200", action=act)
    last = rb.run.read_ledger()[-1]
    assert last["outcome"] == "failed" and "observed HTTP 503" in last["message"]
    assert (rb.run.path / last["artifacts"][0]).read_text() == "observing\n"


def test_optional_step_failure_does_not_raise(make_rb):
    rec = make_rb().step("7.docs", "d", owner="o", expect="e", required=False,
                         action=lambda ctx: ctx.check(False, "no"))
    assert rec["outcome"] == "failed"


def test_unexpected_exception_is_masked_and_traceback_kept(make_rb):
    register_secret(CANARY)
    rb = make_rb()

    def act(ctx):
        raise RuntimeError(f"server said {CANARY}")

    with pytest.raises(StepFailed) as ei:
        rb.step("4.4.x", "x", owner="o", expect="e", action=act)
    assert CANARY not in str(ei.value)
    assert CANARY not in rb.run.ledger_path.read_text()
    tb = rb.run.path / "artifacts" / "4.4.x.traceback.txt"
    assert tb.exists() and CANARY not in tb.read_text()


def test_dry_run_plans_mutating_steps_and_runs_reads(make_rb):
    rb = make_rb(dry_run=True)
    called = []
    rec = rb.step("4.2.pull", "pull", owner="o", expect="e", mutating=True,
                  command=["docker", "compose", "--env-file", "prod.env", "-f", "x.yaml", "pull"],
                  action=lambda ctx: called.append(1))
    assert rec["outcome"] == "planned" and not called
    assert rec["command"] == "docker compose --env-file prod.env -f x.yaml pull"
    rec = rb.step("4.4.oidc", "read", owner="o", expect="e", action=lambda ctx: "ok")
    assert rec["outcome"] == "passed"
    rb2 = make_rb(dry_run=True, with_reads=False)
    assert rb2.step("4.4.oidc", "read", owner="o", expect="e", action=lambda ctx: "ok")["outcome"] == "planned"


def test_resume_skips_passed_and_refuses_unknown_mutating(make_rb, tmp_path):
    rb = make_rb()
    rb.step("4.1.a", "a", owner="o", expect="e", action=lambda ctx: "ok")
    rb.run.append({"kind": "intent", "step_id": "4.2.up", "notebook": "nb.ipynb", "command": "up -d"})
    # the process "died" here; resume:
    again = make_rb(run=rb.run, resume=True)
    calls = []
    assert again.step("4.1.a", "a", owner="o", expect="e", action=lambda ctx: calls.append(1))["outcome"] == "skipped"
    with pytest.raises(StepFailed, match=r"interrupted mid-run.*--confirm 4.2.up"):
        again.step("4.2.up", "up", owner="o", expect="e", mutating=True, action=lambda ctx: calls.append(2))
    assert calls == []
    confirmed = make_rb(run=rb.run, resume=True, confirm=["4.2.up"])
    assert confirmed.step("4.2.up", "up", owner="o", expect="e", mutating=True,
                          action=lambda ctx: calls.append(3))["outcome"] == "passed"
    assert calls == [3]


def test_a_step_passed_in_the_first_attempt_stays_skipped_on_every_later_resume(make_rb):
    """A run stopped at a gate twice (a NO-GO, then a GO) is resumed twice: the step that passed in
    the first attempt is skipped in the second and the third -- it never runs (or posts) again."""
    rb = make_rb()
    rb.step("2.t-30m.bridge-call", "a", owner="o", expect="e", mutating=True, action=lambda ctx: "posted")
    calls = []
    for _ in range(3):
        again = make_rb(run=rb.run, resume=True)
        rec = again.step("2.t-30m.bridge-call", "a", owner="o", expect="e", mutating=True,
                         action=lambda ctx: calls.append(1))
        assert rec["outcome"] == "skipped" and rec["observed"].startswith("passed in an earlier attempt")
    assert calls == []


def test_step_shell_logs_artifact(make_rb):
    rb = make_rb()
    rec = rb.step("4.1.net", "net", owner="o", expect="e",
                  action=lambda ctx: ctx.sh([sys.executable, "-c", "print('created')"]).output)
    assert rec["observed"] == "created"
    assert "4.1.net.log" in " ".join(rec["artifacts"])
    assert rec["commands"][0].endswith("-c 'print('\"'\"'created'\"'\"')'")


def test_card_is_self_contained_html():
    card = status_card({"step_id": "5.x", "title": "<t>", "outcome": "failed", "duration_s": 1.0,
                        "expect": "a", "observed": "b", "message": "m", "output_tail": ["l1"]})
    assert "<script" not in card and "http" not in card and "&lt;t&gt;" in card and 'data-outcome="failed"' in card


def test_bad_step_id(make_rb):
    with pytest.raises(ValueError, match="must look like"):
        make_rb().step("Smoke", "x", owner="o", expect="e")


def test_check_failed_type():
    assert issubclass(CheckFailed, StepFailed)


def test_a_card_links_where_a_person_goes_next_and_nowhere_else():
    """Issue 14, item 5: a failed decision's card links the rollback's record and the run folder;
    only relative links inside the run's record are drawn (no scheme, no absolute path, no climbing)."""
    from cutover_lib.engine.steps import status_card

    rec = {"step_id": "5.decision", "title": "Go / rollback decision", "outcome": "failed",
           "data": {"next": [["Rollback (Section 6): 08_rollback", "08_rollback.html"], ["Run folder", "../"],
                             ["evil", "javascript:alert(1)"], ["abs", "/etc/passwd"], ["up", "../../x.html"],
                             ["<b>x</b>", "08_rollback.html"]]}}
    card = status_card(rec)
    assert '<a href="08_rollback.html">Rollback (Section 6): 08_rollback</a>' in card
    assert '<a href="../">Run folder</a>' in card
    assert "javascript" not in card and "/etc/passwd" not in card and "../../" not in card
    assert "&lt;b&gt;x&lt;/b&gt;" in card and "<b>x</b>" not in card
