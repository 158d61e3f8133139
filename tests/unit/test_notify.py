"""#launch-bridge: the Mattermost incoming-webhook client, message builders and heartbeat.

Posts go to a REAL HTTP receiver on loopback (stdlib ThreadingHTTPServer in a thread) that
records every request and answers from a per-test script; Mattermost itself is what this
receiver stands in for.  One test also posts to the lab's notify stand-in (``POST /hooks/<id>``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.adapters.notify import (COLORS, Bridge, Heartbeat, PostResult, gate_decision, heartbeat, ledger_status,
                                 phase_finished, phase_started, record_result, step_failed)
from cutover_lib.config.models import Bridge as BridgeParams
from cutover_lib.config.schema import build
from cutover_lib.config.params import Environment, load_environment

REPO = Path(__file__).resolve().parents[2]
TOKEN = "canaryhooktoken7f3c9e1d2b"


class Receiver:
    """Records posts; answers each from ``script`` (status, body, headers, delay) then 200 ``ok``."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.script: list[tuple[int, str, dict[str, str], float]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib naming
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.posts.append({"path": self.path, "headers": dict(self.headers),
                                           "json": json.loads(raw or b"null")})
                    status, body, headers, delay = (receiver.script.pop(0) if receiver.script
                                                    else (200, "ok", {}, 0.0))
                if delay:
                    time.sleep(delay)
                data = body.encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{TOKEN}"

    def respond(self, *items: tuple[int, str, dict[str, str], float]) -> None:
        self.script.extend(items)


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()


def build_params(data: dict[str, Any]) -> BridgeParams:
    return build(data, BridgeParams)


def params(monkeypatch: pytest.MonkeyPatch, url: str | None, **kw: Any) -> BridgeParams:
    data: dict[str, Any] = {"timeout": "2s", "retries": 3, "heartbeat": "10m", **kw}
    if url is not None:
        monkeypatch.setenv("TEST_BRIDGE_WEBHOOK", url)
        data["webhook"] = "env:TEST_BRIDGE_WEBHOOK"
    return build_params(data)


def fast(cfg: BridgeParams, **kw: Any) -> Bridge:
    return Bridge(cfg, backoff=0.01, max_backoff=0.05, **kw)


@pytest.fixture(scope="module")
def env() -> Environment:
    return load_environment("local", REPO / "params")


# --------------------------------------------------------------------------- posting

def test_payload_shape_is_mattermost_incoming_webhook(receiver: Receiver, env: Environment,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = fast(params(monkeypatch, receiver.url, channel="launch-bridge", username="stellaops-cutover"))
    res = bridge.send(phase_started(env, "cutover", "20260115T140000Z-local-cutover", dry_run=True))
    assert res == PostResult(True, 1, 200, None, "phase-start", res.elapsed_s)
    (post,) = receiver.posts
    assert post["path"] == f"/hooks/{TOKEN}"
    assert post["headers"]["Content-Type"] == "application/json"
    body = post["json"]
    assert set(body) == {"text", "username", "channel", "attachments"}
    assert body["username"] == "stellaops-cutover" and body["channel"] == "launch-bridge"
    assert "**cutover** started on **local**" in body["text"] and "DRY RUN" in body["text"]
    (att,) = body["attachments"]
    assert set(att) == {"fallback", "color", "title", "text", "fields"}
    assert att["color"] == COLORS["planned"]
    assert all(set(f) == {"short", "title", "value"} for f in att["fields"])
    assert {"title": "Run", "value": "20260115T140000Z-local-cutover", "short": False} in att["fields"]


def test_plain_text_post_has_no_attachments_key(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    assert fast(params(monkeypatch, receiver.url)).post("hello bridge").ok
    assert receiver.posts[0]["json"] == {"text": "hello bridge", "username": "stellaops-cutover",
                                         "channel": "launch-bridge"}


def test_retries_5xx_then_succeeds(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver.respond((503, "busy", {}, 0), (503, "busy", {}, 0))
    res = fast(params(monkeypatch, receiver.url, retries=3)).post("x", kind="note")
    assert (res.ok, res.attempts, res.status) == (True, 3, 200)
    assert len(receiver.posts) == 3


def test_gives_up_after_retries_without_raising(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver.respond(*[(502, "bad gateway", {}, 0)] * 5)
    res = fast(params(monkeypatch, receiver.url, retries=2)).post("x")
    assert (res.ok, res.attempts, res.status) == (False, 3, 502)
    assert res.error == "HTTP 502: bad gateway (after 3 attempt(s))"
    assert len(receiver.posts) == 3


def test_no_retry_on_400(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver.respond((400, "No text specified", {}, 0))
    res = fast(params(monkeypatch, receiver.url, retries=3)).post("x")
    assert (res.ok, res.attempts, res.status) == (False, 1, 400)
    assert res.error == "HTTP 400: No text specified"
    assert len(receiver.posts) == 1


def test_429_honours_retry_after_capped(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver.respond((429, "slow down", {"Retry-After": "120"}, 0), (429, "", {"Retry-After": "0"}, 0))
    slept: list[float] = []
    bridge = Bridge(params(monkeypatch, receiver.url), max_retry_after=0.2, sleep=slept.append)
    res = bridge.post("x")
    assert (res.ok, res.attempts) == (True, 3)
    assert slept == [0.2, 0.0]


def test_backoff_is_exponential_with_small_jitter(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver.respond(*[(500, "", {}, 0)] * 4)
    slept: list[float] = []
    res = Bridge(params(monkeypatch, receiver.url, retries=3), backoff=0.5, max_backoff=1.5,
                 sleep=slept.append).post("x")
    assert not res.ok and res.attempts == 4
    for got, base in zip(slept, (0.5, 1.0, 1.5)):
        assert base <= got <= base * 1.1


def test_timeout_is_retried_and_reported(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver.respond((200, "ok", {}, 1.0), (200, "ok", {}, 1.0))
    t0 = time.monotonic()
    res = fast(params(monkeypatch, receiver.url, timeout="300ms", retries=1)).post("x")
    took = time.monotonic() - t0
    assert (res.ok, res.attempts, res.status) == (False, 2, None)
    assert res.error is not None and res.error.startswith("no answer within 0.3s")
    assert took < 1.5


def test_dead_webhook_fails_quickly_and_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    closed_port: int) -> None:
    run = RunFolder.create(tmp_path / "executed", "local", "cutover")
    url = f"http://127.0.0.1:{closed_port}/hooks/{TOKEN}"
    t0 = time.monotonic()
    res = fast(params(monkeypatch, url, retries=2), run=run).post("x", kind="phase-start")
    assert time.monotonic() - t0 < 2
    assert (res.ok, res.attempts, res.status) == (False, 3, None)
    assert res.error == "connection refused (after 3 attempt(s))"
    (rec,) = [r for r in run.read_ledger() if r["kind"] == "bridge"]
    assert {k: rec[k] for k in ("event", "ok", "attempts", "status", "error", "channel")} == {
        "event": "phase-start", "ok": False, "attempts": 3, "status": None,
        "error": "connection refused (after 3 attempt(s))", "channel": "launch-bridge"}


def test_no_webhook_configured_makes_no_request(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    res = Bridge(params(monkeypatch, None), transport=httpx.MockTransport(boom)).post("x")
    assert res == PostResult(False, 0, None, "no webhook configured", "note", 0.0)


def test_unresolvable_webhook_is_a_result_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_WEBHOOK", raising=False)
    cfg = build_params({"webhook": "env:NOPE_WEBHOOK"})
    res = Bridge(cfg).post("x")
    assert not res.ok and res.attempts == 0
    assert res.error is not None and "NOPE_WEBHOOK is not set" in res.error


def test_unexpected_error_never_raises(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError(f"transport exploded at {request.url}")

    res = fast(params(monkeypatch, receiver.url), transport=httpx.MockTransport(broken)).post("x")
    assert not res.ok and res.error is not None and "RuntimeError" in res.error
    assert TOKEN not in res.error


def test_canary_webhook_token_never_in_results_or_ledger(closed_port: int, receiver: Receiver, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook URL (with its secret id) is masked even when the server echoes it back."""
    run = RunFolder.create(tmp_path / "executed", "local", "cutover")
    receiver.respond(*[(500, f"upstream error for {receiver.url} ({TOKEN})", {}, 0)] * 2,
                     (404, f"unknown hook {TOKEN}", {}, 0))
    bridge = fast(params(monkeypatch, receiver.url, retries=1), run=run)
    results = [bridge.post(f"posting to {receiver.url}"), bridge.post("second")]
    dead = fast(params(monkeypatch, f"http://127.0.0.1:{closed_port}/hooks/{TOKEN}x", retries=0), run=run)
    results.append(dead.post("third"))
    assert [r.ok for r in results] == [False, False, False]
    blob = repr(results) + run.ledger_path.read_text()
    assert TOKEN not in blob and receiver.url not in blob
    assert "***" in results[0].error  # type: ignore[operator]
    # what went out on the wire is masked too: a message never carries the secret
    assert TOKEN not in json.dumps([p["json"] for p in receiver.posts])


# --------------------------------------------------------------------------- heartbeat

def test_heartbeat_posts_on_cadence_and_stops_promptly(receiver: Receiver, env: Environment, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    run = RunFolder.create(tmp_path / "executed", "local", "cutover")
    calls: list[int] = []

    def status() -> tuple[str | None, dict[str, int]]:
        calls.append(1)
        return "4.1.backup-mongo", {"passed": len(calls), "failed": 0}

    bridge = fast(params(monkeypatch, receiver.url))
    with Heartbeat(bridge, env, "cutover", run.run_id, status, interval=0.4, run=run) as hb:
        deadline = time.monotonic() + 20  # (posts every 0.4 s; a busy machine may be slower)
        while len(receiver.posts) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    n = len(receiver.posts)
    assert n >= 3 and all(r.ok for r in hb.results)
    time.sleep(1.0)
    assert len(receiver.posts) == n  # stopped: no more posts
    # stopping does not wait out the interval (30 s here: a stop that waited would take ~30 s)
    with Heartbeat(bridge, env, "cutover", run.run_id, status, interval=30, run=run):
        time.sleep(0.3)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 5 and len(receiver.posts) == n
    body = receiver.posts[0]["json"]
    assert "now: 4.1.backup-mongo" in body["text"] and "passed 1" in body["text"]
    assert body["attachments"][0]["color"] == COLORS["planned"]
    recs = [r for r in run.read_ledger() if r["kind"] == "bridge"]
    assert len(recs) == n and {r["event"] for r in recs} == {"heartbeat"}


def test_heartbeat_survives_a_broken_status_fn_and_a_dead_bridge(closed_port: int, env: Environment,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> tuple[str | None, dict[str, int]]:
        raise KeyError("nope")

    bridge = fast(params(monkeypatch, f"http://127.0.0.1:{closed_port}/hooks/{TOKEN}", retries=0))
    hb = Heartbeat(bridge, env, "cutover", "rid", broken, interval=0.2).start()
    deadline = time.monotonic() + 10  # on a busy machine a refused connect can take a while
    while len(hb.results) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    hb.stop()
    assert len(hb.results) >= 2 and not any(r.ok for r in hb.results)


def test_heartbeat_default_interval_is_bridge_heartbeat(env: Environment, monkeypatch: pytest.MonkeyPatch) -> None:
    hb = Heartbeat(Bridge(params(monkeypatch, None, heartbeat="10m")), env, "cutover", "rid", lambda: (None, {}))
    assert hb.interval == 600.0
    hb.stop()  # stopping a heartbeat that never started is fine


def test_ledger_status(tmp_path: Path) -> None:
    run = RunFolder.create(tmp_path / "executed", "local", "cutover")
    assert ledger_status(run) == (None, {})
    run.append({"kind": "notebook-start", "notebook": "04_preflight.ipynb"})
    run.append({"kind": "step", "step_id": "4.1.secrets", "outcome": "passed"})
    run.append({"kind": "intent", "step_id": "4.1.backup-mongo"})
    assert ledger_status(run) == ("4.1.backup-mongo", {"passed": 1})
    run.append({"kind": "step", "step_id": "4.1.backup-mongo", "outcome": "failed"})
    assert ledger_status(run) == (None, {"passed": 1, "failed": 1})


def test_record_result_shape(tmp_path: Path) -> None:
    run = RunFolder.create(tmp_path / "executed", "local", "cutover")
    rec = record_result(run, PostResult(True, 2, 200, None, "gate", 0.1234))
    assert {k: rec[k] for k in ("kind", "event", "ok", "attempts", "status", "error", "elapsed_s")} == {
        "kind": "bridge", "event": "gate", "ok": True, "attempts": 2, "status": 200, "error": None,
        "elapsed_s": 0.123}


# --------------------------------------------------------------------------- builders (pure)

def test_phase_finished(env: Environment) -> None:
    msg = phase_finished(env, "cutover", "rid", "failed", "5.smoke-scan failed",
                         {"passed": 12, "failed": 1, "skipped": 0}, "executed/local/rid/html/index.html")
    assert msg.kind == "phase-end"
    assert msg.text == ":x: **cutover** on **local** failed: 5.smoke-scan failed"
    (att,) = msg.attachments
    assert att["color"] == COLORS["failed"]
    titles = [f["title"] for f in att["fields"]]
    assert titles == ["Passed", "Failed", "Run", "Evidence"]
    assert phase_finished(env, "cutover", "r", "passed", "", {"passed": 3}, "i").attachments[0]["color"] == \
        COLORS["passed"]


def test_gate_decisions() -> None:
    approval = {"kind": "approval", "gate": "t0", "gate_title": "Cutover start (T0)", "role": "devops-lead",
                "name": "Dana Ops", "record": "CHG-1", "at": "2026-01-15T13:55:00Z"}
    msg = gate_decision(approval)
    assert msg.kind == "gate" and msg.attachments[0]["color"] == COLORS["passed"]
    assert "approved by Dana Ops (devops-lead), recorded in CHG-1" in msg.text
    rej = gate_decision({**approval, "kind": "rejection", "comment": "dashboards red"})
    assert rej.attachments[0]["color"] == COLORS["failed"] and "dashboards red" in rej.text
    waiver = gate_decision({"kind": "waiver", "gate": "t0", "missing": ["module-reps"],
                            "reason": "--waive t0 in local"})
    assert waiver.attachments[0]["color"] == COLORS["waived"] and "missing module-reps" in waiver.text
    blocked = gate_decision({"kind": "step", "step_id": "4.gate-t0", "title": "Gate: Cutover start (T0)",
                             "outcome": "failed", "message": "gate t0 lacks approval from module-reps"})
    assert blocked.attachments[0]["color"] == COLORS["failed"]
    assert "(t0) BLOCKED: gate t0 lacks approval from module-reps" in blocked.text


def test_step_failed() -> None:
    rec = {"kind": "step", "step_id": "4.1.backup-mongo", "title": "Mongo snapshot (mongodump)", "owner": "Storage",
           "expect": "a snapshot folder with at least one non-empty data file", "outcome": "failed",
           "message": "expected a snapshot ...; observed every .bson file is empty", "duration_s": 3.21,
           "command": 'mongodump --uri "$MONGO_BACKUP_URI" --out /backups/launch-x', "artifacts": ["artifacts/a.log"]}
    msg = step_failed(rec)
    assert msg.text == ":x: Step `4.1.backup-mongo` Mongo snapshot (mongodump) failed (owner: Storage)"
    (att,) = msg.attachments
    fields = {f["title"]: f["value"] for f in att["fields"]}
    assert fields["Expected"] == rec["expect"] and fields["Observed"] == rec["message"]
    assert fields["Duration"] == "3.2 s" and fields["Artifacts"] == "artifacts/a.log"
    assert att["color"] == COLORS["failed"] and att["fallback"].startswith("4.1.backup-mongo")


def test_heartbeat_message(env: Environment) -> None:
    msg = heartbeat(env, "cutover", "rid", 725, None, {"passed": 4, "waived": 1})
    assert msg.text == (":hourglass_flowing_sand: **cutover** on **local** running for 12m 05s; "
                        "now: between steps; passed 4 · waived 1")
    assert msg.attachments[0]["color"] == COLORS["waived"]
    assert heartbeat(env, "c", "r", 3700, "5.x", {"failed": 1}).attachments[0]["color"] == COLORS["failed"]
    assert "1h 01m" in heartbeat(env, "c", "r", 3700, "5.x", {}).text


# --------------------------------------------------------------------------- the lab's stand-in

@pytest.mark.lab
def test_post_to_lab_notify_standin(tmp_path: Path, env: Environment, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end against the lab's Mattermost stand-in, read back at GET /hooks/<id>/posts."""
    from stellaops_lab import SERVICES, LabConfig, down, up

    socks = [socket.socket() for _ in SERVICES]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = {name: s.getsockname()[1] for name, s in zip(SERVICES, socks)}
    for s in socks:
        s.close()
    config = LabConfig(tmp_path / "lab", ports=ports)
    up(config)
    try:
        url = (config.data_dir / "secrets" / "stellaops-prod-notify" / "webhook-url").read_text().strip()
        bridge = fast(params(monkeypatch, url))
        assert bridge.send(phase_started(env, "cutover", "rid", False)).ok
        empty = bridge.post("")  # the stand-in answers like Mattermost: 400 "No text specified", not retried
        assert (empty.ok, empty.status, empty.attempts) == (False, 400, 1)
        posts = httpx.get(url + "/posts", timeout=5).json()["posts"]
        assert len(posts) == 1 and posts[0]["channel"] == "launch-bridge"
        assert posts[0]["attachments"][0]["color"] == COLORS["planned"]
    finally:
        down(config)


# --------------------------------------------------------------------------- rb.bridge: a message in a cell
def _runbook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, **kw: Any):
    from cutover_lib.config.params import parse_overrides
    from cutover_lib.engine.steps import Runbook

    monkeypatch.setenv("TEST_BRIDGE_WEBHOOK", url)
    env = load_environment("local", REPO / "params", parse_overrides(
        ["bridge.webhook=env:TEST_BRIDGE_WEBHOOK", "bridge.retries=1", "bridge.timeout=2s"]))
    return Runbook(env, RunFolder.create(tmp_path / "executed", "local", "t"), root=REPO, notebook="nb.ipynb", **kw)


def _steps(rb: Any) -> list[dict[str, Any]]:
    return [r for r in rb.run.read_ledger() if r.get("kind") == "step"]


def test_rb_bridge_posts_the_cells_message_filled_from_params(receiver: Receiver, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    rb = _runbook(tmp_path, monkeypatch, receiver.url)
    rb.bridge("2.t-6h.freeze", ":snowflake: freeze for {name} until the {release} cutover ({change_ticket}) by {who}",
              vars={"who": "the product owner"}, owner="Product owner")
    text = f":snowflake: freeze for local until the {rb.env.release} cutover ({rb.env.change_ticket}) by the product owner"
    assert [p["json"]["text"] for p in receiver.posts] == [text]
    assert receiver.posts[0]["json"]["channel"] == rb.env.bridge.channel
    (step,) = _steps(rb)
    assert step["outcome"] == "passed" and step["mutating"] is True and step["owner"] == "Product owner"
    assert step["command"] == f"POST #{rb.env.bridge.channel}: {text}"
    assert step["observed"].startswith(f"posted to #{rb.env.bridge.channel} (HTTP 200, 1 attempt(s))")
    assert step["data"]["bridge"] == {"ok": True, "attempts": 1, "status": 200}
    assert TOKEN not in (rb.run.path / "ledger.jsonl").read_text()


def test_rb_bridge_in_a_plan_posts_nothing_and_a_refused_post_fails_the_step(receiver: Receiver, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    planned = _runbook(tmp_path / "plan", monkeypatch, receiver.url, dry_run=True)
    planned.bridge("1.bridge", "bridge check for {change_ticket}")
    assert receiver.posts == [] and _steps(planned)[0]["outcome"] == "planned"
    receiver.respond((400, "no such channel", {}, 0.0))
    rb = _runbook(tmp_path / "run", monkeypatch, receiver.url)
    with pytest.raises(Exception, match=r"post to #\S+ failed after 1 attempt\(s\)"):
        rb.bridge("1.bridge", "bridge check for {change_ticket}")
    assert _steps(rb)[0]["outcome"] == "failed"


def test_rb_bridge_with_an_unknown_params_key_fails_before_posting(receiver: Receiver, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rb = _runbook(tmp_path, monkeypatch, receiver.url)
    with pytest.raises(Exception, match="no_such_key"):
        rb.bridge("1.bridge", "bridge check for {no_such_key}")
    assert receiver.posts == [] and _steps(rb)[0]["outcome"] == "failed"


def test_rb_bridge_never_posts_a_secret_reference(receiver: Receiver, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rb = _runbook(tmp_path, monkeypatch, receiver.url)
    with pytest.raises(Exception, match="a secret never goes into a command line, URL or message") as err:
        rb.bridge("1.bridge", "the webhook is {bridge.webhook}")
    assert "a message or invite never holds one" in err.value.hint
    assert receiver.posts == [] and _steps(rb)[0]["outcome"] == "failed"
    assert TOKEN not in (rb.run.path / "ledger.jsonl").read_text()
