"""The cutover phase, headless through papermill, against the lab running as a compose project on a
real Docker engine: 2025.09.1 -> 2025.09.2 with all six smoke tests against the containers; and a
2025.09.2 that never turns healthy, rolled back through the rollback phase to 2025.09.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nb_helpers import steps_of, through_post_smoke
from stellaops_lab.demo import DEMO_APPROVERS
from test_compose_engine import bring_up_stage, env_file, versions

#: approved up front; post-smoke and go-no-go are given for one run, at its gate (through_post_smoke)
APPROVALS = [(gate, role, name) for gate, people in DEMO_APPROVERS.items() for role, name in people
             if gate not in ("post-smoke", "go-no-go")]

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]


def project(tmp_path: Path, docker_host: str) -> Path:
    """A project copy whose .lab holds the secret stores and stores the compose lab's runbook uses."""
    from stellaops_lab import LabConfig
    from stellaops_lab import _store
    from stellaops_lab._provision import provision
    from stellaops_lab._standins import install_standins

    root = tmp_path / "project"
    for name in ("params", "notebooks", "samples", "deploy", "secrets"):
        shutil.copytree(REPO / name, root / name)
    env = os.environ.copy()
    os.environ["LAB_CLIENT_SECRET"] = "lab-secret"  # what the compose files pass to the authority
    os.environ["LAB_WEB_PASSWORD"] = "lab-web-smoke"  # and to the web UI (its smoke account)
    try:
        cfg = LabConfig.from_port_base(root / ".lab", 18180)  # the compose lab's published ports
        provision(cfg)
        _store.connect(cfg.data_dir).close()
        install_standins(cfg.bin_dir)  # the runbook's stellaops-cli on this host (params tools.path)
    finally:
        os.environ.clear()
        os.environ.update(env)
    text = (root / "params" / "lab-compose.yaml").read_text()
    (root / "params" / "lab-compose.yaml").write_text(
        text.replace("unix:///tmp/cutover-docker/lab1/docker.sock", docker_host))
    return root


def network(docker_host: str) -> None:
    """The external network the previous release needs (4.1 then finds it: idempotent)."""
    subprocess.run(["docker", "network", "create", "stellaops_frontdoor"], env={**os.environ, "DOCKER_HOST": docker_host},
                   capture_output=True, timeout=60, check=False)


def cutover(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    def call(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cutover_lib.cli.app", *argv, "--root", str(root)], cwd=root,
                              capture_output=True, text=True, timeout=900)

    return through_post_smoke(call(*args), call, args)


steps = steps_of


def run_of(stdout: str) -> Path:
    return Path(next(x for x in stdout.splitlines() if x.startswith("evidence: ")).split(": ", 1)[1])


def approve(root: Path) -> None:
    for gate, role, name in APPROVALS:
        res = cutover(root, "approve", "--env", "lab-compose", "--gate", gate, "--role", role, "--name", name,
                      "--record", "CHG-ENGINE")
        assert res.returncode == 0, res.stderr


def test_cutover_phase_upgrades_the_compose_lab_and_smoke_passes(docker_lab, clean_engines, tmp_path):
    host = docker_lab.engine("lab1")
    clean_engines(host)
    network(host)
    bring_up_stage(host)
    assert {v for _, v in versions().values()} == {"2025.09.1"}
    root = project(tmp_path, host)
    approve(root)
    res = cutover(root, "run", "--env", "lab-compose", "--phase", "cutover")
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    run = run_of(res.stdout)
    st = steps(run)
    for sid in ("4.1.network", "4.2.pull", "4.2.up", "4.2.health", "4.2.logs", "4.4.oidc-metadata",
                "4.4.signer-verify", "4.4.scanner-queue", "4.4.notify-legacy", "5.api-health", "5.scan-submit",
                "5.runtime-event", "5.signing", "5.attestor-verify", "5.web-ui", "5.decision"):
        assert st[sid]["outcome"] == "passed", (sid, st[sid].get("message"))
    assert "docker compose --env-file deploy/compose/prod.env -f deploy/compose/docker-compose.prod.yaml pull" \
        in json.dumps(st["4.2.pull"])
    assert {v for _, v in versions().values()} == {"2025.09.2"}
    assert any(a.endswith(".log") and "logs" in a for a in st["4.2.logs"]["artifacts"])
    ok = subprocess.run([sys.executable, "-m", "cutover_lib.cli.app", "verify", str(run)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_unhealthy_release_fails_the_phase_and_rollback_restores_previous(docker_lab, clean_engines, tmp_path):
    host = docker_lab.engine("lab1")
    clean_engines(host)
    network(host)
    bring_up_stage(host)
    root = project(tmp_path, host)
    approve(root)
    bad = env_file(tmp_path, "prod.env", STELLAOPS_LAB_FAULTS='{"scanner.unhealthy": true}')
    shutil.copy(bad, root / "deploy" / "compose" / "prod-bad.env")
    res = cutover(root, "run", "--env", "lab-compose", "--phase", "cutover",
                  "-p", "deploy.compose.env_file=deploy/compose/prod-bad.env", "-p", "deploy.compose.health_timeout=40s")
    assert res.returncode == 1, res.stdout[-6000:] + res.stderr[-2000:]
    assert "outcome: rolled-back" in res.stdout, res.stdout[-6000:]
    st = steps(run_of(res.stdout))
    assert st["4.2.health"]["outcome"] == "failed" and "scanner-web" in st["4.2.health"]["message"]
    for sid in ("6.assess", "6.gate-rollback", "6.compose-down", "6.compose-up-previous", "6.health-previous"):
        assert st[sid]["outcome"] == "passed", (sid, st[sid].get("message"))
    assert "docker compose --env-file deploy/compose/stage.env -f deploy/compose/docker-compose.stage.yaml up -d" \
        in json.dumps(st["6.compose-up-previous"])
    assert {(c, v) for c, v in versions().values()} == {(200, "2025.09.1")}
