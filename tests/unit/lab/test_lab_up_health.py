"""Issue 12: ``up`` / ``cutover lab up`` fail when a lab service is not healthy after start.

Which faults make a service unhealthy: ``<service>.unhealthy`` (``/healthz`` answers 503) and
``<service>.down`` (nothing listens); ``slow`` only if ``/healthz`` does not answer within the
timeout. The others (``runtime.ingest_error``, ``scanner.queue_down``, ...) leave ``/healthz`` 200.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stellaops_lab import LabConfig, down, set_fault, status, up
from stellaops_lab._errors import LabUnhealthy

from lab_helpers import alive, make_config
from nb_helpers import free_block

pytestmark = pytest.mark.lab


def test_up_names_each_unhealthy_service_and_leaves_the_lab_running(tmp_path: Path) -> None:
    config = make_config(tmp_path / "lab")
    config.faults = {"scanner.unhealthy": True, "web.down": True,  # these two make /healthz fail
                     "runtime.ingest_error": True, "scanner.queue_down": True, "signer.bad_signature": True}
    try:
        with pytest.raises(LabUnhealthy) as info:
            up(config, timeout=20)
        exc = info.value
        assert list(exc.problems) == ["scanner", "web"]  # runtime (ingest_error) and signer are healthy
        assert exc.problems["scanner"].startswith(
            f"GET {config.url('scanner')}/healthz answered HTTP 503 {{\"status\": \"Unhealthy\"")
        assert "(fault scanner.unhealthy is baked into this start (LAB_FAULTS); log " in exc.problems["scanner"]
        assert str(config.log_file("scanner")) in exc.problems["scanner"]
        assert exc.problems["web"].startswith(f"GET {config.url('web')}/healthz: connection refused (fault web.down")
        assert exc.lines()[0].startswith("lab scanner is not healthy: GET ")
        assert "\n" not in str(exc) and str(exc).startswith("2 lab service(s) not healthy: scanner: ")
        assert f"cutover lab status --data-dir {config.data_dir}" in (exc.hint or "")
        assert exc.exit_code == 1
        # kept running, for an operator to inspect
        state = status(config)
        assert all(row["running"] and alive(row["pid"]) for row in state.values())
        assert [s for s, row in state.items() if not row["healthy"]] == ["scanner", "web"]
        assert exc.state["runtime"]["healthy"] and exc.state["runtime"]["faults"] == {"runtime.ingest_error": True}
    finally:
        down(config)


def test_up_waits_for_the_timeout_when_no_fault_explains_it(tmp_path: Path) -> None:
    """A /healthz that does not answer within the timeout (here: a slow fault longer than it) fails up."""
    config = make_config(tmp_path / "lab")
    try:
        up(config, timeout=20)  # started and healthy; then up again, on the running lab, with a short timeout
        set_fault(config, "scanner", "slow", 4000)
        with pytest.raises(LabUnhealthy) as info:
            up(config, timeout=1)
        assert list(info.value.problems) == ["scanner"]
        assert "/healthz: no answer within" in info.value.problems["scanner"]
        assert "still after 1s" in info.value.problems["scanner"]
    finally:
        down(config)


def _lab_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_FAULTS", "CUTOVER_LAB_DIR", "CUTOVER_LAB_PORT_BASE")}
    return subprocess.run([sys.executable, "-m", "cutover_lib.cli.app", "lab", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_lab_up_exits_1_naming_the_unhealthy_service_and_0_when_healthy(tmp_path: Path) -> None:
    data, base = tmp_path / "lab", free_block()
    where = ["--data-dir", str(data)]
    config = LabConfig.from_port_base(data, base)
    try:
        assert _lab_cli("fault", "set", "runtime", "ingest_error", *where).returncode == 0
        healthy = _lab_cli("up", *where, "--port-base", str(base), "--timeout", "20")
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr  # a fault that is not a health fault
        assert healthy.stderr == ""

        assert _lab_cli("fault", "set", "scanner", "unhealthy", *where).returncode == 0
        res = _lab_cli("up", *where, "--port-base", str(base), "--timeout", "20")
        assert res.returncode == 1, res.stdout + res.stderr
        assert "Traceback" not in res.stdout + res.stderr
        lines = res.stderr.splitlines()
        assert len(lines) == 2, res.stderr
        assert lines[0].startswith(f"error: lab scanner is not healthy: GET http://127.0.0.1:{base + 1}/healthz "
                                   "answered HTTP 503 {\"status\": \"Unhealthy\"")
        assert f"(fault scanner.unhealthy is set; log {data / 'logs' / 'scanner.log'})" in lines[0]
        assert lines[1].startswith(f"hint: left running to inspect: cutover lab status --data-dir {data} "
                                   f"--port-base {base}; logs in {data / 'logs'}")
        assert "scanner" in res.stdout and "runtime" in res.stdout  # the status table, as on success
        assert all(row["running"] for row in status(config).values())  # left running

        assert _lab_cli("fault", "clear", *where).returncode == 0
        again = _lab_cli("up", *where, "--port-base", str(base), "--timeout", "20")
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        down(config)


def test_cli_lab_down_on_a_lab_folder_it_did_not_leave_so_is_one_line(tmp_path: Path) -> None:
    """A pid file that is a folder (or any file the lab cannot remove): one error line and a hint,
    exit 1 -- it was a traceback."""
    data = tmp_path / "lab"
    (data / "run" / "prometheus.pid").mkdir(parents=True)
    res = _lab_cli("down", "--data-dir", str(data))
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.splitlines() == [f"error: Is a directory: {data / 'run' / 'prometheus.pid'}",
                                       "hint: the lab folder must hold the lab's own files, writable (--data-dir)"]
