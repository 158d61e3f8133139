"""Safe at T0: kill -9 mid-step then resume, plan mode and the approved-plan check."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nb_helpers import approve_all, cutover, free_block, lab_config, make_project

pytestmark = pytest.mark.notebooks


@pytest.fixture
def own_lab(tmp_path):
    from stellaops_lab import down, up

    root = make_project(tmp_path / "p", free_block())
    cfg = lab_config(root)
    up(cfg)
    approve_all(root)
    yield root
    down(cfg)


def ledger(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "ledger.jsonl").read_text().splitlines() if x.strip()]


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def test_kill_9_during_a_mutating_step_then_resume(own_lab):
    root = own_lab
    proc = subprocess.Popen([sys.executable, "-m", "cutover_lib.cli.app", "run", "--env", "local", "--phase", "cutover",
                             "--root", str(root)], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            text=True)
    deadline = time.monotonic() + 240
    run = None
    while time.monotonic() < deadline:
        runs = sorted((root / "executed" / "local").glob("*-local-cutover"))
        if runs and (runs[-1] / "ledger.jsonl").exists():
            run = runs[-1]
            if any(r.get("kind") == "intent" and r.get("step_id") == "4.2.lab-upgrade" for r in ledger(run)):
                break
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("the run never reached 4.2.lab-upgrade")
    for pid in descendants(proc.pid):  # the runner, papermill and the kernel: a hard crash
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    assert run is not None
    assert not any(r.get("kind") == "step" and r.get("step_id") == "4.2.lab-upgrade" for r in ledger(run))
    assert (root / "executed" / "local" / ".lock").exists()  # left behind by the crash

    again = cutover(root, "run", "--env", "local", "--phase", "cutover", "--resume", run.name)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "04_preflight.ipynb: finished in an earlier attempt, not re-run" in again.stdout
    assert "--confirm 4.2.lab-upgrade" in again.stdout
    # the exact command to go on, and no rollback: nothing ran in this attempt (issue 12)
    assert (f"next:     check by hand what 4.2.lab-upgrade did, then: cutover run --env local --phase cutover "
            f"--resume {run.name} --confirm 4.2.lab-upgrade") in again.stdout
    assert "running the rollback phase" not in again.stdout and "outcome: failed" in again.stdout
    assert not any(r.get("kind") == "decision" for r in ledger(run))
    intents = [r for r in ledger(run) if r.get("kind") == "intent" and r["step_id"] == "4.2.lab-upgrade"]
    assert len(intents) == 1  # never silently repeated
    refused = [r for r in ledger(run) if r.get("kind") == "step" and r["step_id"] == "4.2.lab-upgrade"]
    assert refused[-1]["outcome"] == "failed" and "outcome is unknown" in refused[-1]["message"]
    assert cutover(root, "verify", str(run)).returncode == 0  # one valid chain

    confirmed = cutover(root, "run", "--env", "local", "--phase", "cutover", "--resume", run.name,
                        "--confirm", "4.2.lab-upgrade")
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    recs = ledger(run)
    assert len([r for r in recs if r.get("kind") == "intent" and r["step_id"] == "4.2.lab-upgrade"]) == 2
    upgrades = [r for r in recs if r.get("kind") == "step" and r["step_id"] == "4.2.lab-upgrade"]
    assert upgrades[-1]["outcome"] == "passed" and upgrades[-1]["confirmed"] is True
    skipped = [r for r in recs if r.get("kind") == "step" and r["outcome"] == "skipped"
               and "earlier attempt" in r.get("observed", "")]
    assert skipped or "not re-run" in confirmed.stdout
    assert [r["kind"] for r in recs].count("run-resume") == 3  # (the last: after the post-smoke approvals)
    assert any(r["kind"] == "lock-taken-over" for r in recs)
    assert cutover(root, "verify", str(run)).returncode == 0
    assert not (root / "executed" / "local" / ".lock").exists()


def test_resume_of_an_unknown_run(own_lab):
    res = cutover(own_lab, "run", "--env", "local", "--phase", "cutover", "--resume", "20200101T000000Z-local-cutover")
    assert res.returncode == 2
    assert "cannot resume 20200101T000000Z-local-cutover: no such run under executed/local/" in res.stderr


def test_plan_then_approved_plan_then_t0_and_a_changed_command_is_stopped(own_lab):
    from stellaops_lab import status

    root = own_lab
    pids = {n: r["pid"] for n, r in status(lab_config(root)).items()}
    plan = cutover(root, "plan", "--env", "local", "--phase", "cutover")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    plan_run = Path(next(x for x in plan.stdout.splitlines() if x.startswith("evidence: ")).split(": ", 1)[1])
    steps = [r for r in ledger(plan_run) if r.get("kind") == "step"]
    assert steps and all(s["outcome"] == "planned" or s["observed"].startswith("not applicable: ") for s in steps)
    assert any(s["outcome"] == "planned" for s in steps)
    upgrade = next(s for s in steps if s["step_id"] == "4.2.lab-upgrade")
    assert upgrade["command"] == "cutover lab down && STELLAOPS_RELEASE=2025.09.2 cutover lab up"
    assert {n: r["pid"] for n, r in status(lab_config(root)).items()} == pids  # nothing was touched
    manifest = json.loads((plan_run / "manifest.json").read_text())
    assert manifest["dry_run"] and len(manifest["plan_digest"]) == 64

    for role, name in (("cto", "Avery Chen"), ("devops-lead", "Sam Okafor")):
        res = cutover(root, "approve", "--env", "local", "--gate", "plan", "--role", role, "--name", name,
                      "--record", "CHG-TEST", "--plan", plan_run.name)
        assert res.returncode == 0 and manifest["plan_digest"][:16] in res.stdout, res.stderr

    changed = cutover(root, "run", "--env", "local", "--phase", "cutover", "-p", "backup.mongo.out_dir=.lab/elsewhere")
    assert changed.returncode == 3, changed.stdout + changed.stderr
    assert "differ from the approved plan" in changed.stdout and "4.1.lab-backup-mongo" in changed.stdout
    assert {n: r["pid"] for n, r in status(lab_config(root)).items()} == pids  # stopped before any change

    t0 = cutover(root, "run", "--env", "local", "--phase", "cutover")
    assert t0.returncode == 0, t0.stdout + t0.stderr
    assert "commands match the approved plan" in t0.stdout
    done = Path(next(x for x in t0.stdout.splitlines() if x.startswith("evidence: ")).split(": ", 1)[1])
    sealed = (done / "manifest.json").read_bytes()
    again = cutover(root, "run", "--env", "local", "--phase", "cutover", "--resume", done.name)
    assert again.returncode == 2 and f"run {done.name} is sealed and cannot be resumed: it passed" in again.stderr
    assert (done / "manifest.json").read_bytes() == sealed


def test_resume_is_as_strict_as_a_first_run(own_lab):
    """Issue 12: a resumed T0 run is checked against the approved plan again, keeps the params it
    started with (or records the change), and a finished run's seal is never reopened."""
    root = own_lab
    plan = cutover(root, "plan", "--env", "local", "--phase", "cutover")
    plan_run = Path(next(x for x in plan.stdout.splitlines() if x.startswith("evidence: ")).split(": ", 1)[1])
    for role, name in (("cto", "Avery Chen"), ("devops-lead", "Sam Okafor")):
        assert cutover(root, "approve", "--env", "local", "--gate", "plan", "--role", role, "--name", name,
                       "--record", "CHG-TEST", "--plan", plan_run.name).returncode == 0
    fault = ["-p", "deploy.lab.release_faults=" + json.dumps({"2025.09.2": {"runtime.ingest_error": True}})]
    first = cutover(root, "run", "--env", "local", "--phase", "cutover", "--no-rollback", *fault)
    assert first.returncode == 1 and "commands match the approved plan" in first.stdout, first.stdout + first.stderr
    run = Path(next(x for x in first.stdout.splitlines() if x.startswith("evidence: ")).split(": ", 1)[1])
    sealed = (run / "manifest.json").read_bytes()

    # changed params: refused, nothing written
    moved = ["-p", "backup.mongo.out_dir=.lab/elsewhere"]
    res = cutover(root, "run", "--env", "local", "--phase", "cutover", "--resume", run.name, *fault, *moved)
    assert res.returncode == 2 and f"the params of local changed since run {run.name} started" in res.stderr, res.stderr
    assert "--accept-param-changes" in res.stderr and (run / "manifest.json").read_bytes() == sealed
    # accepted and recorded -- and then the approved-plan check stops it (the backup command changed)
    res = cutover(root, "run", "--env", "local", "--phase", "cutover", "--resume", run.name, *fault, *moved,
                  "--accept-param-changes")
    assert res.returncode == 3 and "differ from the approved plan" in res.stdout, res.stdout + res.stderr
    changed = [r for r in ledger(run) if r.get("kind") == "params-changed"]
    assert len(changed) == 1 and changed[0]["from_params_sha256"] != changed[0]["to_params_sha256"]
    assert not any(r.get("kind") == "run-resume" for r in ledger(run))  # stopped before the notebooks

    # the params it started with: the plan check passes and the run goes on (the fault still there:
    # smoke fails again and rolls back) -- and a rolled-back run's seal then stands
    res = cutover(root, "run", "--env", "local", "--phase", "cutover", "--resume", run.name, *fault)
    assert "commands match the approved plan" in res.stdout and "outcome: rolled-back" in res.stdout, res.stdout
    final = (run / "manifest.json").read_bytes()
    res = cutover(root, "run", "--env", "local", "--phase", "cutover", "--resume", run.name, *fault)
    assert res.returncode == 2 and f"run {run.name} is sealed and cannot be resumed: it was rolled back" in res.stderr
    assert (run / "manifest.json").read_bytes() == final
    # a plan is not resumable; a link out of executed/ is not followed
    res = cutover(root, "run", "--env", "local", "--phase", "cutover", "--resume", plan_run.name)
    assert res.returncode == 2 and "is a plan (dry run): there is nothing to resume" in res.stderr
    outside = root.parent / "elsewhere-run"
    outside.mkdir()
    (root / "executed" / "local" / "20300101T000000Z-local-cutover").symlink_to(outside)
    res = cutover(root, "run", "--env", "local", "--phase", "cutover", "--resume", "20300101T000000Z-local-cutover")
    assert res.returncode == 2 and "is a link out of executed/local/" in res.stderr



@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_sigterm_and_ctrl_c_seal_what_exists_release_the_lock_and_say_how_to_resume(own_lab, sig, code, word):
    root = own_lab
    # as from a terminal: a shell starts background jobs with SIGINT ignored, and a process
    # keeps an ignored signal ignored (POSIX; python too) -- pytest run as one would lose the Ctrl-C
    proc = subprocess.Popen([sys.executable, "-m", "cutover_lib.cli.app", "run", "--env", "local", "--phase", "cutover",
                             "--root", str(root)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    run = None
    while time.monotonic() < deadline:
        runs = sorted((root / "executed" / "local").glob("*-local-cutover"))
        if runs and (runs[-1] / "ledger.jsonl").exists() and \
                any(r.get("kind") == "step" for r in ledger(runs[-1])):
            run = runs[-1]
            break
        time.sleep(0.02)
    assert run is not None, "the run never wrote a step"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, out + err
    assert f"{word}: the evidence written so far is kept" in err and "Traceback" not in out + err
    assert f"next:     cutover run --env local --phase cutover --resume {run.name}" in out
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["sealed"] and manifest["outcome"] == "interrupted"
    assert any(r.get("kind") == "interrupted" for r in ledger(run))
    assert cutover(root, "verify", str(run)).returncode == 0
    assert not (root / "executed" / "local" / ".lock").exists()
    res = cutover(root, "run", "--env", "local", "--phase", "cutover", "--resume", run.name,
                  *[x for s in {r["step_id"] for r in ledger(run) if r.get("kind") == "intent"} for x in ("--confirm", s)])
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_rollback_waiting_for_its_approvals_is_pending_then_resumes_into_the_rollback(tmp_path):
    """Issue 12: smoke fails, the rollback gate lacks its approvals -> ``rollback-pending`` (exit 3)
    with the approve commands and the resume command; the resume runs the rollback, not the
    cutover's notebooks again."""
    from typer.testing import CliRunner

    from cutover_lib.cli.app import app
    from nb_helpers import DEMO_APPROVALS
    from stellaops_lab import down, up

    root = make_project(tmp_path / "p", free_block())
    cfg = lab_config(root)
    up(cfg)
    try:
        def approve(gates):
            for gate, role, name in DEMO_APPROVALS:
                if gate in gates:
                    res = CliRunner().invoke(app, ["approve", "--env", "local", "--gate", gate, "--role", role, "--name",
                                                   name, "--record", "CHG-TEST", "--root", str(root)])
                    assert res.exit_code == 0, res.output

        approve({"plan", "t0"})  # (post-smoke approves a run whose smoke passed: this one fails)
        fault = ["-p", "deploy.lab.release_faults=" + json.dumps({"2025.09.2": {"runtime.ingest_error": True}})]
        first = cutover(root, "run", "--env", "local", "--phase", "cutover", *fault)
        assert first.returncode == 3, first.stdout + first.stderr
        run = Path(next(x for x in first.stdout.splitlines() if x.startswith("evidence: ")).split(": ", 1)[1])
        assert "outcome: rollback-pending" in first.stdout
        assert "rollback decided (smoke tests failed: 5.runtime-event): running the rollback phase" in first.stdout
        assert "next:     cutover approve --env local --gate rollback --role devops-lead --name 'NAME'" in first.stdout
        assert f"then:     cutover run --env local --phase cutover --resume {run.name}" in first.stdout
        assert json.loads((run / "manifest.json").read_text())["outcome"] == "rollback-pending"

        approve({"rollback"})
        again = cutover(root, "run", "--env", "local", "--phase", "cutover", "--resume", run.name, *fault)
        assert again.returncode == 1 and "outcome: rolled-back" in again.stdout, again.stdout + again.stderr
        assert "[cutover " not in again.stdout  # the smoke tests were not run again
        assert "[rollback 1/1] 08_rollback.ipynb" in again.stdout
        assert cutover(root, "verify", str(run)).returncode == 0
    finally:
        down(cfg)
