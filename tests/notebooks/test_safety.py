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
    proc = subprocess.Popen([sys.executable, "-m", "cutover_lib.cli", "run", "--env", "local", "--phase", "cutover",
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
    assert [r["kind"] for r in recs].count("run-resume") == 2
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
