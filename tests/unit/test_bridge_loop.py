"""``cutover bridge``: the change's status on #launch-bridge between slots, to a real receiver on
loopback, driven by fake run folders and a fake clock (no real sleeping, no lab, no docker)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cutover_lib.runbook.bridge_loop import bridge_loop, change_closed
from cutover_lib.evidence.bridge_timeline import change_status
from cutover_lib.errors import Terminated, UsageError
from cutover_lib.config.params import load_environment, parse_overrides
from cutover_lib.engine.slots import slot_runs

T0 = datetime(2026, 11, 30, 14, 0, tzinfo=timezone.utc)
HOOK_ID = "hk5xq8w3b1c7d9e2"
RELEASE = "2025.09.2"


class Receiver(http.server.BaseHTTPRequestHandler):
    posts: list[dict[str, Any]] = []
    status = 200

    def log_message(self, *a: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Receiver.posts.append(json.loads(body))
        answer = b"ok" if Receiver.status == 200 else f"no such hook {self.path}".encode()
        self.send_response(Receiver.status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    Receiver.posts, Receiver.status = [], 200
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/hooks/{HOOK_ID}"
    monkeypatch.setenv("HOOK", url)
    try:
        yield url
    finally:
        srv.shutdown()
        srv.server_close()


OVERRIDES = ["bridge.webhook=env:HOOK", f"t0={T0:%Y-%m-%dT%H:%M:%SZ}", "bridge.retries=0", "bridge.timeout=2s"]


def environment(root: Path, *extra: str) -> Any:
    return load_environment("local", root / "params", parse_overrides([*OVERRIDES, *extra]))


def fake_run(root: Path, phase: str, outcome: str | None, started: datetime, *, minutes: int = 10,
             release: str = RELEASE, dry_run: bool = False, failed_not_blocking: tuple[str, ...] = ()) -> str:
    run_id = f"{started:%Y%m%dT%H%M%SZ}-local-{phase}"
    folder = root / "executed" / "local" / run_id
    folder.mkdir(parents=True)
    manifest = {"phase": phase, "release": release, "outcome": outcome, "started": started.isoformat(),
                "ended": None if outcome is None else (started + timedelta(minutes=minutes)).isoformat(),
                "sealed": outcome is not None, "dry_run": dry_run,
                **({"failed_not_blocking": list(failed_not_blocking)} if failed_not_blocking else {})}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return run_id


class Clock:
    """``now`` and ``sleep`` for the loop: sleeping moves the clock; ``on_sleep`` runs after each."""

    def __init__(self, t: datetime, on_sleep: Any = None) -> None:
        self.t, self.slept, self.on_sleep = t, [], on_sleep

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += timedelta(seconds=seconds)
        if self.on_sleep:
            self.on_sleep(len(self.slept))


def run_loop(root: Path, env: Any, clock: Clock, **kw: Any) -> tuple[int, list[str], list[str]]:
    out: list[str] = []
    err: list[str] = []
    code = bridge_loop(root, env, sleep=clock.sleep, now=clock.now, echo=out.append, warn=err.append, **kw)
    return code, out, err


def log_lines(root: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (root / "executed" / "local" / "bridge.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- the message (pure)

def test_change_status_names_last_and_next_slot_and_each_slot(project: Path) -> None:
    env = environment(project)
    t12 = fake_run(project, "t-12h", "passed", T0 - timedelta(hours=12), failed_not_blocking=("2.t-12h.ticket-logs",))
    fake_run(project, "t-24h", "passed", T0 - timedelta(hours=24))
    msg = change_status(env, slot_runs(project, env), T0 - timedelta(minutes=80), "RUN-X")
    assert msg.kind == "bridge-status"
    assert msg.text == (f":clock3: **local** change CHG-2025-1027-LAUNCH, release {RELEASE} — "
                        f"T0 2026-11-30 14:00 UTC (T-1h 20m): last: T-12h passed (1 failed, not blocking: "
                        f"2.t-12h.ticket-logs) ({t12}); next: T-30m at 13:30 UTC "
                        "(Final go/no-go with guild leads; confirm monitoring dashboards green.); running now: RUN-X")
    fields = {f["title"]: f["value"] for f in msg.attachments[0]["fields"]}
    assert fields["T-24h"] == "planned 14:00 — passed"
    assert fields["T-12h"] == "planned 02:00 — passed (1 failed, not blocking: 2.t-12h.ticket-logs)"
    assert fields["T-6h"] == "planned 08:00 — due"
    assert fields["T0"] == "planned 14:00 — not yet run"
    assert fields["Running now"] == "RUN-X"
    after = change_status(env, slot_runs(project, env), T0 + timedelta(minutes=35), None, closed="passed (T+4h x)")
    assert after.text.startswith(":checkered_flag: **local** change CHG-2025-1027-LAUNCH")
    assert "(T+0h 35m): change closed: passed (T+4h x); last: T-12h passed" in after.text


def test_change_closed_by_post_or_rollback_after_t0_only(project: Path) -> None:
    env = environment(project)
    fake_run(project, "post", "passed", T0 - timedelta(days=3))  # another day's rehearsal: not this change
    fake_run(project, "rollback", "passed", T0 - timedelta(days=2))
    fake_run(project, "rollback", "passed", T0 + timedelta(hours=1), dry_run=True)  # a plan
    assert change_closed(project, env, slot_runs(project, env)) is None
    rb = fake_run(project, "cutover", "rolled-back", T0 + timedelta(minutes=5), minutes=50)
    assert change_closed(project, env, slot_runs(project, env)) == f"rolled back (cutover {rb} rolled-back)"
    post = fake_run(project, "post", "passed", T0 + timedelta(hours=4))
    assert change_closed(project, env, slot_runs(project, env)) == f"passed (T+4h {post})"


# --------------------------------------------------------------------------- the loop

def test_once_posts_one_status_naming_last_and_next_slot(project: Path, hook: str) -> None:
    env = environment(project)
    t12 = fake_run(project, "t-12h", "passed", T0 - timedelta(hours=12))
    code, out, err = run_loop(project, env, Clock(T0 - timedelta(hours=2, minutes=10)), once=True)
    assert code == 0 and not err
    [post] = Receiver.posts
    assert post["channel"] == "launch-bridge" and post["username"] == "stellaops-cutover"
    assert f"last: T-12h passed ({t12}); next: T-2h at 12:00 UTC (Execute rehearsal" in post["text"]
    assert post["attachments"][0]["title"] == "local · change CHG-2025-1027-LAUNCH status"
    assert out[0].startswith("posted 11:50:00 UTC to #launch-bridge: **local** change CHG-2025-1027-LAUNCH")
    [rec] = log_lines(project)
    assert rec == {"ts": "2026-11-30T11:50:00.000Z", "kind": "bridge-status", "ok": True, "status": 200,
                   "attempts": 1, "error": None}


def test_loop_posts_every_interval_until_the_post_run_passes(project: Path, hook: str) -> None:
    env = environment(project)
    fake_run(project, "cutover", "passed", T0)
    holder: dict[str, str] = {}

    def at(n: int) -> None:  # the T+4h review passes during the third sleep
        if n == 3:
            holder["post"] = fake_run(project, "post", "passed", T0 + timedelta(hours=3, minutes=25))

    clock = Clock(T0 + timedelta(hours=3), at)
    code, out, err = run_loop(project, env, clock, every=timedelta(minutes=10))
    assert code == 0 and not err
    assert clock.slept == [600, 600, 600]
    texts = [p["text"] for p in Receiver.posts]
    assert len(texts) == 4
    assert all(t.startswith(":clock3:") and "change closed" not in t for t in texts[:3])
    assert texts[-1].startswith(":checkered_flag: **local**")
    assert f"change closed: passed (T+4h {holder['post']})" in texts[-1]
    assert out[-1] == f"change closed: passed (T+4h {holder['post']}); bridge updates end"
    assert [r["ts"][11:16] for r in log_lines(project)] == ["17:00", "17:10", "17:20", "17:30"]


def test_default_interval_is_bridge_heartbeat_and_until_stops_it(project: Path, hook: str) -> None:
    env = environment(project, "bridge.heartbeat=15m")
    clock = Clock(T0 - timedelta(minutes=20))
    code, out, _ = run_loop(project, env, clock, until=T0 + timedelta(minutes=20))
    assert code == 0
    assert clock.slept == [900, 900, 600]  # the last sleep ends at --until
    assert len(Receiver.posts) == 3
    assert out[-1] == "stopped: 2026-11-30 14:20 UTC has passed (the change window, or --until)"


def test_started_long_before_t_minus_30m_it_waits_unless_now(project: Path, hook: str) -> None:
    env = environment(project)
    clock = Clock(T0 - timedelta(hours=3))
    code, out, _ = run_loop(project, env, clock, until=T0 - timedelta(minutes=25), every=timedelta(minutes=10))
    assert code == 0
    assert out[0] == "waiting until T-30m (13:30 UTC) to post to #launch-bridge (--now: start now)"
    assert clock.slept == [9000, 300] and len(Receiver.posts) == 1
    assert "UTC (T-0h 30m): last: no slot run yet; next: T-30m at 13:30 UTC" in Receiver.posts[0]["text"]
    Receiver.posts.clear()
    clock = Clock(T0 - timedelta(hours=3))
    run_loop(project, env, clock, once=True, start_now=True)
    assert clock.slept == [] and "(T-3h 00m)" in Receiver.posts[0]["text"]


def test_running_now_names_the_run_holding_the_lock(project: Path, hook: str) -> None:
    env = environment(project)
    lock = project / "executed" / "local" / ".lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "user": "op",
                                "run_id": "20261130T140000Z-local-cutover", "since": "x"}))
    run_loop(project, env, Clock(T0 + timedelta(minutes=5)), once=True)
    assert Receiver.posts[0]["text"].endswith("; running now: 20261130T140000Z-local-cutover")
    assert json.loads(lock.read_text())["run_id"] == "20261130T140000Z-local-cutover"  # only read


def test_unset_webhook_is_a_usage_error(project: Path) -> None:
    env = environment(project, "bridge.webhook=null")
    with pytest.raises(UsageError, match="bridge.webhook is not set for local") as info:
        run_loop(project, env, Clock(T0), once=True)
    assert info.value.exit_code == 2 and "set bridge.webhook" in str(info.value.hint)
    assert not (project / "executed" / "local" / "bridge.jsonl").exists()


def test_dead_webhook_warns_and_the_loop_goes_on(project: Path, closed_port: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK", f"http://127.0.0.1:{closed_port}/hooks/{HOOK_ID}")
    env = environment(project)
    clock = Clock(T0 + timedelta(minutes=1))
    code, out, err = run_loop(project, env, clock, every=timedelta(minutes=10), until=T0 + timedelta(minutes=21))
    assert code == 0 and len(err) == 2 and out[-1].startswith("stopped:")
    assert err[0].startswith("warning: #launch-bridge not updated at 14:01:00 UTC (connection refused")
    assert err[0].endswith("trying again in 10m")
    recs = log_lines(project)
    assert len(recs) == 2 and not any(r["ok"] for r in recs)
    assert all(r["kind"] == "bridge-status" and r["status"] is None and "refused" in r["error"] for r in recs)


def test_bridge_jsonl_is_appended_never_rewritten_and_masked(project: Path, hook: str) -> None:
    env = environment(project)
    run_loop(project, env, Clock(T0), once=True)
    path = project / "executed" / "local" / "bridge.jsonl"
    first, inode = path.read_bytes(), path.stat().st_ino
    Receiver.status = 404  # the answer names the hook id: never in the record
    code, _, err = run_loop(project, env, Clock(T0 + timedelta(minutes=10)), once=True)
    assert code == 0 and len(err) == 1 and HOOK_ID not in err[0]
    assert path.stat().st_ino == inode and path.read_bytes().startswith(first)
    recs = log_lines(project)
    assert [r["ok"] for r in recs] == [True, False] and recs[1]["status"] == 404
    assert HOOK_ID not in path.read_text() and "***" in recs[1]["error"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("exc, code", [(KeyboardInterrupt(), 130), (Terminated(), 143)])
def test_ctrl_c_or_sigterm_stops_with_one_line(project: Path, hook: str, exc: BaseException, code: int) -> None:
    env = environment(project)
    clock = Clock(T0)

    def interrupted(seconds: float) -> None:
        raise exc

    clock.sleep = interrupted  # type: ignore[method-assign]
    rc, _, err = run_loop(project, env, clock)
    assert rc == code and err == ["bridge updates stopped"] and len(Receiver.posts) == 1


# --------------------------------------------------------------------------- the CLI

def cli(root: Path, *args: str) -> Any:
    from cutover_lib.cli.app import app

    t0 = (datetime.now(timezone.utc) + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")  # T-30m has passed
    return CliRunner().invoke(app, ["bridge", "--env", "local", "--root", str(root), "-p", "bridge.webhook=env:HOOK",
                                    "-p", f"t0={t0}", "-p", "bridge.retries=0", *args])


def test_cli_once_posts_and_records(project: Path, hook: str) -> None:
    t12 = fake_run(project, "t-12h", "passed", datetime.now(timezone.utc) - timedelta(hours=11))
    res = cli(project, "--once")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("posted ") and f"last: T-12h passed ({t12}); next: T-30m at " in res.stdout
    assert len(Receiver.posts) == 1 and len(log_lines(project)) == 1 and not res.stderr


def test_cli_until_in_the_past_stops_without_posting(project: Path, hook: str) -> None:
    res = cli(project, "--until", "2020-01-01T00:00:00Z", "--every", "1s")
    assert res.exit_code == 0, res.output
    assert res.stdout == "stopped: 2020-01-01 00:00 UTC has passed (the change window, or --until)\n"
    assert not Receiver.posts


@pytest.mark.parametrize("args, message", [
    (["-p", "bridge.webhook=null"], "error: bridge.webhook is not set for local: there is nowhere to post the status"),
    (["--every", "often"], "error: --every 'often' is not a duration"),
    (["--every", "0s"], "error: --every must be longer than 0"),
    (["--until", "tomorrow"], "error: --until 'tomorrow' is not a UTC time"),
])
def test_cli_usage_errors_are_one_line_exit_2(project: Path, hook: str, args: list[str], message: str) -> None:
    res = cli(project, "--once", *args)
    assert res.exit_code == 2 and res.stdout == ""
    [line] = res.stderr.splitlines()
    assert line.startswith(message) and "(" in line  # the fix hint on the same line
    assert not Receiver.posts


def test_cli_ctrl_c_exits_130_with_one_line(project: Path, hook: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    assert bridge_loop.__kwdefaults__ is not None
    monkeypatch.setitem(bridge_loop.__kwdefaults__, "sleep", interrupted)  # the CLI sleeps with the default
    res = cli(project, "--every", "10m")
    assert res.exit_code == 130 and res.stderr == "bridge updates stopped\n" and len(Receiver.posts) == 1
