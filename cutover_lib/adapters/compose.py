"""Compose nodes: the Docker engine (docker SDK) and failures of the ``docker compose`` v2 CLI.

The runbook's compose lines are notebook cells, run as the operator would type them, with
``DOCKER_HOST`` naming the node::

    DOCKER_HOST=ssh://ops@compose-prod-1 docker compose --env-file prod.env \\
        -f deploy/compose/docker-compose.prod.yaml pull

What the engine itself knows is read here through the docker SDK: each container's
``State.Health`` (:func:`project_health`, polled by :func:`wait_healthy`).  Errors of both are
mapped here, at the adapter edge, into :mod:`cutover_lib.errors` with one clear line and a fix hint:

* engine not reachable  -> ``StepFailed`` naming the ``DOCKER_HOST`` and how to start it
  (for ``ssh://`` nodes also: ssh refused, unknown or changed host key, key not accepted)
* docker / compose v2 / docker SDK not installed -> ``ToolMissing``

Nothing here touches the ``Runbook``; :mod:`cutover_lib.adapters.compose_steps` turns these into steps.

``ssh://`` nodes: the CLI runs the system ``ssh`` (the operator's ``~/.ssh/config`` and ``known_hosts``)
and ``docker system dial-stdio`` on the node; the SDK connects with paramiko (``docker[ssh]``), which
reads ``~/.ssh/config`` (Hostname, Port, User, IdentityFile, ProxyCommand) and ``~/.ssh/known_hosts``
and refuses a host whose key is not there.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.secrets import mask
from ..errors import CutoverError, StepFailed, ToolMissing

if TYPE_CHECKING:
    import docker

__all__ = [
    "ContainerHealth", "engine_busy", "engine_client", "engine_unreachable", "health_problems",
    "map_cli_failure", "parse_ps", "project_health", "wait_healthy"
]

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


# --------------------------------------------------------------------------- CLI errors

_ENGINE_DOWN = ("Cannot connect to the Docker daemon", "error during connect",
                "connect: no such file or directory", "connect: connection refused",
                "dial unix", "ssh: connect to host")
_NO_COMPOSE = ("'compose' is not a docker command", "unknown command: docker compose",
               "unknown shorthand flag: 'f' in -f", "unknown flag: --env-file")


def engine_unreachable(node: str, docker_host: str, detail: str = "") -> StepFailed:
    how = ("check ssh access to the host (a key it accepts, its host key in ~/.ssh/known_hosts), "
           "that the docker CLI and dockerd run there" if docker_host.startswith("ssh://")
           else "start dockerd on the node (systemctl start docker)")
    extra = f": {detail}" if detail else ""
    return StepFailed(f"docker engine of node {node} not reachable at DOCKER_HOST={docker_host}{extra}",
                      hint=f"{how}, or fix deploy.compose.nodes[].docker_host")


def map_cli_failure(node: str | None, docker_host: str, shown: str, returncode: int | None,
                    tail: Sequence[str], timed_out: bool = False) -> CutoverError:
    """A failed ``docker``/``docker compose`` run as one clear error, most specific first
    (``node`` None: a local command such as ``compose config``, no engine involved)."""
    text = "\n".join(tail)
    if any(s in text for s in _NO_COMPOSE):
        return ToolMissing(f"docker compose v2 is not installed for the docker CLI on PATH (needed for: {shown})",
                           hint="install the Compose v2 CLI plugin (Debian/Ubuntu: docker-compose-plugin)")
    if node is not None and any(s in text for s in _ENGINE_DOWN):
        return engine_unreachable(node, docker_host)
    where = f" on node {node}" if node is not None else ""
    last = " | ".join([ln for ln in tail if ln.strip()][-3:]) or "(no output)"
    if timed_out:
        return StepFailed(f"`{shown}` timed out{where}; last output: {last}",
                          hint="raise timeouts.command in params if the node is just slow")
    return StepFailed(f"`{shown}` exited {returncode}{where}; last output: {last}")


# --------------------------------------------------------------------------- docker SDK

@contextmanager
def engine_client(node: str, docker_host: str, timeout: float = 30.0) -> Iterator["docker.DockerClient"]:
    """A docker SDK client for one node; SDK and connection errors mapped at this edge."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:
        raise ToolMissing("the docker Python SDK is not installed", hint="pip install docker") from exc
    unreachable: tuple[type[Exception], ...] = (OSError,)  # requests' ConnectionError is an OSError
    if docker_host.startswith("unix://"):
        # docker-py leaks the socket of a failed unix connect; probe it ourselves first
        problem = _probe_unix(docker_host[len("unix://"):], timeout)
        if problem:
            raise engine_unreachable(node, docker_host, problem)
    elif docker_host.startswith("ssh://"):
        try:
            import paramiko
        except ImportError as exc:
            raise ToolMissing(f"paramiko is not installed: the docker SDK cannot reach ssh:// node {node}",
                              hint="pip install 'docker[ssh]'") from exc
        unreachable += (paramiko.SSHException,)  # auth refused, host key unknown or changed, ...
        # paramiko connects with no TCP timeout (a dead host takes minutes): probe first
        problem = _probe_ssh(docker_host, timeout)
        if problem:
            raise engine_unreachable(node, docker_host, problem)
    # Negotiate the API version ourselves (as version="auto" does) so that a failed first call still
    # closes the client's connection pool.  ssh://: paramiko (use_ssh_client=False), whose failures
    # are exceptions here; docker-py's ssh-CLI transport prints ssh's errors on our stderr, never
    # waits for its ssh process and applies no timeout to a hung remote.
    client = None
    try:
        try:
            client = docker.DockerClient(base_url=docker_host, version=docker.constants.MINIMUM_DOCKER_API_VERSION,
                                         timeout=int(timeout), use_ssh_client=False)  # (ssh: connects here)
            for tries_left in (2, 1, 0):  # a busy engine (read timeout) is asked again; a down one is not
                try:
                    client.api._version = client.api.version(api_version=False)["ApiVersion"]
                    break
                except Exception as exc:
                    if not tries_left or not engine_busy(exc):
                        raise
        except (DockerException, *unreachable) as exc:
            raise _engine_error(node, docker_host, exc, timeout) from exc
        yield client
    except DockerException as exc:
        from docker.errors import APIError

        if isinstance(exc, APIError):
            raise StepFailed(f"docker engine of node {node} ({docker_host}) answered "
                             f"{exc.status_code}: {_short(exc.explanation or exc)}") from exc
        raise _engine_error(node, docker_host, exc, timeout) from exc
    except unreachable as exc:
        raise _engine_error(node, docker_host, exc, timeout) from exc
    finally:
        if client is not None:
            client.close()


def engine_busy(exc: BaseException) -> bool:
    """The engine took the request but did not answer in time: busy (many containers starting),
    not down -- worth asking again, unlike a refused connection or a connect timeout.  An answer whose
    body stops coming is the same: requests raises that as a ConnectionError (docker's version="auto"
    as a DockerException) with urllib3's ReadTimeoutError in its chain."""
    import requests
    from urllib3.exceptions import ReadTimeoutError

    read_timeouts = (requests.exceptions.ReadTimeout, ReadTimeoutError)
    chain: BaseException | None = exc
    for _ in range(8):  # (a chain is short; the bound guards against a cycle)
        if chain is None or isinstance(chain, read_timeouts):
            break
        chain = chain.__cause__ or chain.__context__
    return isinstance(chain, read_timeouts) or isinstance(exc, TimeoutError)


def _engine_error(node: str, docker_host: str, exc: BaseException, timeout: float) -> StepFailed:
    if not engine_busy(exc):
        return engine_unreachable(node, docker_host, _short(exc))
    return StepFailed(f"docker engine of node {node} ({docker_host}) did not answer within {timeout:g}s: "
                      f"{_short(exc)}", hint="it is busy or hung (docker info on the node tells); raise timeouts.http")


def _probe_unix(path: str, timeout: float) -> str:
    """Empty when something accepts connections on the unix socket ``path``, else why not."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(min(timeout, 10.0))
        try:
            sock.connect(path)
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
    return ""


def _probe_ssh(docker_host: str, timeout: float) -> str:
    """Empty when the ssh port of an ``ssh://`` DOCKER_HOST accepts a TCP connection, else why not.
    Host and port as the SDK's paramiko transport resolves them (``~/.ssh/config`` Hostname, Port);
    a ProxyCommand host is left to paramiko."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(docker_host)
    host, port = url.hostname or "", url.port
    config = Path(os.path.expanduser("~/.ssh/config"))
    if config.exists():
        import paramiko

        found = paramiko.SSHConfig.from_path(str(config)).lookup(host)
        if "proxycommand" in found:
            return ""
        host = found.get("hostname", host)
        port = port or int(found.get("port", 22))
    try:
        socket.create_connection((host, port or 22), timeout=min(timeout, 10.0)).close()
    except OSError as exc:
        return f"ssh port {host}:{port or 22}: {exc.strerror or exc}"
    return ""


def _short(exc: object) -> str:
    text = " ".join(str(exc).split())
    return mask(text if len(text) <= 240 else text[:237] + "...")


@dataclass(frozen=True)
class ContainerHealth:
    """One container of a compose project as the engine sees it."""

    service: str
    container: str
    image: str
    state: str           # running, restarting, exited, ...
    health: str          # healthy, unhealthy, starting, or "none" without a healthcheck
    last_check: str      # the last line of the last healthcheck's output

    @property
    def ok(self) -> bool:
        return self.state == "running" and self.health in ("healthy", "none")

    def describe(self) -> str:
        why = f"; last check: {self.last_check}" if self.last_check and not self.ok else ""
        return f"{self.service} ({self.container}) {self.state}/{self.health}{why}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return mask(line if len(line) <= 200 else line[:197] + "...")


def project_health(client: "docker.DockerClient", project: str) -> list[ContainerHealth]:
    """Every container of ``project`` (running or not), with ``State.Health`` from the engine."""
    found = client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
    rows = []
    for c in found:
        attrs = c.attrs
        state = attrs.get("State") or {}
        health = state.get("Health") or {}
        log = health.get("Log") or []
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        rows.append(ContainerHealth(
            service=labels.get(SERVICE_LABEL, c.name),
            container=c.name,
            image=(attrs.get("Config") or {}).get("Image", ""),
            state=str(state.get("Status", "unknown")),
            health=str(health.get("Status", "none")),
            last_check=_last_line(log[-1].get("Output", "")) if log else "",
        ))
    return sorted(rows, key=lambda r: r.service)


def wait_healthy(probe: Callable[[], list[ContainerHealth]], services: Sequence[str], timeout: float,
                 on_poll: Callable[[list[ContainerHealth]], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> tuple[bool, list[ContainerHealth], list[str]]:
    """Poll ``probe`` with backoff (0.5 s doubling to 5 s) until every expected service has a
    running, healthy container, or ``timeout`` passes.  Returns (ok, last rows, problems).

    Like ``docker compose up --wait`` it stops early when a container is ``unhealthy``: the
    engine has then already seen ``retries`` failed checks in a row.  A poll the engine does
    not answer in time (:func:`engine_busy`) is a problem until the next poll, not the end.
    """
    deadline = time.monotonic() + timeout
    delay, rows = 0.5, []
    while True:
        try:
            rows = probe()
        except Exception as exc:
            if not engine_busy(exc):
                raise
            problems = [f"the engine did not answer a poll in time ({_short(exc)})"]
        else:
            if on_poll:
                on_poll(rows)
            problems = health_problems(rows, services)
        if not problems or time.monotonic() >= deadline or any(r.health == "unhealthy" for r in rows):
            return not problems, rows, problems
        sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 5.0)


def health_problems(rows: Sequence[ContainerHealth], services: Sequence[str]) -> list[str]:
    """One line per expected service that is missing or not healthy (all rows if none expected)."""
    by_service: dict[str, list[ContainerHealth]] = {}
    for r in rows:
        by_service.setdefault(r.service, []).append(r)
    expected = list(services) or sorted(by_service)
    if not expected:
        return ["no containers of the project on this node"]
    problems = []
    for name in expected:
        mine = by_service.get(name)
        if not mine:
            problems.append(f"{name}: no container")
        for r in mine or []:
            if not r.ok:
                problems.append(r.describe())
    return problems


# --------------------------------------------------------------------------- compose ps

def parse_ps(text: str) -> list[dict[str, Any]]:
    """``docker compose ps --format json``: one object per line (v2.21+) or one JSON array."""
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] not in "[{":
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, list):
            rows.extend(v for v in value if isinstance(v, dict))
        elif isinstance(value, dict):
            rows.append(value)
    return rows
