"""Helpers shared by the lab tests (imported as a plain module: tests/unit/lab has no package).

Includes a DSSE verifier written independently of ``cutover_lib`` (its own PAE, plain
``cryptography``), so the lab's envelopes are checked by code that does not share its bugs.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from stellaops_lab import SERVICES, LabConfig

REPO = Path(__file__).resolve().parents[3]
SBOM = REPO / "samples" / "sbom" / "demo.json"
DEMO_DSSE = REPO / "samples" / "dsse" / "demo.json"
RUNTIME_EVENT = REPO / "samples" / "runtime" / "zastava-observer-event.json"
def auth(config: "LabConfig") -> tuple[str, str]:
    """The lab client's credentials: the secret provisioned in the lab's core secret store."""
    from stellaops_lab._provision import client_secret

    return ("stellaops-cutover", client_secret(config))


def web_login(http: httpx.Client, config: "LabConfig") -> None:
    """Sign ``http`` in to the lab web UI as its smoke account (the session cookie stays in the client)."""
    from stellaops_lab._provision import service_env
    from stellaops_lab._webui import WEB_USER

    r = http.post(f"{config.url('web')}/login", data={"username": WEB_USER, "password": service_env(config)["LAB_WEB_PASSWORD"]})
    assert r.status_code == 302, r.text


def alive(pid: int) -> bool:
    """True if the pid exists and is not a zombie (pid 1 here may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free a moment ago (bound to port 0, then closed)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


_labs_made = 0


def make_config(data_dir: Path, scan_seconds: float = 0.5) -> LabConfig:
    """A lab config on free ports, or on ``CUTOVER_TEST_LAB_PORT_BASE`` + 10 per lab made."""
    global _labs_made
    base = os.environ.get("CUTOVER_TEST_LAB_PORT_BASE")
    _labs_made += 1
    if base:
        port_base = int(base) + 10 * (_labs_made - 1)
        return LabConfig.from_port_base(data_dir, port_base, scan_seconds=scan_seconds)
    *ports, prometheus = free_ports(len(SERVICES) + 1)
    return LabConfig(data_dir, ports=dict(zip(SERVICES, ports)), scan_seconds=scan_seconds, prometheus_port=prometheus)


def wait_healthy(http: httpx.Client, config: LabConfig, timeout: float = 10.0) -> None:
    """Wait until every service answers /healthz 200 (e.g. after a ``down`` fault is cleared)."""
    deadline = time.monotonic() + timeout
    for service in SERVICES:
        while True:
            try:
                if http.get(f"{config.url(service)}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{service} not healthy after {timeout}s")
            time.sleep(0.05)


def independent_pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 " + str(len(t)).encode() + b" " + t + b" " + str(len(payload)).encode() + b" " + payload


def independent_verify(envelope: dict[str, Any], public_pem: str) -> bool:
    key = load_pem_public_key(public_pem.encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    payload = base64.b64decode(envelope["payload"])
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    try:
        key.verify(sig, independent_pae(envelope["payloadType"], payload), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def signer_key(http: httpx.Client, lab: LabConfig) -> dict[str, Any]:
    key: dict[str, Any] = http.get(f"{lab.url('signer')}/api/v1/signer/key").json()
    return key
