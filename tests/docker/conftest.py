"""Real Docker for the compose tests: private engines, a local registry and the lab images.

``docker_lab`` (session) runs ``tools/dockerlab.sh`` -- ``install``, ``start-engine lab1``,
``start-registry``, ``build-images`` -- and at the end stops exactly what *it* started (an
engine or registry that was already running is left alone).  Where no engine can start
(not root, no apt mirror, no dockerd) every test using it is skipped with the reason.

Engines: ``lab1`` publishes on 127.0.0.1, ``lab2`` (started only by the two-node test) on
127.0.0.2, so both can publish the same ports on one machine the way two hosts would.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERLAB = REPO / "tools" / "dockerlab.sh"
RUN_DIR = Path(os.environ.get("DOCKERLAB_RUN", "/tmp/cutover-docker"))
ENGINES = {"lab1": "127.0.0.1", "lab2": "127.0.0.2"}
PROJECT = "stellaops"


def socket_of(name: str) -> str:
    return f"unix://{RUN_DIR / name / 'docker.sock'}"


@dataclass
class DockerLab:
    """What the session fixture set up, and what it must stop at the end."""

    started: list[list[str]] = field(default_factory=list)   # stop commands, run in reverse
    engines: dict[str, str] = field(default_factory=dict)     # name -> DOCKER_HOST
    timings: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def engine(self, name: str) -> str:
        """Start engine ``name`` if needed (idempotent); its DOCKER_HOST, or skip with the reason."""
        if name not in self.engines:
            out = _dockerlab("start-engine", name, str(RUN_DIR / name), ENGINES[name], lab=self, timeout=120)
            if "already running" not in out:
                self.started.append(["stop-engine", name])
            self.engines[name] = socket_of(name)
        return self.engines[name]


def _dockerlab(*args: str, lab: DockerLab, timeout: float) -> str:
    t0 = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(DOCKERLAB), *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.skip(f"tools/dockerlab.sh {' '.join(args)} did not finish in {timeout:g}s")
    lab.timings[" ".join(args[:2])] = round(time.monotonic() - t0, 1)
    lab.lines += proc.stdout.splitlines()
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])
        errors = [ln for ln in reason if "error" in ln] or reason
        pytest.skip(f"tools/dockerlab.sh {' '.join(args)} failed: {errors[0]}")
    return proc.stdout


@pytest.fixture(scope="session")
def docker_lab() -> Iterator[DockerLab]:
    if os.geteuid() != 0:
        pytest.skip(f"a private dockerd needs root (running as uid {os.geteuid()})")
    lab = DockerLab()
    try:
        _dockerlab("install", lab=lab, timeout=600)
        lab.engine("lab1")
        out = _dockerlab("start-registry", lab=lab, timeout=60)
        if "already running" not in out:
            lab.started.append(["stop-registry"])
        _dockerlab("build-images", "lab1", lab=lab, timeout=900)
        yield lab
    finally:
        for cmd in reversed(lab.started):
            subprocess.run(["bash", str(DOCKERLAB), *cmd], capture_output=True, text=True, timeout=120)
        print("\ndockerlab timings (s):", lab.timings)


def _reset_engine(docker_host: str, *, network: bool = False) -> None:
    """Remove the lab project's containers and volume (and the front-door network) on one engine."""
    import docker

    client = docker.DockerClient(base_url=docker_host, version="auto", timeout=60)
    try:
        for c in client.containers.list(all=True, filters={"label": f"com.docker.compose.project={PROJECT}"}):
            c.remove(force=True)
        for v in client.volumes.list(filters={"label": f"com.docker.compose.project={PROJECT}"}):
            v.remove(force=True)
        for n in client.networks.list():
            if n.name == f"{PROJECT}_default" or (network and n.name == "stellaops_frontdoor"):
                _remove_network(n)
    finally:
        client.close()


class StaleEndpoints(Exception):
    """dockerd keeps an endpoint of a removed container and refuses to remove the network."""


def _remove_network(n) -> None:  # noqa: ANN001 - a docker SDK Network
    """dockerd can keep a stale endpoint of a container it just removed ("has active endpoints"),
    for a moment or for good: disconnect whatever is listed, by force, and try again for ~10 s."""
    import docker

    for _ in range(20):
        try:
            n.reload()
        except docker.errors.NotFound:
            return
        for endpoint in (n.attrs.get("Containers") or {}):
            try:
                n.disconnect(endpoint, force=True)
            except docker.errors.APIError:
                pass
        try:
            n.remove()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if "active endpoints" not in str(exc):
                raise
        time.sleep(0.5)
    raise StaleEndpoints(f"network {n.name} keeps a stale endpoint")


def _reset_or_restart(lab: DockerLab, host: str, **kw: bool) -> None:
    """Reset an engine; one whose network keeps a stale endpoint for good is restarted (its state
    on disk is kept; the restart drops the endpoint), then reset."""
    try:
        _reset_engine(host, **kw)
    except StaleEndpoints:
        name = next(n for n, h in lab.engines.items() if h == host)
        _dockerlab("stop-engine", name, lab=lab, timeout=120)
        del lab.engines[name]
        lab.engine(name)
        _reset_engine(host, **kw)


@pytest.fixture
def clean_engines(docker_lab: DockerLab) -> Iterator[Callable[..., None]]:
    """Every engine of the session starts (and ends) each test without the lab project."""
    for host in list(docker_lab.engines.values()):
        _reset_or_restart(docker_lab, host)
    yield lambda host, **kw: _reset_or_restart(docker_lab, host, **kw)
    for host in list(docker_lab.engines.values()):
        _reset_or_restart(docker_lab, host)



# ------------------------------------------------------------------------------ ssh:// nodes

@pytest.fixture(scope="session")
def ssh_node(docker_lab: DockerLab, tmp_path_factory: pytest.TempPathFactory):
    """A real sshd on a free loopback port in front of engine lab1 (tests/docker/ssh_node.py);
    stopped at the end.  Skipped with the reason where sshd cannot be installed or started."""
    from ssh_node import SshdUnavailable, start_sshd

    try:
        node = start_sshd(tmp_path_factory.mktemp("ssh-node"), docker_lab.engine("lab1"))
    except SshdUnavailable as exc:
        pytest.skip(f"no sshd for the ssh:// node tests: {exc}")
    try:
        yield node
    finally:
        node.stop()
        print(f"\nssh node: sshd on 127.0.0.1:{node.port} accepted {node.accepted()} connection(s)")


@pytest.fixture
def ssh_operator(ssh_node, monkeypatch: pytest.MonkeyPatch):
    """This process (and the commands it runs) as an operator host that knows the ssh node:
    HOME with its .ssh, the ssh wrapper first on PATH, the real DOCKER_CONFIG; no ssh agent."""
    for key, value in ssh_node.client_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return ssh_node
