"""Start, stop and inspect the lab processes; read and set faults.

The lab is a named stand-in for a Stella Ops stack: one process per service, on loopback,
running :func:`stellaops_lab.serve.main`. ``up`` starts them detached (new session, reparented
away from the caller so a CLI or notebook can exit), forked from one launcher that imports the
services once (:mod:`._launch`), and writes one pid file each; ``down`` signals only processes
whose pid file it finds *and* that are our service for this very data folder (a launcher's child
by its name ``lab-<service>`` and working folder; ``python -m stellaops_lab.serve`` by its command
line), so a recycled pid is never killed.

``up`` also installs the stand-in executables (``stellaops-cli``, ``dotnet``) into
``<data>/bin`` and writes the signer's public key to ``<data>/keys/trusted/signer.pem``.

Only the standard library is imported at import time (no tornado, no cryptography; ``up``
loads cryptography to read the signer key).
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import _prometheus, _store
from ._config import DEFAULT_PORT_BASE, SERVICES, LabConfig, fault_name
from ._errors import LabConfigError, LabError, LabUnhealthy
from ._launch import COMM_PREFIX
from ._standins import install_standins

__all__ = ["clear_faults", "down", "list_faults", "set_fault", "status", "up"]

SERVE_MODULE = "stellaops_lab.serve"
LAUNCH_MODULE = "stellaops_lab._launch"
STOP_GRACE_SECONDS = 5.0


def launch_failed(what: str, exc: Exception, config: LabConfig) -> LabError:
    """A launcher that failed, as one line: its own last word (``PermissionError: ... Read-only file
    system: '.../logs/scanner.log'``), not the launcher's command line."""
    lines = (getattr(exc, "stderr", None) or "").strip().splitlines()
    return LabError(f"could not start {what}: {lines[-1] if lines else exc}",
                    hint=f"the lab folder {config.data_dir} must be writable; its logs are in {config.log_dir}")


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _proc_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def _is_ours(pid: int, service: str, config: LabConfig) -> bool:
    """True if ``pid`` runs our serve module for ``service`` on this data folder."""
    if not _proc_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in argv if a]
    if LAUNCH_MODULE in args:  # forked by stellaops_lab._launch: its name and working folder say which
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            return False
        return comm == f"{COMM_PREFIX}{service}"[:15] and cwd == config.data_dir
    if SERVE_MODULE not in args:
        return False

    def opt(name: str) -> str | None:
        return args[args.index(name) + 1] if name in args[:-1] else None

    data_dir = opt("--data-dir")
    return (
        opt("--service") == service
        and data_dir is not None
        and Path(data_dir).resolve() == config.data_dir
    )


def _running_pid(config: LabConfig, service: str) -> int | None:
    pid = _read_pid(config.pid_file(service))
    return pid if pid is not None and _is_ours(pid, service, config) else None


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _get_json(url_host: str, port: int, path: str, timeout: float) -> tuple[int, Any]:
    """GET ``path``; returns (status, parsed JSON or None). Raises OSError if unreachable."""
    conn = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        response = conn.getresponse()
        body = response.read()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, None
    finally:
        conn.close()


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(tail)


def _serve_argv(config: LabConfig, service: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        SERVE_MODULE,
        "--service",
        service,
        "--port",
        str(config.ports[service]),
        "--host",
        config.host,
        "--data-dir",
        str(config.data_dir),
        "--signer-url",
        config.url("signer"),
        "--scan-seconds",
        str(config.scan_seconds),
    ]


def _child_env(config: LabConfig) -> dict[str, str]:
    from ._provision import service_env

    env = dict(os.environ)
    if config.release:
        env["STELLAOPS_RELEASE"] = config.release
    if config.faults:
        env["LAB_FAULTS"] = json.dumps(config.faults)
    env.update(service_env(config))  # LAB_CLIENT_SECRET, LAB_WEB_PASSWORD, LAB_TICKET_TOKEN
    import cutover_lib  # (the lab uses the tool's DSSE code; the tool never imports the lab)

    roots = [str(Path(__file__).resolve().parents[1]), str(Path(cutover_lib.__file__).resolve().parents[1])]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*roots, env.get("PYTHONPATH")) if p)
    env.pop("PYTHONWARNINGS", None)
    env["PYTHONUNBUFFERED"] = "1"
    if env.get("LAB_TRUST_DIR"):  # (the services work in the data folder: a relative folder is the caller's)
        folders = env["LAB_TRUST_DIR"].split(os.pathsep)
        env["LAB_TRUST_DIR"] = os.pathsep.join(str(Path(p).resolve()) for p in folders if p)
    return env


def _write_trusted_signer_key(config: LabConfig) -> Path:
    """Write the signer's PUBLIC key PEM to ``config.trusted_signer_key`` (mode 0644).

    The private key (``<data>/keys/signer.pem``, 0600) is created here on first start if the
    signer has not made it yet: the same exclusive create the signer uses, so whoever comes
    first wins and both load the same key.
    """
    from ._keys import load_or_create_key, public_pem

    key = load_or_create_key(config.data_dir / "keys" / "signer.pem")
    target = config.trusted_signer_key
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(public_pem(key))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def up(config: LabConfig, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """Start every lab service that is not already running, wait until all answer ``/healthz`` 200.

    Also (re)installs the stand-in executables into ``config.bin_dir`` and the signer's
    public key at ``config.trusted_signer_key``, every time (even if all services run).
    Idempotent: running services are left alone, but their health is checked too. Raises
    :class:`LabError` if a port is taken by something else or a service exits during start,
    and :class:`LabUnhealthy` (services left running, to inspect) if a service does not answer
    ``/healthz`` with 200 within ``timeout`` -- at once if a fault that makes it unhealthy
    (``<service>.unhealthy``, ``<service>.down``) is set. Other faults (``runtime.ingest_error``,
    ``scanner.queue_down``, ...) leave ``/healthz`` healthy. Returns :func:`status`.
    """
    from ._provision import provision

    _prometheus.installed(config)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    config.log_dir.mkdir(parents=True, exist_ok=True)
    provision(config)
    _store.connect(config.data_dir).close()  # schema + WAL once, before the servers race
    try:
        install_standins(config.bin_dir)
        _write_trusted_signer_key(config)
    except (OSError, ValueError) as exc:
        raise LabError(f"could not prepare the lab folder {config.data_dir}: {exc}") from exc

    to_start: list[str] = []
    for service in SERVICES:
        if _running_pid(config, service) is not None:
            continue
        config.pid_file(service).unlink(missing_ok=True)
        port = config.ports[service]
        if not _port_free(config.host, port):
            raise LabError(
                f"port {port} on {config.host} (lab {service}) is already in use by another process",
                hint="stop it, or move the lab with --port-base N / LabConfig(ports=...)",
            )
        to_start.append(service)

    _prometheus.start(config)  # first: it applies its scrape targets ~5 s after it starts
    started: dict[str, int] = {}
    if to_start:
        env = _child_env(config)
        jobs = [
            {"service": s, "args": _serve_argv(config, s)[3:], "log": str(config.log_file(s)), "env": env,
             "data_dir": str(config.data_dir), "pid_file": str(config.pid_file(s))}
            for s in to_start
        ]
        try:  # one interpreter imports the services and forks them (stellaops_lab._launch)
            launched = subprocess.run(
                [sys.executable, "-m", LAUNCH_MODULE],
                input=json.dumps(jobs),
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
                env=env,
            )
            pids: list[int] = json.loads(launched.stdout)
        except (subprocess.SubprocessError, OSError, ValueError) as exc:
            raise launch_failed("the lab services", exc, config) from exc
        started = dict(zip(to_start, pids))  # (the launcher wrote their pid files)

    problems = _wait_until_healthy(config, started, timeout)
    _prometheus.wait(config)
    state = status(config)
    if problems:
        raise LabUnhealthy(problems, state, hint=_inspect_hint(config))
    return state


def _baked_faults(config: LabConfig) -> dict[str, Any]:
    """The faults a start bakes into the processes (``LabConfig.faults``, else ``$LAB_FAULTS``)."""
    if config.faults:
        return dict(config.faults)
    try:
        baked = json.loads(os.environ.get("LAB_FAULTS") or "{}")
    except ValueError:
        return {}
    return baked if isinstance(baked, dict) else {}


def _probe(config: LabConfig, service: str, timeout: float, known: dict[str, Any]) -> tuple[str | None, str | None]:
    """GET ``/healthz`` once: ``(None, None)`` if it answers 200, else ``(what it said, the fault
    that makes it so or None)``; ``known`` are the faults set in the store or baked at start."""
    url = f"{config.url(service)}/healthz"
    try:
        code, body = _get_json(config.host, config.ports[service], "/healthz", timeout)
    except OSError as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else (
            f"no answer within {timeout:.1f}s" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__)
        fault = f"{service}.down"
        return f"GET {url}: {reason}", fault if known.get(fault) not in (None, False, 0) else None
    if code == 200:
        return None, None
    shown = json.dumps(body) if body is not None else "(no JSON body)"
    said = f"GET {url} answered HTTP {code} {shown[:200]}"
    fault = f"{service}.unhealthy"
    if known.get(fault) in (None, False, 0):
        try:  # the process knows its faults, the baked ones too
            _, live = _get_json(config.host, config.ports[service], "/-/lab/faults", 1.0)
            live_faults = live.get("faults") if isinstance(live, dict) else None
            if not (isinstance(live_faults, dict) and live_faults.get(fault) not in (None, False, 0)):
                return said, None
        except OSError:
            return said, None
    return said, fault


def _wait_until_healthy(config: LabConfig, started: dict[str, int], timeout: float) -> dict[str, str]:
    """Poll every service's ``/healthz`` until each answers 200; returns the ones that did not.

    A service whose fault says it will not be healthy (``unhealthy``, ``down``) is given up on at
    once; the others get until ``timeout``. A service started here that exits is a ``LabError``.
    """
    deadline = time.monotonic() + timeout
    pending = list(SERVICES)
    last: dict[str, str] = {}
    problems: dict[str, str] = {}
    baked = _baked_faults(config)
    while pending:
        stored = list_faults(config)
        known = {**baked, **stored}
        for service in list(pending):
            pid = started.get(service)
            if pid is not None and not _proc_alive(pid):
                log = config.log_file(service)
                config.pid_file(service).unlink(missing_ok=True)
                raise LabError(
                    f"lab {service} exited during start: {_log_tail(log) or 'no output'}",
                    hint=f"see {log}",
                )
            said, fault = _probe(config, service, max(0.5, deadline - time.monotonic()), known)
            if said is None:
                pending.remove(service)
            elif fault is not None:
                how = "is set" if fault in stored else "is baked into this start (LAB_FAULTS)"
                problems[service] = f"{said} (fault {fault} {how}; log {config.log_file(service)})"
                pending.remove(service)
            else:
                last[service] = said
        if not pending:
            break
        if time.monotonic() > deadline:
            for service in pending:
                problems[service] = (f"{last[service]}, still after {timeout:g}s "
                                     f"(log {config.log_file(service)})")
            break
        time.sleep(0.05)
    return {service: problems[service] for service in SERVICES if service in problems}


def _inspect_hint(config: LabConfig) -> str:
    """How to look at a lab left running: its status command, its logs, and how to stop it."""
    data = f"--data-dir {config.data_dir}"
    base = config.ports[SERVICES[0]]
    if config.ports != {name: base + i for i, name in enumerate(SERVICES)}:
        ports = "; ".join(f"{name} {port}" for name, port in config.ports.items())
        status_cmd = f"cutover lab status {data} (ports {ports})"
    else:
        status_cmd = f"cutover lab status {data}" + (f" --port-base {base}" if base != DEFAULT_PORT_BASE else "")
    return (f"left running to inspect: {status_cmd}; logs in {config.log_dir}; then clear the fault "
            f"(cutover lab fault clear {data}) or stop the lab (cutover lab down {data})")


def down(config: LabConfig) -> list[str]:
    """Stop the lab processes ``up`` started for this data folder; returns their names.

    A pid file whose process is gone, or is not our serve module for this data folder,
    is removed without signalling anything.
    """
    targets: dict[str, int] = {}
    for service in SERVICES:
        path = config.pid_file(service)
        pid = _read_pid(path)
        if pid is None:
            path.unlink(missing_ok=True)
            continue
        if _is_ours(pid, service, config):
            targets[service] = pid
        else:
            path.unlink(missing_ok=True)
    for pid in targets.values():
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < deadline and any(_proc_alive(p) for p in targets.values()):
        time.sleep(0.05)
    for service, pid in targets.items():
        if _is_ours(pid, service, config):
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < deadline and any(_proc_alive(p) for p in targets.values()):
        time.sleep(0.05)
    for service in targets:
        config.pid_file(service).unlink(missing_ok=True)
    if _prometheus.stop(config):
        targets[_prometheus.NAME] = 0
    return list(targets)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def status(config: LabConfig) -> dict[str, dict[str, Any]]:
    """Per service: pid, running, url, healthy, http_status, version, faults."""
    faults = list_faults(config)
    result: dict[str, dict[str, Any]] = {}
    for service in SERVICES:
        pid = _read_pid(config.pid_file(service))
        running = pid is not None and _is_ours(pid, service, config)
        healthy = False
        version = None
        http_status: int | None = None
        try:
            http_status, body = _get_json(config.host, config.ports[service], "/healthz", 1.0)
            healthy = http_status == 200
            if isinstance(body, dict):
                version = body.get("version")
        except OSError:
            pass
        mine = {k: v for k, v in faults.items() if k.startswith(f"{service}.")}
        if http_status is not None:  # the process also knows faults baked in by LAB_FAULTS
            try:
                _, live = _get_json(config.host, config.ports[service], "/-/lab/faults", 1.0)
                if isinstance(live, dict) and isinstance(live.get("faults"), dict):
                    mine.update(live["faults"])
            except OSError:
                pass
        result[service] = {
            "pid": pid if running else None,
            "running": running,
            "url": config.url(service),
            "healthy": healthy,
            "http_status": http_status,
            "version": version,
            "faults": mine,
        }
    return result


def set_fault(config: LabConfig, service: str, fault: str, value: Any = True) -> str:
    """Switch fault ``<service>.<fault>`` on (false/0/None switches it off). Returns its name."""
    fault_name(service, fault)  # validate before creating anything
    conn = _store.connect(config.data_dir)
    try:
        return _store.set_fault(conn, service, fault, value)
    finally:
        conn.close()


def clear_faults(config: LabConfig, service: str | None = None) -> list[str]:
    """Clear every fault, or only ``service``'s; returns the names cleared."""
    if service is not None and service not in SERVICES:
        raise LabConfigError(f"unknown lab service {service!r}", hint=f"one of: {', '.join(SERVICES)}")
    try:
        conn = _store.connect(config.data_dir, create=False)
    except FileNotFoundError:
        return []
    try:
        return _store.clear_faults(conn, service)
    finally:
        conn.close()


def list_faults(config: LabConfig) -> dict[str, Any]:
    """Active faults by full name, e.g. ``{"scanner.slow": 500}``."""
    try:
        conn = _store.connect(config.data_dir, create=False)
    except FileNotFoundError:
        return {}
    try:
        return _store.get_faults(conn)
    finally:
        conn.close()
