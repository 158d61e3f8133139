"""Tornado plumbing shared by every lab service: faults, health, metrics, admin.

Part of the lab, the named local stand-in for a Stella Ops stack. Each service module
adds its own handlers to :func:`common_handlers`; :class:`LabHandler` applies the fault
switches per request (read from SQLite, so a fault set by the CLI, by the admin endpoint
of any service, or by another process takes effect on the next request).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import tornado.web

from . import _store
from ._config import SERVICES
from ._errors import LabConfigError

__all__ = ["LabHandler", "Metrics", "ServiceContext", "common_handlers", "json_dumps", "utc_now"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def json_dumps(value: Any) -> str:
    return json.dumps(value, indent=None, separators=(",", ":"), sort_keys=False)


def utc_now() -> str:
    """UTC timestamp, ISO 8601 with a ``Z`` suffix and millisecond precision."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class Metrics:
    """In-process request metrics in the Prometheus text format, named as a Stella Ops service
    exports them: OpenTelemetry's ASP.NET Core HTTP server histogram
    ``http_server_request_duration_seconds`` by route, method and status code."""

    service: str
    counts: dict[tuple[str, str, int], int] = field(default_factory=lambda: defaultdict(int))
    buckets: dict[tuple[str, str, int, float], int] = field(default_factory=lambda: defaultdict(int))
    sums: dict[tuple[str, str, int], float] = field(default_factory=lambda: defaultdict(float))

    def observe(self, route: str, method: str, code: int, seconds: float) -> None:
        key = (route, method, code)
        self.counts[key] += 1
        self.sums[key] += seconds
        for bound in _BUCKETS:
            if seconds <= bound:
                self.buckets[(*key, bound)] += 1

    def render(self, extra: dict[str, tuple[str, float]]) -> str:
        name = "http_server_request_duration_seconds"
        lines = [f"# HELP {name} Duration of HTTP server requests.", f"# TYPE {name} histogram"]
        for (route, method, code), total in sorted(self.counts.items()):
            labels = (f'http_request_method="{_label(method)}",http_response_status_code="{code}",'
                      f'http_route="{_label(route)}"')
            for bound in _BUCKETS:
                lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {self.buckets.get((route, method, code, bound), 0)}')
            lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {total}')
            lines.append(f"{name}_sum{{{labels}}} {self.sums[(route, method, code)]:.6f}")
            lines.append(f"{name}_count{{{labels}}} {total}")
        for metric, (help_text, value) in sorted(extra.items()):
            lines += [
                f"# HELP {metric} {help_text}",
                f"# TYPE {metric} {'counter' if metric.endswith('_total') else 'gauge'}",
                f'{metric}{{service="{self.service}"}} {value:g}',
            ]
        return "\n".join(lines) + "\n"


@dataclass
class ServiceContext:
    """Everything a handler of one lab service needs."""

    service: str
    data_dir: Path
    public_url: str
    release: str
    signer_url: str
    scan_seconds: float
    trust_dirs: list[Path]
    db: sqlite3.Connection
    metrics: Metrics
    #: service-specific Prometheus counters: name -> (help, callable returning the value)
    counters: dict[str, tuple[str, Callable[[], float]]] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    #: faults baked into this process by ``LAB_FAULTS`` (a faulty release): not persisted,
    #: gone when the service restarts on another release
    baked: dict[str, Any] = field(default_factory=dict)

    def faults(self) -> dict[str, Any]:
        return {**_store.get_faults(self.db, self.service),
                **{f"{self.service}.{k}": v for k, v in self.baked.items()}}

    def fault(self, name: str) -> Any:
        """The value of ``<service>.<name>`` if set (baked or stored), else None."""
        if name in self.baked:
            return self.baked[name]
        row = self.db.execute(
            "SELECT value FROM faults WHERE name = ?", (f"{self.service}.{name}",)
        ).fetchone()
        return json.loads(row["value"]) if row else None


class LabHandler(tornado.web.RequestHandler):
    """Base handler: JSON helpers and the per-request ``slow`` fault."""

    ctx: ServiceContext
    #: admin endpoints skip the slow fault so a fault can always be cleared quickly
    apply_slow = True

    def initialize(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def prepare(self) -> None:
        if not self.apply_slow:
            return
        delay = self.ctx.fault("slow")
        if delay:
            millis = 1000.0 if delay is True else float(delay)
            await asyncio.sleep(max(millis, 0.0) / 1000.0)

    def send_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json_dumps(value))

    def json_body(self) -> Any:
        """Parse the request body as JSON, or answer 400 and raise ``tornado.web.Finish``."""
        try:
            return json.loads(self.request.body or b"")
        except ValueError as exc:
            self.send_json({"error": "invalid_json", "reason": f"body is not JSON: {exc}"}, 400)
            raise tornado.web.Finish() from exc

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json_dumps({"error": self._reason, "status": status_code}))


class HealthHandler(LabHandler):
    def get(self) -> None:
        if self.ctx.fault("unhealthy"):
            self.send_json(
                {"status": "Unhealthy", "service": self.ctx.service, "version": self.ctx.release},
                503,
            )
            return
        self.send_json(
            {"status": "Healthy", "service": self.ctx.service, "version": self.ctx.release}
        )


class MetricsHandler(LabHandler):
    def get(self) -> None:
        extra = {name: (text, float(fn())) for name, (text, fn) in self.ctx.counters.items()}
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.ctx.metrics.render(extra))


class FaultAdminHandler(LabHandler):
    """``GET/PUT/DELETE /-/lab/faults``: read, set, reset fault switches.

    PUT ``{"fault": "slow" | "scanner.slow", "value": 500}``; a bare fault name refers to this
    service, a full name may name any service. DELETE resets this service's faults, or one
    with ``?fault=NAME``.
    """

    apply_slow = False

    def get(self) -> None:
        self.send_json({"service": self.ctx.service, "faults": self.ctx.faults()})

    def put(self) -> None:
        body = self.json_body()
        if not isinstance(body, dict) or not isinstance(body.get("fault"), str):
            self.send_json({"error": "invalid_request", "reason": 'expected {"fault": NAME}'}, 400)
            return
        name: str = body["fault"]
        service = self.ctx.service
        if "." in name and name.split(".", 1)[0] in SERVICES:
            service = name.split(".", 1)[0]
        try:
            full = _store.set_fault(self.ctx.db, service, name, body.get("value", True))
        except LabConfigError as exc:
            self.send_json({"error": "unknown_fault", "reason": str(exc)}, 400)
            return
        self.send_json({"fault": full, "value": body.get("value", True), "faults": self.ctx.faults()})

    def delete(self) -> None:
        fault = self.get_query_argument("fault", None)
        try:
            cleared = _store.clear_faults(self.ctx.db, self.ctx.service, fault)
        except LabConfigError as exc:
            self.send_json({"error": "unknown_fault", "reason": str(exc)}, 400)
            return
        self.send_json({"cleared": cleared, "faults": self.ctx.faults()})


def common_handlers(ctx: ServiceContext) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"ctx": ctx}
    return [
        (r"/healthz", HealthHandler, args),
        (r"/metrics", MetricsHandler, args),
        (r"/-/lab/faults", FaultAdminHandler, args),
    ]
