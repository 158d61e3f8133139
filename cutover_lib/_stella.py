"""What Sections 2 (T-30m) and 7 still ask the platform over HTTP: health, queue depth, audit.

The smoke tests and Section 4.4 are notebook cells now (``rb.http`` / ``rb.sh`` with the
runbook's own requests and CLIs); this small client remains for the go/no-go health sweep and
the post-cutover review until those become cells over params-set queries too.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._http import Http, Response
from ._params import Environment

if TYPE_CHECKING:  # pragma: no cover
    from ._steps import Runbook, StepContext

__all__ = ["StellaApi", "api_for", "healthy"]


@dataclass
class StellaApi:
    env: Environment
    http: Http

    @classmethod
    def for_env(cls, env: Environment) -> "StellaApi":
        return cls(env, Http(timeout=env.timeouts.http.total_seconds(), verify=env.tls_verify))

    def close(self) -> None:
        self.http.close()

    def url(self, service: str, path: str) -> str:
        return str(getattr(self.env.services, service)) + path

    def queue_health(self) -> Response:
        return self.http.get(self.url("scanner", "/api/v1/queue/health"))

    def audit(self, service: str) -> dict[str, Any]:
        r = self.http.expect_status(self.http.get(self.url(service, "/-/audit")), 200)
        body: dict[str, Any] = r.json()
        return body


def api_for(rb: "Runbook") -> StellaApi:
    """One keep-alive client per run view, closed with it."""
    api = getattr(rb, "_stella_api", None)
    if api is None:
        api = StellaApi.for_env(rb.env)
        rb._stella_api = api  # type: ignore[attr-defined]
        weakref.finalize(rb, api.close)
    return api


def healthy(ctx: "StepContext", api: StellaApi, service: str) -> str:
    """``GET <service>/healthz`` answers HTTP 200 with ``"status": "Healthy"``."""
    r = api.http.get(api.url(service, "/healthz"))
    body = r.json() if r.status == 200 or r.text.strip().startswith("{") else {}
    status = body.get("status") if isinstance(body, dict) else None
    ctx.check(r.status == 200 and status == "Healthy",
              f"HTTP {r.status} with status {status!r} from {r.request_line}")
    version = body.get("version")
    return f"HTTP 200, status Healthy{f', version {version}' if version else ''}"
