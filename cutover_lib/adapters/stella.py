"""What Sections 2 (T-30m) and 7 still ask the platform over HTTP: each service's ``/healthz``.

The smoke tests, Section 4.4 and the audit trails are notebook cells (``rb.http`` / ``rb.sh`` with
the runbook's own requests and CLIs); this small client remains for the go/no-go health sweep and
the monitoring samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config.params import Environment
from .http import Http

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.steps import Runbook, StepContext

__all__ = ["StellaApi", "api_for", "healthy"]


@dataclass
class StellaApi:
    env: Environment
    http: Http

    def url(self, service: str, path: str) -> str:
        return str(getattr(self.env.services, service)) + path


def api_for(rb: "Runbook") -> StellaApi:
    """The run view's one keep-alive HTTP client (the one its cells use), for these requests."""
    return StellaApi(rb.env, rb._http_client())


def healthy(ctx: "StepContext", api: StellaApi, service: str) -> str:
    """``GET <service>/healthz`` answers HTTP 200 with ``"status": "Healthy"``."""
    r = api.http.get(api.url(service, "/healthz"))
    body = r.json() if r.status == 200 or r.text.strip().startswith("{") else {}
    status = body.get("status") if isinstance(body, dict) else None
    ctx.check(r.status == 200 and status == "Healthy",
              f"HTTP {r.status} with status {status!r} from {r.request_line}")
    version = body.get("version")
    return f"HTTP 200, status Healthy{f', version {version}' if version else ''}"
