"""The lab's Prometheus: Debian's real ``prometheus``, scraping every lab service's ``/metrics``.

Not a stand-in: the runbook's Section 7 monitoring and the T-30m "dashboards green" query its
HTTP API with the PromQL in params, as they would a site's Prometheus.  One job per service
(``job="scanner"``, ...), scraped every ``LabConfig.scrape_interval``; its data lives under
``<data_dir>/prometheus``; ``up`` starts it with the services, ``down`` stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ._config import SERVICES, LabConfig
from ._errors import LabError

__all__ = ["config_text", "installed", "running_pid", "start", "stop", "wait"]

NAME = "prometheus"


def config_text(config: LabConfig) -> str:
    """``prometheus.yml``: one scrape job per lab service, on its loopback port."""
    host = f"[{config.host}]" if ":" in config.host else config.host
    jobs = "".join(f"  - job_name: {s}\n    static_configs: [{{targets: ['{host}:{config.ports[s]}']}}]\n"
                   for s in SERVICES)
    return (f"# written by the lab (stellaops_lab._prometheus); rewritten at every start\n"
            f"global: {{scrape_interval: {config.scrape_interval}, evaluation_interval: {config.scrape_interval}}}\n"
            f"scrape_configs:\n{jobs}")


def _folder(config: LabConfig) -> Path:
    return config.data_dir / "prometheus"


def running_pid(config: LabConfig) -> int | None:
    """The pid of this lab's Prometheus (its pid file names a live ``prometheus`` on our config)."""
    from ._control import _proc_alive, _read_pid  # (the services' helpers; _control imports this module)

    pid = _read_pid(config.pid_file(NAME))
    if pid is None or not _proc_alive(pid):
        return None
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    files = [cwd / a.removeprefix("--config.file=") for a in args if a.startswith("--config.file=")]
    # (a relative --config.file is read from the folder it was started in)
    return pid if any(f.resolve() == (_folder(config) / "prometheus.yml").resolve() for f in files) else None


def _ready(config: LabConfig, query: str = "count(up)") -> bool:
    """Whether ``query`` counts every lab service (``count(up)``: each scraped at least once)."""
    import http.client
    from urllib.parse import quote

    conn = http.client.HTTPConnection(config.host, config.prometheus_port, timeout=1)
    try:
        conn.request("GET", f"/api/v1/query?query={quote(query)}")
        body = conn.getresponse().read().decode()
    except OSError:
        return False
    finally:
        conn.close()
    return f'"{len(SERVICES)}"]' in body  # ("value":[<time>,"7"])


def monitoring_green(config: LabConfig, timeout: float = 30.0) -> None:
    """Until the lab's Prometheus saw every service up at its last scrape.  Section 2 compressed:
    on the lab, T-30m runs seconds after the T-2h rehearsal restarted and loaded the services, where
    a site has 90 minutes; a demo or test waits here for what those minutes would give."""
    if not config.prometheus:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _ready(config, "count(up == 1)"):
            return
        time.sleep(0.2)
    raise LabError(f"the lab's Prometheus still sees a service down after {timeout:g}s",
                   hint=f"see {config.prometheus_url}/targets")


def installed(config: LabConfig | None = None) -> str:
    """The ``prometheus`` program, or a LabError saying how to install it ("" for a lab without)."""
    if config is not None and not config.prometheus:
        return ""
    exe = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.access(exe, os.X_OK):
        raise LabError("prometheus is not installed (the lab's monitoring is Debian's Prometheus)",
                       hint="apt-get install prometheus (make test and make demo install it)")
    return exe


def start(config: LabConfig) -> None:
    """Start this lab's Prometheus unless it runs (:func:`wait` then waits for its first scrape:
    Prometheus applies new scrape targets ~5 s after it starts, so ``up`` starts it first)."""
    if not config.prometheus or running_pid(config) is not None:
        return
    exe = installed()
    folder = _folder(config)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "prometheus.yml").write_text(config_text(config))
    argv = [exe, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address={config.host}:{config.prometheus_port}", "--storage.tsdb.retention.time=2d",
            "--log.level=warn"]
    from ._control import LAUNCH_MODULE, launch_failed  # spawned by a launcher that exits: no child of ours

    job = {"argv": argv, "log": str(config.log_file(NAME)), "env": {"PATH": os.environ.get("PATH", "/usr/bin")},
           "pid_file": str(config.pid_file(NAME))}  # (written by the launcher)
    try:
        subprocess.run([sys.executable, "-m", LAUNCH_MODULE, "spawn"], input=json.dumps([job]), capture_output=True,
                       text=True, timeout=30, check=True)
    except (subprocess.SubprocessError, OSError) as exc:
        raise launch_failed("prometheus", exc, config) from exc


def wait(config: LabConfig, timeout: float = 20.0) -> None:
    """Until this lab's Prometheus has scraped every service once (a LabError if it exited)."""
    if not config.prometheus:
        return
    log = config.log_file(NAME)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_pid(config) is None:
            tail = log.read_text(errors="replace").strip().splitlines()[-2:] if log.exists() else []
            raise LabError(f"prometheus is not running: {' | '.join(tail) or 'no log'}",
                           hint=f"port {config.prometheus_port} taken? see {log}")
        if _ready(config):
            return
        time.sleep(0.1)
    raise LabError(f"prometheus on {config.prometheus_url} has not scraped every lab service within {timeout:g}s",
                   hint=f"see {log} and {config.prometheus_url}/targets")


def stop(config: LabConfig, grace: float = 5.0) -> bool:
    """Stop this lab's Prometheus; True if one was running."""
    pid = running_pid(config)
    config.pid_file(NAME).unlink(missing_ok=True)
    if pid is None:
        return False
    from ._control import _proc_alive, _signal

    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _proc_alive(pid):
        time.sleep(0.05)
    if _proc_alive(pid):
        _signal(pid, signal.SIGKILL)
    return True
