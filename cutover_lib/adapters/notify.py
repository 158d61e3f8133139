"""#launch-bridge: posts to a Mattermost incoming webhook, the messages, and the heartbeat.

Section 1 of the runbook: "keep #launch-bridge updated every 10 minutes".  Three parts:

* :class:`Bridge` posts one message in Mattermost's incoming-webhook format (``text``,
  ``username``, ``channel``, ``attachments`` with ``fallback``/``color``/``title``/``text``/
  ``fields``).  It retries connection errors, timeouts, 5xx and 429 with exponential backoff
  (honouring ``Retry-After``, capped), never retries other 4xx, and **never raises**: a dead
  bridge must not fail a cutover, so the outcome is a :class:`PostResult` the caller records.
  The webhook URL is a secret reference resolved at use; it (and its hook id) is registered
  with the masker and never appears in a result, a message or the evidence.
* Pure message builders -- :func:`phase_started`, :func:`phase_finished`,
  :func:`gate_decision`, :func:`step_failed`, :func:`heartbeat` -- returning a :class:`Message`.
  Colours follow the step outcomes: passed green, failed red, planned blue, waived amber.
* :class:`Heartbeat`: a background thread *in the runner process* posting a heartbeat every
  ``bridge.heartbeat``; :func:`record_result` puts each post's outcome in the run's ledger.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..config.durations import spoken_duration
from ..config.models import Bridge as BridgeParams
from ..config.params import Environment
from ..config.secrets import mask, mask_obj, register_secret
from ..errors import CutoverError
from ..evidence.evidence import RunFolder
from .http import tls_context

__all__ = [
    "COLORS",
    "Bridge",
    "Heartbeat",
    "Message",
    "PostResult",
    "gate_decision",
    "heartbeat",
    "ledger_status",
    "phase_finished",
    "phase_started",
    "record_result",
    "step_failed",
]

COLORS = {"passed": "#1a7f37", "failed": "#cf222e", "planned": "#0969da", "waived": "#9a6700",
          "skipped": "#6e7781"}
_ORDER = ("passed", "failed", "waived", "skipped", "planned")
_EMOJI = {"passed": ":white_check_mark:", "failed": ":x:", "planned": ":memo:", "waived": ":warning:"}


@dataclass(frozen=True)
class PostResult:
    """What happened to one post.  ``error`` is one masked line; ``status`` the last HTTP status."""

    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None
    kind: str = "note"
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class Message:
    """A bridge message: the channel text, Mattermost attachments, and what kind of event it is."""

    text: str
    attachments: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "note"


# --------------------------------------------------------------------------- builders (pure)

def _fields(*rows: tuple[str, Any, bool]) -> list[dict[str, Any]]:
    return [{"short": short, "title": title, "value": str(value)} for title, value, short in rows
            if value not in (None, "")]


def _attachment(title: str, text: str, outcome: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"fallback": f"{title}: {text}" if text else title, "color": COLORS.get(outcome, COLORS["skipped"]),
            "title": title, "text": text, "fields": fields}


def _counts_line(counts: dict[str, int]) -> str:
    keys = [k for k in _ORDER if counts.get(k)] + sorted(k for k in counts if k not in _ORDER and counts[k])
    return " · ".join(f"{k} {counts[k]}" for k in keys) or "no steps yet"


def _elapsed(seconds: float) -> str:
    return spoken_duration(timedelta(seconds=max(seconds, 0)))


def phase_started(env: Environment, phase: str, run_id: str, dry_run: bool) -> Message:
    mode = "dry run -- nothing is changed" if dry_run else "live"
    text = (f":arrow_forward: **{phase}** started on **{env.name}** -- release {env.release}, "
            f"change {env.change_ticket}{' (DRY RUN)' if dry_run else ''}")
    att = _attachment(f"{env.name} · {phase} started", f"run {run_id}", "planned", _fields(
        ("Environment", f"{env.name} ({env.tier})", True), ("Phase", phase, True),
        ("Release", f"{env.previous_release} -> {env.release}", True), ("Mode", mode, True),
        ("Change ticket", env.change_ticket, True), ("T0", env.t0.strftime("%Y-%m-%dT%H:%M:%SZ"), True),
        ("Run", run_id, False)))
    return Message(text, [att], "phase-start")


def phase_finished(env: Environment, phase: str, run_id: str, outcome: str, message: str,
                   steps_summary: dict[str, int], index_path: str) -> Message:
    emoji = _EMOJI.get(outcome, ":information_source:")
    text = f"{emoji} **{phase}** on **{env.name}** {outcome}" + (f": {message}" if message else "")
    rows = [(k.capitalize(), steps_summary[k], True) for k in _ORDER if steps_summary.get(k)]
    att = _attachment(f"{env.name} · {phase} {outcome}", message, outcome, _fields(
        *rows, ("Run", run_id, False), ("Evidence", index_path, False)))
    return Message(text, [att], "phase-end")


def gate_decision(record: dict[str, Any]) -> Message:
    """An approval, rejection or waiver record, or a gate step's record (passed / blocked)."""
    kind = record.get("kind", "")
    gate = record.get("gate") or str(record.get("step_id", "")).rsplit(".gate-", 1)[-1]
    title = record.get("gate_title") or record.get("title") or f"gate {gate}"
    if kind == "approval":
        outcome = "passed"
        text = (f":ballot_box_with_check: Gate **{title}** ({gate}): approved by {record.get('name')} "
                f"({record.get('role')}), recorded in {record.get('record')}")
    elif kind == "rejection":
        outcome = "failed"
        text = (f":no_entry: Gate **{title}** ({gate}): rejected by {record.get('name')} ({record.get('role')})"
                f"{': ' + record['comment'] if record.get('comment') else ''}")
    elif kind == "waiver":
        outcome = "waived"
        missing = ", ".join(record.get("missing") or []) or "-"
        text = f":warning: Gate **{title}** ({gate}) waived: missing {missing}; {record.get('reason', '')}".rstrip("; ")
    else:  # a gate step record, or a gate-blocked record
        outcome = record.get("outcome") or ("failed" if "blocked" in kind else "planned")
        what = {"passed": "passed", "failed": "BLOCKED", "waived": "waived", "planned": "planned"}.get(outcome, outcome)
        detail = record.get("message") or record.get("observed") or ""
        text = f"{_EMOJI.get(outcome, ':information_source:')} Gate **{title}** ({gate}) {what}" + (
            f": {detail}" if detail else "")
    att = _attachment(f"Gate {gate}: {title}", text.split(": ", 1)[-1], outcome, _fields(
        ("Role", record.get("role"), True), ("Approver", record.get("name"), True),
        ("Record", record.get("record"), True), ("At", record.get("at") or record.get("ended"), True),
        ("Missing", ", ".join(record.get("missing") or []), False), ("By", record.get("by"), True)))
    return Message(text, [att], "gate")


def step_failed(record: dict[str, Any]) -> Message:
    """A failed step from the ledger: what was expected and what was observed, who owns it."""
    sid, title = record.get("step_id", "?"), record.get("title", "")
    problem = record.get("message") or record.get("observed") or "failed"
    text = f":x: Step `{sid}` {title} failed (owner: {record.get('owner', '-')})"
    att = _attachment(f"{sid} {title}", problem, "failed", _fields(
        ("Owner", record.get("owner"), True), ("Notebook", record.get("notebook"), True),
        ("Expected", record.get("expect"), False), ("Observed", problem, False),
        ("Command", record.get("command"), False), ("Started", record.get("started"), True),
        ("Duration", f"{record['duration_s']:.1f} s" if "duration_s" in record else None, True),
        ("Artifacts", ", ".join(record.get("artifacts") or []), False)))
    return Message(text, [att], "step-failed")


def heartbeat(env: Environment, phase: str, run_id: str, elapsed_s: float, current_step: str | None,
              counts: dict[str, int], ledger_head: str | None = None) -> Message:
    outcome = "failed" if counts.get("failed") else "waived" if counts.get("waived") else "planned"
    now = current_step or "between steps"
    text = (f":hourglass_flowing_sand: **{phase}** on **{env.name}** running for {_elapsed(elapsed_s)}; "
            f"now: {now}; {_counts_line(counts)}")
    att = _attachment(f"{env.name} · {phase} heartbeat", f"now: {now}", outcome, _fields(
        ("Elapsed", _elapsed(elapsed_s), True), ("Current step", now, True),
        ("Steps", _counts_line(counts), False), ("Run", run_id, False),
        ("Ledger head", ledger_head, False)))  # an anchor outside the run folder: a rewrite shows
    return Message(text, [att], "heartbeat")


def sealed(env: Environment, phase: str, run_id: str, outcome: str, signed: dict[str, Any]) -> Message:
    """The seal where the run folder's owner cannot rewrite it (ledger head, records, key)."""
    head, records, key = str(signed.get("ledger_head")), signed.get("ledger_records"), str(signed.get("keyid"))
    text = (f":lock: **{phase}** on **{env.name}** sealed ({outcome}): ledger head `{head}`, {records} records, "
            f"key `{key}`")
    att = _attachment(f"{env.name} · {phase} sealed", f"ledger head {head[:16]}…", outcome, _fields(
        ("Run", run_id, False), ("Ledger head", head, False), ("Records", records, True), ("Key", key, False),
        ("Manifest sha256", signed.get("manifest_sha256"), False)))
    return Message(text, [att], "sealed")


# --------------------------------------------------------------------------- posting

def _retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(seconds, 0.0), cap)


def _hide_url(url: str) -> None:
    """Register the webhook URL and its hook id (the secret part) with the masker."""
    register_secret(url)
    hook = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    if len(hook) >= 8:
        register_secret(hook)


class Bridge:
    """Posts to #launch-bridge; built from ``Environment.bridge``.  ``run``: record every post."""

    def __init__(self, config: BridgeParams, *, run: RunFolder | None = None,
                 transport: httpx.BaseTransport | None = None, verify: bool = True, backoff: float = 0.5,
                 max_backoff: float = 8.0, max_retry_after: float = 15.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.run = run
        self.transport = transport
        self.verify = verify
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.sleep = sleep

    def payload(self, text: str, attachments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The incoming-webhook JSON body (masked: a message never carries a resolved secret)."""
        body: dict[str, Any] = {"text": text, "username": self.config.username, "channel": self.config.channel}
        if attachments:
            body["attachments"] = attachments
        return mask_obj(body)  # type: ignore[no-any-return]

    def send(self, message: Message) -> PostResult:
        return self.post(message.text, attachments=message.attachments, kind=message.kind)

    def post(self, text: str, *, attachments: list[dict[str, Any]] | None = None, kind: str = "note") -> PostResult:
        """Post once, with retries; never raises (the outcome is in the result)."""
        try:
            result = self._post(text, attachments, kind)
        except Exception as exc:  # noqa: BLE001 - a failing bridge never fails the cutover
            result = PostResult(False, 0, None, mask(f"unexpected {type(exc).__name__}: {exc}"), kind)
        if self.run is not None:
            try:
                record_result(self.run, result, kind, channel=self.config.channel)
            except CutoverError:
                pass  # the step that posted records its own outcome; evidence errors surface there
        return result

    def _delay(self, attempt: int) -> float:
        base = min(self.backoff * (2 ** (attempt - 1)), self.max_backoff)
        return base + base * 0.1 * random.random()

    def _post(self, text: str, attachments: list[dict[str, Any]] | None, kind: str) -> PostResult:
        if self.config.webhook is None:
            return PostResult(False, 0, None, "no webhook configured", kind)
        started = time.monotonic()
        try:
            url = self.config.webhook.resolve()
            _hide_url(url)
        except CutoverError as exc:
            return PostResult(False, 0, None, mask(exc.one_line()), kind)
        body = self.payload(text, attachments)
        timeout = self.config.timeout.total_seconds()
        tries = self.config.retries + 1
        status: int | None = None
        error = ""
        with httpx.Client(timeout=timeout, verify=tls_context(self.verify), transport=self.transport,
                          follow_redirects=False, headers={"User-Agent": "stellaops-cutover"}) as client:
            for attempt in range(1, tries + 1):
                wait: float | None = None
                try:
                    resp = client.post(url, json=body)
                except httpx.UnsupportedProtocol:
                    return PostResult(False, attempt, None, "the webhook URL is not http(s)", kind,
                                      time.monotonic() - started)
                except httpx.TimeoutException as exc:
                    status, error = None, f"no answer within {timeout:g}s ({type(exc).__name__})"
                except httpx.TransportError as exc:
                    low = str(exc).lower()
                    status = None
                    error = "connection refused" if "refused" in low else mask(f"cannot connect: {exc}")[:160]
                else:
                    status = resp.status_code
                    if 200 <= status < 300:
                        return PostResult(True, attempt, status, None, kind, time.monotonic() - started)
                    snippet = mask(resp.text[:160]).replace("\n", " ").strip()
                    error = f"HTTP {status}" + (f": {snippet}" if snippet else "")
                    if status != 429 and status < 500:
                        return PostResult(False, attempt, status, error, kind, time.monotonic() - started)
                    wait = _retry_after(resp.headers.get("Retry-After"), self.max_retry_after)
                if attempt < tries:
                    self.sleep(wait if wait is not None else self._delay(attempt))
        return PostResult(False, tries, status, f"{error} (after {tries} attempt(s))", kind,
                          time.monotonic() - started)


def record_result(run: RunFolder, result: PostResult, kind: str | None = None, *,
                  channel: str | None = None) -> dict[str, Any]:
    """Append the post's outcome to the run's ledger (a failing webhook is evidence too)."""
    rec: dict[str, Any] = {"kind": "bridge", "event": kind or result.kind, "ok": result.ok,
                           "attempts": result.attempts, "status": result.status, "error": result.error,
                           "elapsed_s": round(result.elapsed_s, 3)}
    if channel:
        rec["channel"] = channel
    return run.append(rec)


# --------------------------------------------------------------------------- heartbeat

def ledger_status(run: RunFolder) -> tuple[str | None, dict[str, int]]:
    """(current step, outcome counts) from a run's ledger: a ``status_fn`` for :class:`Heartbeat`."""
    counts: dict[str, int] = {}
    current: str | None = None
    for rec in run.read_ledger():
        kind = rec.get("kind")
        if kind == "step":
            counts[rec["outcome"]] = counts.get(rec["outcome"], 0) + 1
            if rec.get("step_id") == current:
                current = None
        elif kind == "intent":
            current = rec.get("step_id")
        elif kind == "notebook-start":
            current = rec.get("notebook")
    return current, counts


class Heartbeat:
    """Posts :func:`heartbeat` every ``interval`` seconds (default ``bridge.heartbeat``) from a
    daemon thread of the runner.  ``status_fn()`` returns ``(current_step, counts)``.
    ``stop()`` is prompt: the thread waits on an Event, never in a long sleep."""

    def __init__(self, bridge: Bridge, env: Environment, phase: str, run_id: str,
                 status_fn: Callable[[], tuple[str | None, dict[str, int]]], *, interval: float | None = None,
                 run: RunFolder | None = None, head_fn: Callable[[], str] | None = None) -> None:
        self.bridge, self.env, self.phase, self.run_id = bridge, env, phase, run_id
        self.status_fn = status_fn
        self.interval = interval if interval is not None else bridge.config.heartbeat.total_seconds()
        self.run = run
        self.head_fn = head_fn
        self.results: list[PostResult] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def start(self) -> "Heartbeat":
        if self._thread is None:
            self._started = time.monotonic()
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="cutover-heartbeat", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop; waits at most ``timeout`` for a post in flight (the thread is a daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "Heartbeat":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def beat(self) -> PostResult:
        """Post one heartbeat now."""
        try:
            current, counts = self.status_fn()
        except Exception as exc:  # noqa: BLE001 - a broken status callback must not stop the heartbeat
            current, counts = f"(status unavailable: {type(exc).__name__})", {}
        try:
            head = self.head_fn() if self.head_fn else None
        except Exception:  # noqa: BLE001 - nor a ledger being written
            head = None
        msg = heartbeat(self.env, self.phase, self.run_id, time.monotonic() - self._started, current, counts, head)
        result = self.bridge.send(msg)
        if self.run is not None and self.bridge.run is None:
            try:
                record_result(self.run, result, "heartbeat", channel=self.bridge.config.channel)
            except CutoverError:
                pass
        self.results.append(result)
        return result

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()
