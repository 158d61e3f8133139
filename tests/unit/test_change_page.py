"""The change page (``executed/<env>/index.html``): every run of the change, and Section 2 as a
picture -- each slot's hour against its newest run, from the runs' manifests and slot records."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cutover_lib.evidence.change_page import write_change_page
from cutover_lib.config.params import load_environment, parse_overrides

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def fake_run(root: Path, phase: str, slot: str | None, started: datetime, outcome: str = "passed",
             planned: datetime | None = None, **extra) -> str:
    run_id = f"{started:%Y%m%dT%H%M%SZ}-local-{phase}"
    path = root / "executed" / "local" / run_id
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"phase": phase, "release": "2025.09.2", "outcome": outcome,
                                                    "started": started.isoformat(), "duration_s": 300.0,
                                                    "ended": (started + timedelta(seconds=300)).isoformat(),
                                                    "dry_run": False, **extra}))
    if slot:
        rec = {"seq": 1, "kind": "slot", "slot": slot, "planned": (planned or started).isoformat(),
               "off_by_s": (started - (planned or started)).total_seconds(), "at_any_time": False}
        (path / "ledger.jsonl").write_text(json.dumps(rec) + "\n")
    return run_id


def test_the_change_page_lists_every_run_and_draws_each_slot_against_its_hour(project: Path):
    env = load_environment("local", project / "params", parse_overrides([f"t0={T0:%Y-%m-%dT%H:%M:%SZ}"]))
    ids = [fake_run(project, "t-24h", "T-24h", T0 - timedelta(hours=24, minutes=-3), planned=T0 - timedelta(hours=24)),
           fake_run(project, "t-12h", "T-12h", T0 - timedelta(hours=11), "failed", planned=T0 - timedelta(hours=12)),
           fake_run(project, "cutover", "T0", T0 + timedelta(days=3), "rolled-back", planned=T0),
           fake_run(project, "rollback", None, T0 + timedelta(days=3, minutes=20)),
           fake_run(project, "cutover", None, T0 - timedelta(days=1), "planned", dry_run=True)]
    page = write_change_page(project, env)
    assert page == project / "executed" / "local" / "index.html"
    text = page.read_text()
    for run_id in ids:
        assert f"<a href='{run_id}/html/index.html'><code>{run_id}</code></a>" in text
    svg = text[text.index("<svg"):text.index("</svg>")]
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # offline: nothing loaded
    # each slot a row; a slot with no run says so; off the hour in words
    assert svg.count("not run") == 5  # T-6h, T-2h, T-30m, T+45m, T+4h
    assert "passed, 3m late" in svg and "failed, 60m late" in svg and "rolled-back, 3d late" in svg
    assert "▶" in svg  # the T0 run 3 days late is off the picture: an arrow points to it
    rows = re.findall(r"<tr><td><a href='(\d{8}T\d{6}Z-local-[\w-]+)/", text)
    assert rows == sorted(rows, reverse=True)  # newest first
    assert "(plan)" in text and "Change CHG-2025-1027-LAUNCH: release 2025.09.2 on local" in text


def test_readiness_draws_the_three_slots_it_ran_and_a_resumed_run_took_all_its_attempts(project: Path):
    env = load_environment("local", project / "params", parse_overrides([f"t0={T0:%Y-%m-%dT%H:%M:%SZ}"]))
    run_id = fake_run(project, "readiness", None, T0 - timedelta(hours=24))
    ledger = project / "executed" / "local" / run_id / "ledger.jsonl"
    ledger.write_text(json.dumps({"seq": 1, "kind": "slot", "slot": None, "covers": ["T-24h", "T-12h", "T-6h"],
                                  "off_by_s": None, "at_any_time": False}) + "\n")
    resumed = project / "executed" / "local" / fake_run(project, "cutover", "T0", T0, planned=T0)
    m = json.loads((resumed / "manifest.json").read_text())
    (resumed / "manifest.json").write_text(json.dumps({**m, "ended": (T0 + timedelta(minutes=40)).isoformat(),
                                                       "duration_s": 12.0}))  # (the last attempt's)
    svg = write_change_page(project, env).read_text()
    assert svg.count("not run") == 4  # T-2h, T-30m, T+45m, T+4h: readiness carried T-24h, T-12h and T-6h
    assert "<td>2400 s</td>" in svg  # 40 min from its start to its end, over both attempts


def test_a_broken_run_folder_does_not_break_the_page(project: Path):
    env = load_environment("local", project / "params")
    bad = project / "executed" / "local" / "20260301T000000Z-local-t-6h"
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text("{not json")
    (bad / "ledger.jsonl").write_text("garbage\n")
    text = write_change_page(project, env).read_text()
    assert "20260301T000000Z-local-t-6h" not in text and "<svg" in text
