"""Section 2 on time: each slot runs at its hour where the timeline is enforced (prod), a run off
its hour says --at-any-time (recorded), T0 in prod needs the T-30m GO, and during the T0 run the
bridge is alarmed at T+30m and T+45m while no smoke decision exists."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from nb_helpers import run_cells
from typer.testing import CliRunner

from cutover_lib.cli.app import app
from cutover_lib.config.params import load_environment, parse_overrides
from cutover_lib.engine.slots import SmokeDeadline, check_on_time, go_no_go_given, running_now, slot_runs, slot_table
from cutover_lib.errors import GateNotApproved, UsageError
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.evidence.timeline import actual_times

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def local(*pairs: str, root: Path = REPO):
    return load_environment("local", root / "params", parse_overrides(list(pairs)))


def test_every_slot_has_its_planned_time_from_t0():
    env = local("t0=2026-03-02T12:00:00Z")
    assert [(s.label, s.name, s.phase, s.planned.strftime("%d %H:%M")) for s in slot_table(REPO, env)] == [
        ("T-24h", "t-24h", "t-24h", "01 12:00"), ("T-12h", "t-12h", "t-12h", "02 00:00"),
        ("T-6h", "t-6h", "t-6h", "02 06:00"), ("T-2h", "t-2h", "rehearsal", "02 10:00"),
        ("T-30m", "t-30m", "t-30m", "02 11:30"), ("T0", "t0", "cutover", "02 12:00"),
        ("T+45m", "t+45m", "smoke-decision", "02 12:45"), ("T+4h", "t+4h", "post", "02 16:00")]


@pytest.mark.parametrize("phase, now, on_time", [
    ("t-12h", NOW - timedelta(hours=12), True),
    ("t-12h", NOW - timedelta(hours=12, minutes=14), True),   # 14 min early: within timeline.early (15m)
    ("t-12h", NOW - timedelta(hours=12, minutes=16), False),  # 16 min early
    ("cutover", NOW + timedelta(minutes=29), True),            # 29 min late: within timeline.late (30m)
    ("cutover", NOW + timedelta(minutes=31), False),
    ("post", NOW + timedelta(hours=4), True),
])
def test_on_time_is_between_early_and_late_of_the_slot(phase, now, on_time):
    env = local(f"t0={NOW:%Y-%m-%dT%H:%M:%SZ}")
    rec = check_on_time(REPO, env, phase, at_any_time=False, dry_run=False, now=now)
    assert rec["on_time"] is on_time and rec["enforced"] is False  # local records, never refuses
    assert rec["planned"] and rec["note"].startswith(f"slot {rec['slot']} planned ")


def test_where_enforced_a_slot_off_its_hour_needs_at_any_time_and_it_is_recorded():
    env = local(f"t0={NOW:%Y-%m-%dT%H:%M:%SZ}", "timeline.enforce=true")
    late = NOW + timedelta(days=3, hours=2)
    with pytest.raises(UsageError) as err:
        check_on_time(REPO, env, "cutover", at_any_time=False, dry_run=False, now=late)
    assert err.value.exit_code == 2
    assert "slot T0 (cutover) of local is planned at 2026-03-01 12:00 UTC" in err.value.one_line()
    assert "3d 2h late" in err.value.one_line() and "--at-any-time" in err.value.one_line()
    rec = check_on_time(REPO, env, "cutover", at_any_time=True, dry_run=False, now=late)
    assert rec["at_any_time"] is True and rec["on_time"] is False and rec["off_by_s"] == 3 * 86400 + 7200
    # a plan is made ahead of time on purpose, and a resume goes on with a slot that started: never refused
    assert check_on_time(REPO, env, "cutover", at_any_time=False, dry_run=True, now=late)["dry_run"] is True
    assert check_on_time(REPO, env, "cutover", at_any_time=False, dry_run=False, resumed=True, now=late)["resumed"]
    # readiness runs T-24h .. T-6h at once: not where each has its own hour
    with pytest.raises(UsageError) as err:
        check_on_time(REPO, env, "readiness", at_any_time=False, dry_run=False, now=NOW - timedelta(hours=24))
    assert "runs slots T-24h, T-12h, T-6h at once" in err.value.one_line()
    # the rollback has no hour: it runs when it is needed
    assert check_on_time(REPO, env, "rollback", at_any_time=False, dry_run=False, now=late) is None


def test_prod_cannot_turn_the_timeline_off():
    prod = load_environment("prod", REPO / "params")
    assert prod.timeline.enforced
    from cutover_lib.config.params import ParamsError

    with pytest.raises(ParamsError):  # (-p is refused in prod for anything but patience)
        load_environment("prod", REPO / "params", parse_overrides(["timeline.enforce=false"]))


def test_prod_t0_far_from_now_is_refused_before_any_evidence(project: Path):
    """prod's T0 is in params/prod.yaml; `cutover run --phase t0` a year later stops with one line."""
    res = CliRunner().invoke(app, ["run", "--env", "prod", "--phase", "t0", "--root", str(project)])
    assert res.exit_code == 2, res.output
    assert "error: slot T0 (cutover) of prod is planned at 2025-10-27 14:00 UTC" in res.output
    assert "--at-any-time" in res.output and "Traceback" not in res.output
    assert not (project / "executed" / "prod").exists() or not any((project / "executed" / "prod").iterdir())
    # --at-any-time gets past the clock, and then T0 in prod needs what comes before it: the T-2h
    # stage rehearsal, then the T-30m GO (tests/notebooks/test_helm_phases.py runs both for real)
    res = CliRunner().invoke(app, ["run", "--env", "prod", "--phase", "t0", "--at-any-time", "--root", str(project)])
    assert res.exit_code == 3, res.output
    assert "no passed stage rehearsal of release 2025.09.2" in res.output


def fake_run(root: Path, env: str, phase: str, started: datetime, **manifest) -> Path:
    run_id = f"{started:%Y%m%dT%H%M%SZ}-{env}-{phase}"
    path = root / "executed" / env / run_id
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({
        "phase": phase, "release": "2025.09.2", "outcome": "passed", "started": started.isoformat(),
        "ended": (started + timedelta(minutes=5)).isoformat(), "sealed": True, "dry_run": False, **manifest}))
    return path


def test_slot_runs_find_each_slots_newest_run_and_readiness_carries_its_three(project: Path):
    env = local(f"t0={NOW:%Y-%m-%dT%H:%M:%SZ}", root=project)
    fake_run(project, "local", "readiness", NOW - timedelta(hours=25))
    fake_run(project, "local", "t-12h", NOW - timedelta(hours=12), outcome="failed")
    fake_run(project, "local", "t-6h", NOW - timedelta(hours=6), dry_run=True)  # a plan is not a run
    fake_run(project, "local", "t-30m", NOW - timedelta(minutes=30), release="2025.09.1")  # another release
    got = {r["slot"].label: r["run"] and (r["run"]["phase"], r["run"]["outcome"]) for r in slot_runs(project, env)}
    assert got == {"T-24h": ("readiness", "passed"), "T-12h": ("t-12h", "failed"), "T-6h": ("readiness", "passed"),
                   "T-2h": None, "T-30m": None, "T0": None, "T+45m": None, "T+4h": None}


@pytest.mark.parametrize("case, words", [
    ("none", "none was run"),
    ("failed", "-local-t-30m is failed"),
    ("yesterday", "(another day's GO)"),
    ("unsealed", "is not sealed"),
])
def test_t0_where_enforced_needs_todays_go(project: Path, case: str, words: str):
    env = local(f"t0={NOW:%Y-%m-%dT%H:%M:%SZ}", "timeline.enforce=true", root=project)
    at = NOW - timedelta(minutes=30)
    if case == "failed":
        fake_run(project, "local", "t-30m", at, outcome="failed")
    elif case == "yesterday":
        fake_run(project, "local", "t-30m", at - timedelta(days=1))
    elif case == "unsealed":
        fake_run(project, "local", "t-30m", at, sealed=False)
    with pytest.raises(GateNotApproved) as err:
        go_no_go_given(project, env)
    assert words in err.value.one_line() and err.value.exit_code == 3


class Sent(list):
    def __call__(self, message):
        self.append(message)


def test_smoke_deadline_alarms_at_t30m_at_once_and_t45m_on_time(tmp_path: Path):
    """T+30m already passed when the run starts (posted at once); T+45m falls due 1 s later."""
    t0 = datetime.now(timezone.utc) - timedelta(minutes=45) + timedelta(seconds=1)
    env = local(f"t0={t0:%Y-%m-%dT%H:%M:%S.%fZ}")
    run = RunFolder.create(tmp_path / "executed", "local", "cutover")
    sent = Sent()
    watch = SmokeDeadline(env, run, sent, lambda: "5.scan-submit").start()
    time.sleep(2.5)
    watch.stop()
    assert [m.kind for m in sent] == ["deadline-alarm", "deadline-alarm"]
    assert sent[0].text.startswith(":rotating_light: **T+30m** on **local**: no smoke decision yet")
    assert "still running: 5.scan-submit" in sent[1].text and "smoke deadline has passed" in sent[1].text
    alarms = [r for r in run.read_ledger() if r["kind"] == "deadline-alarm"]
    assert [a["at"] for a in alarms] == ["T+30m", "T+45m"] and alarms[1]["running"] == "5.scan-submit"


def test_smoke_deadline_is_quiet_once_decided_and_for_a_run_far_from_t0(tmp_path: Path):
    t0 = datetime.now(timezone.utc) - timedelta(minutes=45) + timedelta(seconds=1)
    run = RunFolder.create(tmp_path / "executed", "local", "cutover")
    run.append({"kind": "decision", "decision": "go", "reason": "all passed", "failed": []})
    sent = Sent()
    watch = SmokeDeadline(local(f"t0={t0:%Y-%m-%dT%H:%M:%S.%fZ}"), run, sent, lambda: None).start()
    time.sleep(1.5)
    watch.stop()
    assert sent == []
    months_ago = local("t0=2026-01-15T14:00:00Z")  # a rehearsal on the lab, far from its T0
    assert SmokeDeadline(months_ago, run, sent, lambda: None).due(datetime.now(timezone.utc)) == []


def test_the_report_judges_t45m_from_params_t0_and_not_for_an_off_schedule_run():
    t0 = NOW
    steps = [{"step_id": "4.1.backup-mongo", "started": (t0 + timedelta(minutes=20)).isoformat(),
              "ended": (t0 + timedelta(minutes=21)).isoformat()},
             {"step_id": "5.api-health", "started": (t0 + timedelta(minutes=50)).isoformat(),
              "ended": (t0 + timedelta(minutes=50)).isoformat()}]
    # from T0 in params: 50 min, a breach (from the first step it would have been 30 min, within)
    on_time = actual_times(steps, timedelta(minutes=45), t0=t0, slot={"slot": "T0", "on_time": True, "note": "x"})
    assert on_time["T+45m"]["breach"] and "50.0 min after T0: BREACH" in on_time["T+45m"]["note"]
    off = actual_times(steps, timedelta(minutes=45), t0=t0, slot={"slot": "T0", "on_time": False, "note": "late"})
    assert not off["T+45m"]["breach"] and "off-schedule run" in off["T+45m"]["note"]


def test_t30m_readiness_names_a_stale_or_unsealed_earlier_slot(project: Path, closed_port: int):
    """An earlier slot counts only with a sealed, passed run of this change window: a run of the same
    release from an aborted attempt days before, or one never sealed, is a red item, named."""
    from cutover_lib import readiness
    from cutover_lib.engine.steps import Runbook
    from cutover_lib.errors import StepFailed

    services = [f"services.{s}=http://127.0.0.1:{closed_port}"
                for s in ("authority", "scanner", "signer", "attestor", "notify", "web", "runtime")]
    t0 = datetime.now(timezone.utc) + timedelta(minutes=30)
    env = local(f"t0={t0:%Y-%m-%dT%H:%M:%SZ}", *services, root=project)
    fake_run(project, "local", "t-24h", t0 - timedelta(days=3))                  # an earlier attempt's
    fake_run(project, "local", "t-12h", t0 - timedelta(hours=12), sealed=False)  # never sealed
    fake_run(project, "local", "t-6h", t0 - timedelta(hours=6))                  # good
    rb = Runbook(env, RunFolder.create(project / "executed", "local", "t-30m"), root=project,
                 notebook="02d_t-30m.ipynb")
    run_cells(rb, "02d_t-30m.ipynb", "2.t-30m.health-{service}")  # the notebook's health cells: none answers
    with pytest.raises(StepFailed) as err:
        readiness.go_no_go(rb)
    red = str(err.value)
    assert "T-24h: the newest run " in red and "started more than a day before the slot's hour" in red
    assert "-local-t-12h is not sealed" in red and "T-2h: no run of release 2025.09.2 in local" in red
    assert "T-6h" not in red
    for service in ("authority", "scanner", "signer", "attestor", "notify", "web", "runtime"):  # each named
        assert f"2.t-30m.health-{service} (failed: " in red, service


def test_t30m_readiness_resumed_after_a_no_go_judges_the_latest_attempts(project: Path, closed_port: int):
    """A T-30m run resumed after its NO-GO (a service was down, an earlier slot missing; both fixed):
    the verdict reads the latest attempt of each step above it, and not its own earlier NO-GO."""
    from cutover_lib import readiness
    from cutover_lib.engine.steps import Runbook

    t0 = datetime.now(timezone.utc) + timedelta(minutes=30)
    env = local(f"t0={t0:%Y-%m-%dT%H:%M:%SZ}", root=project)
    for phase, before in (("t-24h", 24), ("t-12h", 12), ("t-6h", 6), ("rehearsal", 2)):
        fake_run(project, "local", phase, t0 - timedelta(hours=before))
    run = RunFolder.create(project / "executed", "local", "t-30m")
    for rec in ({"step_id": "2.t-30m.health-scanner", "outcome": "failed", "message": "HTTP 503"},
                {"step_id": "2.t-30m.readiness", "outcome": "failed", "message": "NO-GO: scanner"},
                {"step_id": "2.t-30m.health-scanner", "outcome": "passed", "observed": "HTTP 200"}):
        run.append({"kind": "step", **rec})
    rb = Runbook(env, run, root=project, notebook="02d_t-30m.ipynb", resume=True)
    rec = readiness.go_no_go(rb)
    assert rec["outcome"] == "passed", rec
    assert rec["observed"] == "green: T-24h .. T-2h passed; this run's 1 steps passed"


def test_what_is_running_names_the_step_the_notebook_or_the_notebook_that_comes_next(tmp_path: Path):
    """The T+30m / T+45m alarm says what the T0 run is doing, also between two notebooks and before
    the first (a loaded machine's run can be there when the alarm falls due)."""
    run = RunFolder.create(tmp_path / "executed", "local", "cutover")
    phase = ["04_preflight.ipynb", "05_apply.ipynb", "06_validation.ipynb"]
    assert running_now(run, phase) == "04_preflight.ipynb next (the run is starting)"
    run.append({"kind": "notebook-start", "notebook": "04_preflight.ipynb"})
    assert running_now(run, phase) == "04_preflight.ipynb"
    run.append({"kind": "intent", "step_id": "4.1.backup-mongo"})
    assert running_now(run, phase) == "4.1.backup-mongo (04_preflight.ipynb)"
    run.append({"kind": "step", "step_id": "4.1.backup-mongo", "outcome": "passed"})
    assert running_now(run, phase) == "04_preflight.ipynb, after 4.1.backup-mongo"
    run.append({"kind": "notebook-end", "notebook": "04_preflight.ipynb", "outcome": "passed"})
    assert running_now(run, phase) == "05_apply.ipynb next, after 04_preflight.ipynb"
    for nb in phase[1:]:
        run.append({"kind": "notebook-start", "notebook": nb})
        run.append({"kind": "notebook-end", "notebook": nb, "outcome": "passed"})
    assert running_now(run, phase) is None and running_now(run) is None
