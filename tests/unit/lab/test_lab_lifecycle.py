"""up / down / status on private labs: idempotence, persistence, and killing only our own."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from stellaops_lab import SERVICES, LabConfig, LabError, _prometheus, down, status, up
from stellaops_lab._control import _is_ours
from stellaops_lab._errors import LabUnhealthy

from lab_helpers import SBOM, alive, auth, make_config
from nb_helpers import free_block

pytestmark = pytest.mark.lab


def test_up_twice_persistence_and_clean_down(tmp_path: Path, http: httpx.Client,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STELLAOPS_RELEASE", "2025.10.0-lab")
    monkeypatch.setenv("LAB_FAULTS", json.dumps({"notify.unhealthy": True}))
    config = make_config(tmp_path / "lab", scan_seconds=0)
    try:
        with pytest.raises(LabUnhealthy) as info:  # a faulty release: up says so (issue 12), and keeps it running
            up(config)
        assert list(info.value.problems) == ["notify"]
        first = info.value.state
        pids = {s: row["pid"] for s, row in first.items()}
        assert all(isinstance(p, int) and alive(p) for p in pids.values())
        assert first["scanner"]["version"] == "2025.10.0-lab"
        assert first["notify"]["healthy"] is False  # LAB_FAULTS baked in at start
        assert first["notify"]["faults"] == {"notify.unhealthy": True}
        for service in SERVICES:
            assert (config.run_dir / f"{service}.pid").read_text().strip() == str(pids[service])
            assert config.log_file(service).exists()
        # forked from one launcher (stellaops_lab._launch): each recognised by its name and data folder
        for service in SERVICES:
            assert Path(f"/proc/{pids[service]}/comm").read_text().strip() == f"lab-{service}"
        assert not _is_ours(pids["scanner"], "web", config)
        assert not _is_ours(pids["scanner"], "scanner", make_config(tmp_path / "another-lab"))

        with pytest.raises(LabUnhealthy) as again:  # harmless: same processes, still named unhealthy
            up(config)
        assert list(again.value.problems) == ["notify"]
        assert {s: row["pid"] for s, row in again.value.state.items()} == pids

        # write data everywhere
        jwks = http.get(f"{config.url('authority')}/jwks").json()
        key = http.get(f"{config.url('signer')}/api/v1/signer/key").json()
        http.post(f"{config.url('authority')}/token", data={"grant_type": "client_credentials"}, auth=auth(config))
        scan_id = http.post(f"{config.url('scanner')}/api/v1/scans", content=SBOM.read_bytes()).json()["id"]
        report = http.get(f"{config.url('scanner')}/api/v1/scans/{scan_id}/report").json()
        signed = http.post(f"{config.url('signer')}/api/v1/signer/sign", json={"a": 1}).json()
        uuid = http.post(f"{config.url('attestor')}/api/v1/attestations", json=signed).json()["uuid"]
        http.post(f"{config.url('runtime')}/runtime/events", json={"eventId": "persist-1"})

        stopped = down(config)
        assert stopped == [*SERVICES, "prometheus"]
        deadline = time.monotonic() + 5
        while any(alive(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(p) for p in pids.values())
        assert not list(config.run_dir.glob("*.pid"))
        assert not any(row["running"] or row["healthy"] for row in status(config).values())
        assert down(config) == []  # second down is harmless

        monkeypatch.delenv("LAB_FAULTS")
        restarted = up(config)
        assert all(row["pid"] not in pids.values() for row in restarted.values())
        assert http.get(f"{config.url('authority')}/jwks").json() == jwks
        assert http.get(f"{config.url('signer')}/api/v1/signer/key").json() == key
        assert http.get(f"{config.url('authority')}/-/audit").json()["tokens_issued"] == 1
        assert http.get(f"{config.url('scanner')}/api/v1/scans/{scan_id}/report").json() == report
        assert http.get(f"{config.url('attestor')}/api/v1/attestations/{uuid}/verify").json()["ok"] is True
        assert http.get(f"{config.url('attestor')}/-/audit").json()["submissions"] == 1
        events = http.get(f"{config.url('runtime')}/api/v1/runtime/events", params={"eventId": "persist-1"})
        assert events.json()["count"] == 1
        # LAB_FAULTS is baked into the processes (a faulty release), not stored: a restart
        # without it (the previous release) is healthy again
        assert restarted["notify"]["faults"] == {} and restarted["notify"]["healthy"] is True
    finally:
        down(config)


def test_down_never_kills_a_foreign_process(tmp_path: Path) -> None:
    config = make_config(tmp_path / "lab")
    config.run_dir.mkdir(parents=True)
    foreign = subprocess.Popen(["sleep", "30"])
    try:
        for service in ("scanner", "web"):
            config.pid_file(service).write_text(f"{foreign.pid}\n")
        (config.run_dir / "runtime.pid").write_text("not a pid\n")
        assert down(config) == []
        time.sleep(0.2)
        assert foreign.poll() is None and alive(foreign.pid)
        assert not list(config.run_dir.glob("*.pid"))  # stale pid files cleaned up
        assert status(config)["scanner"]["running"] is False
    finally:
        foreign.kill()
        foreign.wait()


class CallerKilled(BaseException):
    """The caller of a launcher dies (kill -9 of the kernel) after the launcher ran, before it reads the pids."""


def test_a_caller_killed_right_after_a_launch_leaves_every_started_process_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cutover killed inside the lab restart (CI: kill -9 between Prometheus's start and its pid file)
    left a Prometheus nobody recorded, holding its port: every later ``up`` failed on it."""
    config = make_config(tmp_path / "lab", scan_seconds=0)
    real_run = subprocess.run

    def launch_then_die(*args: object, **kwargs: object) -> object:
        real_run(*args, **kwargs)
        raise CallerKilled

    monkeypatch.setattr(subprocess, "run", launch_then_die)
    try:
        with pytest.raises(CallerKilled):  # Prometheus is launched first
            up(config)
        prometheus = _prometheus.running_pid(config)
        assert prometheus is not None and alive(prometheus)
        with pytest.raises(CallerKilled):  # Prometheus runs: this time the services are launched
            up(config)
        pids = {s: int(config.pid_file(s).read_text()) for s in SERVICES}
        assert all(_is_ours(pid, service, config) for service, pid in pids.items())
        monkeypatch.setattr(subprocess, "run", real_run)
        assert set(up(config)) == set(SERVICES)  # the recorded processes are the lab: nothing new
        assert _prometheus.running_pid(config) == prometheus
        assert {s: int(config.pid_file(s).read_text()) for s in SERVICES} == pids
    finally:
        monkeypatch.setattr(subprocess, "run", real_run)
        stopped = down(config)
    assert stopped == [*SERVICES, "prometheus"]
    deadline = time.monotonic() + 5
    while any(alive(p) for p in [*pids.values(), prometheus]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in [*pids.values(), prometheus])


def test_up_fails_clearly_when_a_port_is_taken(tmp_path: Path) -> None:
    config = make_config(tmp_path / "lab")
    with socket.socket() as squatter:
        squatter.bind((config.host, config.ports["signer"]))
        squatter.listen()
        with pytest.raises(LabError) as info:
            up(config)
    message = str(info.value)
    assert f"port {config.ports['signer']}" in message and "--port-base" in message
    assert "\n" not in message
    assert not list(config.run_dir.glob("*.pid"))  # nothing was started
    assert down(config) == []


def test_up_fails_clearly_when_a_service_log_cannot_be_opened(tmp_path: Path) -> None:
    """The launcher opens every log before it forks: a log it cannot write fails the whole start on
    one line naming the file, and no service is left running without a pid file."""
    config = make_config(tmp_path / "lab")
    config.log_file("scanner").mkdir(parents=True)  # a folder where the log file goes
    try:
        with pytest.raises(LabError) as info:
            up(config)
        message = str(info.value)
        assert message.startswith("could not start the lab services: IsADirectoryError") and "scanner.log" in message
        assert "\n" not in message and "must be writable" in info.value.hint
        assert not [p for p in config.run_dir.glob("*.pid") if p.stem in SERVICES]
        data = config.data_dir.resolve()
        forked = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _lab_child_of(p, data)]
        assert forked == []
    finally:
        down(config)


def test_a_pid_file_that_cannot_be_written_stops_the_program_it_was_for(tmp_path: Path) -> None:
    """Prometheus's launcher writes its pid file; when it cannot, the Prometheus it started is stopped
    (one that nobody recorded would hold its port against every later start) and the start fails."""
    config = make_config(tmp_path / "lab")
    config.run_dir.mkdir(parents=True)
    config.pid_file("prometheus").mkdir()  # a folder where the pid file goes
    try:
        with pytest.raises(LabError) as info:
            up(config)
        assert str(info.value).startswith("could not start prometheus: IsADirectoryError"), info.value
        deadline = time.monotonic() + 5
        while _prometheus_of(config) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _prometheus_of(config) == []
        assert not list(config.run_dir.glob("*.tmp"))  # nor a half-written pid file
    finally:
        config.pid_file("prometheus").rmdir()
        down(config)


def _prometheus_of(config: LabConfig) -> list[int]:
    """Live (not zombie) processes whose command line names this lab's folder (its Prometheus)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(config.data_dir).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return [pid for pid in found if alive(pid)]


def _lab_child_of(proc: Path, data: Path) -> bool:
    try:
        return (proc / "comm").read_text().startswith("lab-") and Path((proc / "cwd").readlink()) == data
    except OSError:
        return False


def test_a_lab_started_with_a_relative_folder_is_recognised_from_anywhere(tmp_path: Path) -> None:
    """``cutover lab up --data-dir .lab`` in the project folder, then another process (``make demo``, a
    kernel's lab upgrade) that names the folder absolutely: every process, Prometheus too, is found
    running -- no second Prometheus fails on the taken port -- and ``down`` stops them all."""
    base = free_block(10)
    cli = [sys.executable, "-m", "cutover_lib.cli.app", "lab"]
    config = LabConfig.from_port_base(tmp_path / "rel-lab", base)
    try:
        started = subprocess.run([*cli, "up", "--data-dir", "rel-lab", "--port-base", str(base)], cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120, check=False)
        assert started.returncode == 0, started.stdout + started.stderr
        prometheus = _prometheus.running_pid(config)
        assert prometheus is not None and all(row["running"] for row in status(config).values())
        up(config)  # from this process and folder: nothing left to start
        assert _prometheus.running_pid(config) == prometheus
    finally:
        stopped = down(config)
    assert sorted(stopped) == sorted([*SERVICES, "prometheus"])
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _runs_in(p, tmp_path)]


def _runs_in(proc: Path, folder: Path) -> bool:
    try:
        return Path((proc / "cwd").readlink()).is_relative_to(folder)
    except OSError:
        return False
