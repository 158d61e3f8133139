"""HTTP for checks: one client factory, error mapping at the edge, waits with backoff.

Every request has a timeout from params.  httpx errors become :class:`CheckFailed` with a
line that names the URL and what went wrong -- DNS, TLS, refused, timeout, HTTP status,
non-JSON body -- and how to fix it.  URLs and bodies are masked before they reach a message.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import httpx

from ..config.secrets import mask
from ..errors import CheckFailed, CutoverError

__all__ = ["Http", "Response", "tls_context", "wait_until"]

T = TypeVar("T")


@dataclass
class Response:
    method: str
    url: str
    status: int
    elapsed_s: float
    text: str
    headers: dict[str, str]

    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except json.JSONDecodeError:
            snippet = mask(self.text[:80]).replace("\n", " ")
            raise CheckFailed(f"{self.method} {mask(self.url)} answered HTTP {self.status} with a body that is "
                              f"not JSON: {snippet!r}",
                              hint="the URL may point at a proxy or the wrong service; check services.* in params") from None

    @property
    def request_line(self) -> str:
        return f"{self.method} {mask(self.url)}"


def _describe(exc: httpx.HTTPError, method: str, url: str, timeout: float) -> CheckFailed:
    shown = f"{method} {mask(url)}"
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    low = (text + " " + str(cause)).lower()
    if isinstance(exc, httpx.TimeoutException):
        return CheckFailed(f"{shown}: no answer within {timeout:g}s ({type(exc).__name__})",
                           hint="the service is hung or unreachable; raise timeouts.http only if it is just slow")
    if isinstance(exc, httpx.ConnectError):
        if "name or service not known" in low or "nodename nor servname" in low or "temporary failure in name" in low \
                or "no address associated" in low or "getaddrinfo" in low:
            return CheckFailed(f"{shown}: DNS lookup failed for {httpx.URL(url).host}",
                               hint="check the host name in services.* of params and the resolver/VPN")
        if isinstance(cause, ssl.SSLError) or "ssl" in low or "certificate" in low or "tls" in low:
            return CheckFailed(f"{shown}: TLS handshake failed ({mask(text)[:120]})",
                               hint="check the certificate chain, or the scheme (http vs https) in params")
        if "refused" in low:
            return CheckFailed(f"{shown}: connection refused", hint="the service is down or the port is wrong")
        return CheckFailed(f"{shown}: cannot connect ({mask(text)[:120]})", hint="check the URL and the network path")
    return CheckFailed(f"{shown}: {type(exc).__name__}: {mask(text)[:160]}")


@lru_cache(maxsize=2)
def tls_context(verify: bool) -> ssl.SSLContext:
    """The TLS settings every HTTP client of this process shares (``verify``: check certificates
    against the CA bundle).  Making one parses the bundle, ~40 ms of CPU: once per process, not
    once per client -- a run makes one client per bridge post."""
    return httpx.create_ssl_context(verify=verify)


class Http:
    """A small synchronous client with the environment's timeout and TLS setting."""

    def __init__(self, timeout: float = 10.0, verify: bool = True,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.timeout = timeout
        self._client = httpx.Client(timeout=timeout, verify=tls_context(verify), follow_redirects=False,
                                    transport=transport, headers={"User-Agent": "stellaops-cutover"})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Http":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, url: str, **kw: Any) -> Response:
        started = time.monotonic()
        try:
            r = self._client.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise _describe(exc, method, url, self.timeout) from exc
        except ssl.SSLError as exc:  # pragma: no cover - httpx normally wraps these
            raise CheckFailed(f"{method} {mask(url)}: TLS failure ({exc.reason})") from exc
        return Response(method, url, r.status_code, time.monotonic() - started, r.text, dict(r.headers))

    def get(self, url: str, **kw: Any) -> Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> Response:
        return self.request("POST", url, **kw)

    def expect_status(self, resp: Response, *codes: int) -> Response:
        if resp.status not in codes:
            body = mask(resp.text[:200]).replace("\n", " ")
            raise CheckFailed(f"{resp.request_line} answered HTTP {resp.status}, expected "
                              f"{' or '.join(map(str, codes))}: {body}")
        return resp


def wait_until(probe: Callable[[], T], *, deadline_s: float, what: str, first_delay: float = 0.25,
               max_delay: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``probe`` until it returns without raising, with exponential backoff, until the
    deadline; then re-raise the last failure with how long we waited."""
    start = time.monotonic()
    delay = first_delay
    attempts = 0
    while True:
        attempts += 1
        try:
            return probe()
        except CutoverError as exc:
            waited = time.monotonic() - start
            if waited + delay > deadline_s:
                raise CheckFailed(f"{what}: still failing after {waited:.1f}s and {attempts} attempts: "
                                  f"{exc.message}", hint=exc.hint) from None
        sleep(delay)
        delay = min(delay * 2, max_delay)
