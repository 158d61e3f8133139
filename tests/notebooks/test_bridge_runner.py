"""#launch-bridge from the runner: a real receiver on loopback captures the phase start and finish
and the heartbeats (at a test cadence of one second); a dead webhook does not fail the run and is
recorded in the evidence."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import forkrun  # tests/forkrun.py: cutover as a process forked from a warm one

pytestmark = pytest.mark.notebooks


class Receiver(http.server.BaseHTTPRequestHandler):
    posts: list[dict] = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Receiver.posts.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def run_phase(root: Path, hook: str) -> subprocess.CompletedProcess[str]:
    return forkrun.run(["run", "--env", "local", "--phase", "rehearsal", "-p", "bridge.webhook=env:BRIDGE_HOOK",
                        "-p", "bridge.heartbeat=1s", "-p", "bridge.timeout=1s", "-p", "bridge.retries=1",
                        "--root", str(root)], cwd=root, env={**os.environ, "BRIDGE_HOOK": hook}, timeout=300)


def test_runner_posts_phase_events_and_heartbeats(lab_project):
    Receiver.posts = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        res = run_phase(lab_project, f"http://127.0.0.1:{srv.server_address[1]}/hooks/launch")
    finally:
        srv.shutdown()
        srv.server_close()
    assert res.returncode == 0, res.stdout + res.stderr
    texts = [p["text"] for p in Receiver.posts]
    assert texts[0].startswith(":arrow_forward: **rehearsal** started on **local**")
    assert any(t.startswith(":white_check_mark: **rehearsal** on **local** passed") for t in texts)
    assert sum(t.startswith(":hourglass_flowing_sand:") for t in texts) >= 2
    for p in Receiver.posts:
        assert p["username"] == "stellaops-cutover" and p["channel"] == "launch-bridge"
        assert p["attachments"] and {"fallback", "color", "title"} <= set(p["attachments"][0])
    # anchors outside the run folder: the seal's ledger head last, and a head in every heartbeat
    run = Path(next(x for x in res.stdout.splitlines() if x.startswith("evidence: ")).split(": ", 1)[1])
    manifest = json.loads((run / "manifest.json").read_text())
    seal = json.loads((run / "seal.dsse.json").read_text())
    assert texts[-1] == (f":lock: **rehearsal** on **local** sealed (passed): ledger head `{manifest['ledger_head']}`, "
                         f"{manifest['ledger_records']} records, key `{seal['signer']['keyid']}`")
    chain = {json.loads(line)["prev"] for line in (run / "ledger.jsonl").read_text().splitlines()}
    heads = [f["value"] for p in Receiver.posts if p["text"].startswith(":hourglass_flowing_sand:")
             for f in p["attachments"][0]["fields"] if f["title"] == "Ledger head"]
    assert heads and set(heads) <= chain  # each one a link of the sealed chain


def test_dead_webhook_does_not_fail_the_run(lab_project):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    res = run_phase(lab_project, f"http://127.0.0.1:{port}/hooks/launch")
    assert res.returncode == 0, res.stdout + res.stderr
    run = Path(next(x for x in res.stdout.splitlines() if x.startswith("evidence: ")).split(": ", 1)[1])
    bridge = [json.loads(x) for x in (run / "ledger.jsonl").read_text().splitlines() if '"kind":"bridge"' in x]
    assert bridge and not any(b["ok"] for b in bridge)
    assert all("refused" in (b["error"] or "") or "connect" in (b["error"] or "").lower() for b in bridge)


def test_a_slow_t0_run_alarms_the_bridge_at_t30m_and_t45m(lab_project):
    """Section 2's T+45m deadline, live: T0 (params) set so that T+30m has just passed and T+45m
    falls due 8 s into the run; a lab release made slow by a fault (every scanner request +0.4 s)
    keeps the smoke decision from coming in time.  The loopback bridge gets the T+30m alarm at
    once and the T+45m alarm naming what is still running; the decision records its minutes since T0."""
    from datetime import datetime, timedelta, timezone

    Receiver.posts = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    t0 = datetime.now(timezone.utc) - timedelta(minutes=45) + timedelta(seconds=8)
    try:
        res = forkrun.run(
            ["run", "--env", "local", "--phase", "t0", "--waive", "plan",
             "--waive", "t0", "-p", "bridge.webhook=env:BRIDGE_HOOK", "-p", "bridge.heartbeat=1h", "-p", "bridge.retries=0",
             "-p", f"t0={t0:%Y-%m-%dT%H:%M:%SZ}",
             "-p", 'deploy.lab.release_faults={"2025.09.2": {"scanner.slow": 400}}', "--root", str(lab_project)],
            cwd=lab_project, env={**os.environ, "BRIDGE_HOOK": f"http://127.0.0.1:{srv.server_address[1]}/hooks/b"},
            timeout=400)
    finally:
        srv.shutdown()
        srv.server_close()
    assert res.returncode in (0, 1, 3), res.stdout + res.stderr  # (3: stopped at the post-smoke gate)
    alarms = [p["text"] for p in Receiver.posts if p["text"].startswith(":rotating_light: **T+")]
    assert [a.split("**")[1] for a in alarms] == ["T+30m", "T+45m"], alarms
    assert "no smoke decision yet" in alarms[1] and "still running: " in alarms[1]
    assert "The T+45m smoke deadline has passed" in alarms[1]
    running = alarms[1].split("still running: ", 1)[1].split(". ", 1)[0]
    # a step or notebook of T0 ("5.scan-submit (07_smoke.ipynb)"; on a loaded machine still a gate
    # step of its first notebook: "8.ticket-plan (04_preflight.ipynb)")
    assert any(nb in running for nb in ("04_preflight", "05_apply", "06_validation", "07_smoke")), running
    run = Path(next(x for x in res.stdout.splitlines() if x.startswith("evidence: ")).split(": ", 1)[1])
    records = [json.loads(x) for x in (run / "ledger.jsonl").read_text().splitlines()]
    assert [r["at"] for r in records if r["kind"] == "deadline-alarm"] == ["T+30m", "T+45m"]
    slot = next(r for r in records if r["kind"] == "slot")
    assert slot["slot"] == "T0" and slot["on_time"] is False  # 44 min late: recorded (local does not enforce)
    decision = next(r for r in records if r["kind"] == "decision")
    # late on the exact time (the record's minutes are rounded: 45.0 can be 45.04 minutes)
    assert decision["decision"] in ("go", "rollback") and decision["minutes_since_t0"] >= 45
    assert decision["on_time"] is False and decision["deadline_minutes"] == 45
    if decision["decision"] == "go":
        assert "past the deadline T+45m" in next(r for r in records if r.get("step_id") == "5.decision")["observed"]
