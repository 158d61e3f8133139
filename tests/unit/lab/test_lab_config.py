"""Lab configuration, fault registry, SQLite store and CLI (no lab processes started)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import stellaops_lab as lab
from stellaops_lab import (
    DEFAULT_PORTS,
    FAULTS,
    SERVICES,
    LabConfig,
    LabConfigError,
    LabError,
    clear_faults,
    list_faults,
    set_fault,
)
from stellaops_lab._cli import lab_app


def test_exports_sorted_and_present() -> None:
    assert lab.__all__ == sorted(lab.__all__)
    for name in lab.__all__:
        assert hasattr(lab, name)


def test_importing_lab_and_cli_loads_no_heavy_modules() -> None:
    code = (
        "import sys, stellaops_lab, stellaops_lab._cli;"
        "print([m for m in sys.modules if m.split('.')[0] in ('tornado','cryptography','jwt','rich')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_default_ports_and_urls(tmp_path: Path) -> None:
    config = LabConfig(tmp_path)
    assert config.ports == {
        "authority": 18080, "scanner": 18081, "signer": 18082, "attestor": 18083,
        "notify": 18084, "web": 18085, "runtime": 18086,
    }
    assert DEFAULT_PORTS == config.ports
    assert config.url("signer") == "http://127.0.0.1:18082"
    assert config.pid_file("web") == tmp_path / "run" / "web.pid"
    assert config.log_file("web") == tmp_path / "logs" / "web.log"
    assert config.scan_seconds == 2.0


def test_partial_ports_merge_with_defaults(tmp_path: Path) -> None:
    config = LabConfig(tmp_path, ports={"scanner": 9999})
    assert config.ports["scanner"] == 9999 and config.ports["authority"] == 18080


def test_port_base(tmp_path: Path) -> None:
    config = LabConfig.from_port_base(tmp_path, 28000)
    assert [config.ports[s] for s in SERVICES] == list(range(28000, 28007))


@pytest.mark.parametrize("ports", [{"nope": 1}, {"web": 0}, {"web": 70000}])
def test_bad_ports_rejected(tmp_path: Path, ports: dict[str, int]) -> None:
    with pytest.raises(LabConfigError):
        LabConfig(tmp_path, ports=ports)


def test_url_of_unknown_service(tmp_path: Path) -> None:
    with pytest.raises(LabConfigError):
        LabConfig(tmp_path).url("mongo")


def test_fault_names() -> None:
    for service in SERVICES:
        for fault in ("unhealthy", "slow", "down"):
            assert f"{service}.{fault}" in FAULTS
    for name in ("authority.wrong_issuer", "signer.bad_signature", "scanner.queue_down",
                 "scanner.scan_stuck", "runtime.ingest_error", "web.slow"):
        assert name in FAULTS


def test_fault_store_round_trip(tmp_path: Path) -> None:
    config = LabConfig(tmp_path)
    assert list_faults(config) == {}
    assert clear_faults(config) == []
    assert set_fault(config, "scanner", "slow", 250) == "scanner.slow"
    assert set_fault(config, "scanner", "scanner.unhealthy") == "scanner.unhealthy"
    set_fault(config, "web", "slow", 100)
    assert list_faults(config) == {"scanner.slow": 250, "scanner.unhealthy": True, "web.slow": 100}
    set_fault(config, "scanner", "slow", 0)  # zero switches it off
    assert "scanner.slow" not in list_faults(config)
    assert clear_faults(config, "scanner") == ["scanner.unhealthy"]
    assert list_faults(config) == {"web.slow": 100}
    assert clear_faults(config) == ["web.slow"]


@pytest.mark.parametrize(("service", "fault"), [("mongo", "down"), ("web", "wrong_issuer"), ("scanner", "x")])
def test_unknown_faults_rejected_without_creating_state(tmp_path: Path, service: str, fault: str) -> None:
    data = tmp_path / "lab"
    with pytest.raises(LabConfigError) as info:
        set_fault(LabConfig(data), service, fault)
    assert info.value.hint
    assert not data.exists()


def test_lab_error_carries_hint() -> None:
    err = LabError("port 1 busy", hint="use --port-base")
    assert err.hint == "use --port-base"
    assert str(err) == "port 1 busy (use --port-base)"
    assert issubclass(LabConfigError, LabError)


# --- CLI: a thin layer, tested by what it passes -------------------------------------------


def test_cli_fault_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["--data-dir", str(tmp_path)]
    result = runner.invoke(lab_app, ["fault", "set", "scanner", "slow", "300", *args])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "scanner.slow = 300"
    runner.invoke(lab_app, ["fault", "set", "authority", "wrong_issuer", *args])
    result = runner.invoke(lab_app, ["fault", "list", *args])
    assert result.output.splitlines() == ["authority.wrong_issuer = true", "scanner.slow = 300"]
    result = runner.invoke(lab_app, ["fault", "list", "--all", *args])
    assert len(result.output.splitlines()) == len(FAULTS)
    result = runner.invoke(lab_app, ["fault", "clear", "scanner", *args])
    assert result.output.strip() == "cleared: scanner.slow"
    result = runner.invoke(lab_app, ["fault", "clear", *args])
    assert result.output.strip() == "cleared: authority.wrong_issuer"
    assert runner.invoke(lab_app, ["fault", "list", *args]).output.strip() == "no faults set"


def test_cli_data_dir_from_env(tmp_path: Path) -> None:
    result = CliRunner().invoke(lab_app, ["fault", "set", "web", "slow", "5"],
                                env={"CUTOVER_LAB_DIR": str(tmp_path)})
    assert result.exit_code == 0
    assert list_faults(LabConfig(tmp_path)) == {"web.slow": 5}


def test_cli_config_error_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(lab_app, ["fault", "set", "scanner", "bogus", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("error: unknown fault 'bogus'")
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_lab_error_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stellaops_lab import _control

    def boom(config: LabConfig, timeout: float) -> Any:
        raise LabError("port 18081 on 127.0.0.1 (lab scanner) is already in use", hint="use --port-base")

    monkeypatch.setattr(_control, "up", boom)
    result = CliRunner().invoke(lab_app, ["up", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output == "error: port 18081 on 127.0.0.1 (lab scanner) is already in use (use --port-base)\n"


def test_cli_passes_config_to_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stellaops_lab import _control

    seen: dict[str, Any] = {}

    def fake_up(config: LabConfig, timeout: float) -> dict[str, Any]:
        seen["up"] = (config, timeout)
        return {}

    def fake_down(config: LabConfig) -> list[str]:
        seen["down"] = config
        return ["scanner"]

    monkeypatch.setattr(_control, "up", fake_up)
    monkeypatch.setattr(_control, "down", fake_down)
    runner = CliRunner()
    result = runner.invoke(lab_app, ["up", "--data-dir", str(tmp_path), "--port-base", "28000",
                                     "--scan-seconds", "0.25", "--timeout", "5"])
    assert result.exit_code == 0, result.output
    config, timeout = seen["up"]
    assert config.data_dir == tmp_path and config.ports["authority"] == 28000
    assert config.ports["runtime"] == 28006 and config.scan_seconds == 0.25 and timeout == 5
    result = runner.invoke(lab_app, ["down", "--data-dir", str(tmp_path)])
    assert result.output.strip() == "stopped: scanner"
    assert seen["down"].ports["authority"] == 18080


def test_cli_status_json_when_nothing_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(lab_app, ["status", "--json", "--data-dir", str(tmp_path / "none"),
                                          "--port-base", "1"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert list(rows) == list(SERVICES)
    assert all(not r["running"] and r["pid"] is None for r in rows.values())
    assert not (tmp_path / "none").exists()  # status creates nothing


def test_lab_deploy_settings_name_every_wrong_key_of_deploy_lab() -> None:
    """``deploy.lab`` gets its types in the lab (``LabSteps.settings``): the tool checks them with the
    rest of the params (every problem named under deploy.lab, before any run); the lab's own
    reading of them gives defaults when absent."""
    from types import SimpleNamespace

    from cutover_lib.config.params import load_environment, parse_overrides
    from cutover_lib.errors import ParamsError
    from stellaops_lab.settings import LabSettings, lab_settings

    repo = Path(__file__).resolve().parents[3]
    assert lab_settings(load_environment("local", repo / "params")) == LabSettings(data_dir=".lab", port_base=18080)
    bad = {"port_base": 80, "datadir": "x", "release_faults": {"a": 1}}
    wrong = ["deploy.lab.datadir: unknown key (remove it or check its spelling)",
             "deploy.lab.port_base: expected an integer >= 1024",
             "deploy.lab.release_faults.a: expected a mapping, got an integer"]
    with pytest.raises(ParamsError) as ei:
        load_environment("local", repo / "params", parse_overrides([f"deploy.lab.{k}={json.dumps(v)}"
                                                                    for k, v in bad.items()]))
    assert sorted(ei.value.problems) == [f"-p: {line}" for line in wrong]
    env = SimpleNamespace(name="x", deploy=SimpleNamespace(settings=lambda mode: bad))
    with pytest.raises(ParamsError) as ei:
        lab_settings(env)
    assert (sorted(ei.value.problems), ei.value.hint) == (wrong, "fix deploy.lab in params/x.yaml")
