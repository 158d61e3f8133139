"""Every way an HTTP check can go wrong gives one clear line naming the URL and the fix.
Real sockets on loopback: a refused port, a plain-HTTP server spoken to over TLS, a server that
never answers, a non-JSON body, an HTTP 500, a host name that cannot resolve."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from cutover_lib.errors import CheckFailed
from cutover_lib.adapters.http import Http, wait_until
from cutover_lib.config.secrets import register_secret


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):
        if self.path == "/slow":
            time.sleep(1.0)
        body, status, ctype = {
            "/html": (b"<html>proxy login</html>", 200, "text/html"),
            "/boom": (b'{"error":"db down token=canary-http-5599"}', 500, "application/json"),
        }.get(self.path, (b'{"status":"Healthy"}', 200, "application/json"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except BrokenPipeError:
            pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_connection_refused(closed_port):
    with Http(timeout=2) as h, pytest.raises(CheckFailed) as ei:
        h.get(f"http://127.0.0.1:{closed_port}/healthz")
    assert "connection refused" in ei.value.message and "service is down or the port is wrong" in ei.value.hint


def test_dns_failure():
    with Http(timeout=3) as h, pytest.raises(CheckFailed) as ei:
        h.get("http://scanner.does-not-exist.invalid/healthz")
    assert "DNS lookup failed for scanner.does-not-exist.invalid" in ei.value.message
    assert "services.*" in ei.value.hint


def test_tls_failure(server):
    with Http(timeout=3) as h, pytest.raises(CheckFailed) as ei:
        h.get(f"https://{server}/healthz")
    assert "TLS handshake failed" in ei.value.message


def test_timeout(server):
    with Http(timeout=0.3) as h, pytest.raises(CheckFailed) as ei:
        h.get(f"http://{server}/slow")
    assert "no answer within 0.3s" in ei.value.message


def test_non_json_body(server):
    with Http(timeout=3) as h, pytest.raises(CheckFailed) as ei:
        h.get(f"http://{server}/html").json()
    assert "with a body that is not JSON: '<html>proxy login</html>'" in ei.value.message


def test_http_500_body_is_masked(server):
    register_secret("canary-http-5599")
    with Http(timeout=3) as h, pytest.raises(CheckFailed) as ei:
        h.expect_status(h.get(f"http://{server}/boom"), 200)
    assert "answered HTTP 500, expected 200" in ei.value.message
    assert "canary-http-5599" not in ei.value.message and "***" in ei.value.message


def test_wait_until_retries_with_backoff_until_deadline():
    calls, sleeps = [], []

    def probe():
        calls.append(1)
        raise CheckFailed("not yet")

    with pytest.raises(CheckFailed, match=r"still failing after .* attempts: not yet"):
        wait_until(probe, deadline_s=0.5, what="thing", first_delay=0.1, sleep=lambda d: (sleeps.append(d),
                                                                                        time.sleep(d)))
    assert len(calls) >= 2 and sleeps == sorted(sleeps)


def test_wait_until_returns_when_probe_passes():
    n = []

    def probe():
        n.append(1)
        if len(n) < 3:
            raise CheckFailed("no")
        return "ok"

    assert wait_until(probe, deadline_s=5, what="x", first_delay=0.01) == "ok" and len(n) == 3


def test_every_client_of_a_process_shares_its_tls_settings(monkeypatch):
    """The checks' client and every bridge post take the one TLS context of their ``verify``
    (parsing the CA bundle costs ~40 ms of CPU a client; a run makes one per bridge post)."""
    import ssl

    import httpx

    from cutover_lib.adapters.http import tls_context
    from cutover_lib.adapters.notify import Bridge
    from cutover_lib.config.models import Bridge as BridgeParams
    from cutover_lib.config.schema import build

    given: list[object] = []
    real = httpx.Client.__init__

    def spy(self, *args, **kwargs):
        given.append(kwargs.get("verify"))
        real(self, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "__init__", spy)
    Http(verify=True).close()
    Http(verify=False).close()
    params = build({"webhook": "env:CUTOVER_TEST_WEBHOOK", "retries": 0}, BridgeParams)
    monkeypatch.setenv("CUTOVER_TEST_WEBHOOK", "http://127.0.0.1:9/hook")
    for verify in (True, False):
        Bridge(params, verify=verify, backoff=0, sleep=lambda s: None).post("x")
    assert given == [tls_context(True), tls_context(False), tls_context(True), tls_context(False)]
    assert tls_context(True).verify_mode == ssl.CERT_REQUIRED and tls_context(True).check_hostname
    assert tls_context(False).verify_mode == ssl.CERT_NONE
