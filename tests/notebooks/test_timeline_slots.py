"""Section 2 slot by slot against the lab: each of T-24h, T-12h, T-6h, T-2h runs on its own; T-30m
names every red item, stops at the go-no-go gate until each guild lead said GO for that run, stops
on a lead's NO-GO naming who and why, and announces the GO.  Its own environment (``golive``,
extending ``local``) keeps other tests' runs out of what T-30m reads."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from nb_helpers import DEMO_APPROVERS, cutover, lab_config, run_dir_from, steps_of
from stellaops_lab import monitoring_green

pytestmark = pytest.mark.notebooks


def approve(root: Path, *argv: str) -> None:
    res = cutover(root, "approve", "--env", "golive", *argv)
    assert res.returncode == 0, res.stdout + res.stderr


def test_each_slot_on_its_own_and_the_t30m_go_no_go_with_the_guild_leads(lab_project: Path):
    root = lab_project
    (root / "params" / "golive.yaml").write_text("extends: local.yaml\ndescription: the T-30m go/no-go test\n")

    # T-30m with nothing before it: NO-GO, each earlier slot named with the command that runs it
    res = cutover(root, "run", "--env", "golive", "--phase", "t-30m")
    assert res.returncode == 1, res.stdout + res.stderr
    red = steps_of(run_dir_from(res.stdout))["2.t-30m.readiness"]["message"]
    for slot in ("t-24h", "t-12h", "t-6h", "t-2h"):
        assert f"T{slot[1:]}: no run of release 2025.09.2 in golive (cutover run --env golive --phase {slot})" \
            in red, red

    # each earlier slot runs on its own, as the schedule starts it
    for role, name in DEMO_APPROVERS["plan"]:
        approve(root, "--gate", "plan", "--role", role, "--name", name, "--record", "CHG-TEST")
    for slot, first in (("t-24h", "2.t-24h.gate-plan"), ("t-12h", "2.t-12h.validate-profiles"),
                        ("t-6h", "2.t-6h.freeze"), ("t-2h", "3.scan-submit")):
        res = cutover(root, "run", "--env", "golive", "--phase", slot)
        assert res.returncode == 0, f"{slot}:\n{res.stdout}\n{res.stderr}"
        run = run_dir_from(res.stdout)
        assert first in steps_of(run)
        slot_rec = next(json.loads(x) for x in (run / "ledger.jsonl").read_text().splitlines() if '"kind":"slot"' in x)
        assert slot_rec["slot"] == "T" + slot[1:] and slot_rec["enforced"] is False  # recorded; golive does not enforce

    # T-30m: readiness green, then the gate waits for each lead's GO, given for this run
    monitoring_green(lab_config(root))  # (Section 2 compressed: what 90 minutes after the rehearsal give)
    res = cutover(root, "run", "--env", "golive", "--phase", "t-30m", post_smoke=False)
    assert res.returncode == 3, res.stdout + res.stderr
    run = run_dir_from(res.stdout)
    steps = steps_of(run)
    assert steps["2.t-30m.bridge-call"]["outcome"] == "passed"
    assert steps["2.t-30m.readiness"]["outcome"] == "passed", steps["2.t-30m.readiness"]
    nexts = [ln.split(":", 1)[1].strip() for ln in res.stdout.splitlines() if ln.startswith("next:")]
    roles = [shlex.split(n)[shlex.split(n).index("--role") + 1] for n in nexts]
    assert roles == ["cutover-lead", "authority", "scanner", "storage", "observability"]
    assert all("--gate go-no-go" in n and f"--record '#launch-bridge' --run {run.name}" in n for n in nexts)
    assert "2.t-30m.go-no-go" not in steps  # not announced

    # a lead's NO-GO stops it, naming who and why
    people = dict(DEMO_APPROVERS["go-no-go"])
    for role in roles:
        approve(root, "--gate", "go-no-go", "--role", role, "--name", people[role], "--record", "#launch-bridge",
                "--run", run.name, *(["--reject", "--comment", "MinIO replication lag 40 min"] if role == "storage"
                                     else []))
    res = cutover(root, "run", "--env", "golive", "--phase", "t-30m", "--resume", run.name, post_smoke=False)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "was rejected by Tomas Varga (storage): MinIO replication lag 40 min" in res.stdout

    # the storage lead says GO once it is fixed: GO announced
    approve(root, "--gate", "go-no-go", "--role", "storage", "--name", people["storage"], "--record",
            "#launch-bridge", "--run", run.name, "--comment", "lag 0")
    res = cutover(root, "run", "--env", "golive", "--phase", "t-30m", "--resume", run.name)
    assert res.returncode == 0, res.stdout + res.stderr
    steps = steps_of(run)
    assert steps["2.t-30m.gate-go-no-go"]["outcome"] == "passed"
    assert steps["2.t-30m.go-no-go"]["outcome"] == "passed"
    records = [json.loads(x) for x in (run / "ledger.jsonl").read_text().splitlines()]
    assert {r["role"] for r in records if r["kind"] == "approval" and r.get("gate") == "go-no-go"} == set(roles)
