"""Every fault switch makes the matching check fail observably, and clears cleanly."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from stellaops_lab import SERVICES, LabConfig, clear_faults, list_faults, set_fault, status

from lab_helpers import SBOM, auth, independent_verify, signer_key, wait_healthy, web_login

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("service", SERVICES)
def test_unhealthy(clean_lab: LabConfig, http: httpx.Client, service: str) -> None:
    set_fault(clean_lab, service, "unhealthy")
    response = http.get(f"{clean_lab.url(service)}/healthz")
    assert response.status_code == 503 and response.json()["status"] == "Unhealthy"
    assert status(clean_lab)[service]["healthy"] is False
    assert status(clean_lab)[service]["faults"] == {f"{service}.unhealthy": True}
    clear_faults(clean_lab, service)
    assert http.get(f"{clean_lab.url(service)}/healthz").status_code == 200


def _elapsed(http: httpx.Client, url: str) -> float:
    start = time.perf_counter()
    assert http.get(url).status_code == 200
    return time.perf_counter() - start


def test_slow_delays_every_request(clean_lab: LabConfig, http: httpx.Client) -> None:
    url = f"{clean_lab.url('scanner')}/api/v1/queue/health"
    set_fault(clean_lab, "scanner", "slow", 1000)  # (a loopback answer takes far less, even on a busy machine)
    assert _elapsed(http, url) >= 1.0
    assert _elapsed(http, f"{clean_lab.url('scanner')}/healthz") >= 1.0
    assert _elapsed(http, f"{clean_lab.url('authority')}/healthz") < 1.0  # only scanner
    clear_faults(clean_lab)
    assert _elapsed(http, url) < 1.0


def test_web_slow_breaks_the_ui_budget(clean_lab: LabConfig, http: httpx.Client) -> None:
    web_login(http, clean_lab)
    set_fault(clean_lab, "web", "slow", 600)
    assert _elapsed(http, f"{clean_lab.url('web')}/") >= 0.6
    assert _elapsed(http, f"{clean_lab.url('web')}/policy") >= 0.6


def test_down_refuses_connections_then_recovers(clean_lab: LabConfig, http: httpx.Client) -> None:
    url = f"{clean_lab.url('runtime')}/healthz"
    set_fault(clean_lab, "runtime", "down")
    deadline = time.monotonic() + 3
    refused = False
    with httpx.Client(timeout=1.0) as quick:
        while time.monotonic() < deadline and not refused:
            try:
                quick.get(url)
                time.sleep(0.05)
            except httpx.ConnectError:
                refused = True
            except (httpx.RemoteProtocolError, httpx.ReadError):  # closed mid-request while going down
                time.sleep(0.05)
        assert refused, "runtime kept accepting connections"
        start = time.monotonic()
        with pytest.raises(httpx.ConnectError):
            quick.get(url)
        assert time.monotonic() - start < 0.9  # refused, not hanging until the 1 s timeout
    row = status(clean_lab)["runtime"]
    assert row["running"] is True and row["healthy"] is False
    clear_faults(clean_lab, "runtime")
    wait_healthy(http, clean_lab, timeout=3)


def test_wrong_issuer(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("authority")
    set_fault(clean_lab, "authority", "wrong_issuer")
    doc = http.get(f"{base}/.well-known/openid-configuration").json()
    assert doc["issuer"] != base
    token = http.post(f"{base}/token", data={"grant_type": "client_credentials"}, auth=auth(clean_lab)).json()
    claims = token["access_token"].split(".")[1]
    assert base.encode() not in base64.urlsafe_b64decode(claims + "==")
    clear_faults(clean_lab)
    assert http.get(f"{base}/.well-known/openid-configuration").json()["issuer"] == base


def test_bad_signature(clean_lab: LabConfig, http: httpx.Client) -> None:
    signer = clean_lab.url("signer")
    set_fault(clean_lab, "signer", "bad_signature")
    body = http.post(f"{signer}/api/v1/signer/sign", content=SBOM.read_bytes()).json()
    pem = signer_key(http, clean_lab)["publicKeyPem"]
    assert not independent_verify(body["envelope"], pem)
    assert http.post(f"{signer}/api/v1/signer/verify", json=body).json()["ok"] is False
    uuid = http.post(f"{clean_lab.url('attestor')}/api/v1/attestations", json=body).json()["uuid"]
    verdict = http.post(f"{clean_lab.url('attestor')}/api/v1/attestations/{uuid}/verify").json()
    assert verdict["ok"] is False
    clear_faults(clean_lab)
    good = http.post(f"{signer}/api/v1/signer/sign", content=SBOM.read_bytes()).json()
    assert independent_verify(good["envelope"], pem)


def test_queue_down(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("scanner")
    set_fault(clean_lab, "scanner", "queue_down")
    response = http.get(f"{base}/api/v1/queue/health")
    assert response.status_code == 503
    assert response.json() == {"status": "Unhealthy", "queue": "disconnected"}
    assert http.post(f"{base}/api/v1/scans", content=SBOM.read_bytes()).status_code == 503
    clear_faults(clean_lab)
    assert http.get(f"{base}/api/v1/queue/health").status_code == 200


def test_scan_stuck(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("scanner")
    set_fault(clean_lab, "scanner", "scan_stuck")
    scan_id = http.post(f"{base}/api/v1/scans", params={"scan_seconds": 0}, content=SBOM.read_bytes()).json()["id"]
    time.sleep(0.2)
    assert http.get(f"{base}/api/v1/scans/{scan_id}").json()["status"] == "running"
    assert http.get(f"{base}/api/v1/scans/{scan_id}/report").status_code == 409
    assert http.get(f"{base}/api/v1/queue/health").json()["depth"] >= 1
    clear_faults(clean_lab)
    assert http.get(f"{base}/api/v1/scans/{scan_id}").json()["status"] == "completed"


def test_ingest_error(clean_lab: LabConfig, http: httpx.Client) -> None:
    base = clean_lab.url("runtime")
    set_fault(clean_lab, "runtime", "ingest_error")
    response = http.post(f"{base}/runtime/events", json={"eventId": "fault-1"})
    assert response.status_code == 500
    assert http.post(f"{base}/api/v1/runtime/events", json={"eventId": "fault-1"}).status_code == 500
    assert http.get(f"{base}/api/v1/runtime/events", params={"eventId": "fault-1"}).json()["count"] == 0
    assert ('http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="500",'
            'http_route="/runtime/events"} ') in http.get(f"{base}/metrics").text
    clear_faults(clean_lab)
    assert http.post(f"{base}/runtime/events", json={"eventId": "fault-1"}).status_code == 202


def test_faults_are_shared_and_resettable(clean_lab: LabConfig, http: httpx.Client) -> None:
    set_fault(clean_lab, "scanner", "slow", 1)
    set_fault(clean_lab, "web", "unhealthy")
    assert list_faults(clean_lab) == {"scanner.slow": 1, "web.unhealthy": True}
    assert http.get(f"{clean_lab.url('web')}/-/lab/faults").json()["faults"] == {"web.unhealthy": True}
    assert sorted(clear_faults(clean_lab)) == ["scanner.slow", "web.unhealthy"]
    assert http.get(f"{clean_lab.url('web')}/healthz").status_code == 200
