"""The compose deploy mode against real Docker engines (started by the ``docker_lab`` fixture):
the network step, validate-profiles, the 4.2 upgrade 2025.09.1 -> 2025.09.2, a bad release
caught by 4.2.health and rolled back (Section 6), and two compose nodes updated concurrently."""

from __future__ import annotations

import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from cutover_lib.adapters import compose as dc
from cutover_lib.errors import StepFailed
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.config.params import load_environment, parse_overrides
from cutover_lib.engine.steps import Runbook

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
PROJECT = "stellaops"
COMPOSE = REPO / "deploy" / "compose"
SERVICES = ("authority", "scanner", "signer", "attestor", "notify", "web", "runtime")
PORTS = dict(zip(SERVICES, range(18180, 18187)))


def make_rb(tmp_path: Path, nodes: dict[str, str], *overrides: str) -> Runbook:
    node_list = ", ".join(f"{{name: {n}, docker_host: '{h}'}}" for n, h in nodes.items())
    env = load_environment("lab-compose", REPO / "params",
                           parse_overrides([f"deploy.compose.nodes=[{node_list}]", *overrides]))
    run = RunFolder.create(tmp_path / "executed", "lab-compose", "t")
    return Runbook(env, run, root=REPO, notebook="test")


def steps(rb: Runbook) -> dict[str, dict]:
    return {r["step_id"]: r for r in rb.run.read_ledger() if r.get("kind") == "step"}


def env_file(tmp_path: Path, base: str, **changes: str) -> Path:
    """A copy of deploy/compose/<base> with some variables changed (a bad release, other binds)."""
    lines = [ln for ln in (COMPOSE / base).read_text().splitlines() if ln.split("=", 1)[0] not in changes]
    out = tmp_path / base.replace(".env", "-test.env")
    out.write_text("\n".join(lines + [f"{k}={v}" for k, v in changes.items()]) + "\n")
    return out


def versions(host: str = "127.0.0.1") -> dict[str, tuple[int, str]]:
    out = {}
    with httpx.Client(timeout=5) as client:
        for name, port in PORTS.items():
            r = client.get(f"http://{host}:{port}/healthz")
            out[name] = (r.status_code, r.json().get("version"))
    return out


def bring_up_stage(docker_host: str) -> None:
    """The running previous release an upgrade starts from: the stage file and env, as in Section 6."""
    argv = ["docker", "compose", "--env-file", "deploy/compose/stage.env",
            "-f", "deploy/compose/docker-compose.stage.yaml", "up", "-d"]
    subprocess.run(argv, cwd=REPO, env={**_environ(), "DOCKER_HOST": docker_host}, check=True,
                   capture_output=True, timeout=180)
    with dc.engine_client("lab1", docker_host) as client:
        ok, _, problems = dc.wait_healthy(lambda: dc.project_health(client, PROJECT), [], 60)
    assert ok, problems


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


# ------------------------------------------------------------------------------ network

def network_cell(rb: Runbook, notebook: str = "04_preflight.ipynb", step_id: str = "4.1.network") -> None:
    from nb_helpers import run_cells

    run_cells(rb, notebook, step_id)


def test_network_create_is_idempotent(docker_lab, clean_engines, tmp_path):
    host = docker_lab.engine("lab1")
    clean_engines(host, network=True)
    rb = make_rb(tmp_path, {"lab1": host})
    network_cell(rb)
    first = steps(rb)["4.1.network"]
    assert first["outcome"] == "passed" and first["observed"].startswith("exit 0 in ")
    network_cell(rb, "03_rehearsal.ipynb", "3.network")
    second = steps(rb)["3.network"]
    assert second["outcome"] == "passed" and "already exists (passes)" in second["observed"]
    assert second["commands"] == [f"DOCKER_HOST={host} docker network create stellaops_frontdoor"]
    with dc.engine_client("lab1", host) as client:
        assert [n.name for n in client.networks.list(names=["stellaops_frontdoor"])] == ["stellaops_frontdoor"]


def test_network_error_other_than_exists_fails(docker_lab, clean_engines, tmp_path):
    host = docker_lab.engine("lab1")
    rb = make_rb(tmp_path, {"lab1": host}, "deploy.compose.network=host")
    with pytest.raises(StepFailed):
        network_cell(rb)
    rec = steps(rb)["4.1.network"]
    assert rec["outcome"] == "failed"
    assert "node lab1: `DOCKER_HOST=" in rec["message"] and "exited 1 on node lab1" in rec["message"]
    assert "operation is not permitted on predefined host network" in rec["message"]


def test_the_lab_image_carries_its_modules_compiled(docker_lab):
    """Every lab service start and every ``docker exec ... dotnet`` imports the lab's modules in a
    fresh container layer with PYTHONDONTWRITEBYTECODE: compiled once in the image, not each time."""
    host = docker_lab.engine("lab1")
    probe = ("import os, stellaops_lab.serve, stellaops_lab.dotnet_standin as d, cutover_lib.errors as e\n"
             "print(all(os.path.isfile(m.__cached__) for m in (stellaops_lab.serve, d, e)))")
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3",
                          "127.0.0.1:5000/stellaops/lab:2025.09.2", "-c", probe],
                         env={**os.environ, "DOCKER_HOST": host}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stdout + out.stderr


# ------------------------------------------------------------------------------ T-12h

def test_validate_profiles_renders_every_compose_profile_with_the_real_cli(docker_lab, tmp_path):
    """deploy/tools/validate-profiles.sh with the real docker compose CLI (helm profiles: skipped here,
    no helm binary; local params allow that, prod's do not -- see tests/unit/test_validate_profiles.py)."""
    from nb_helpers import run_cells

    rb = make_rb(tmp_path, {"lab1": docker_lab.engine("lab1")})
    run_cells(rb, "02b_t-12h.ipynb", "2.t-12h.validate-profiles")
    rec = steps(rb)["2.t-12h.validate-profiles"]
    assert rec["outcome"] == "passed", rec["message"]
    profiles = rec["data"]["profiles"]
    assert {n: p["status"] for n, p in profiles.items() if not n.endswith("-helm")} == \
        {"dev": "ok", "stage": "ok", "prod": "ok", "airgap": "ok", "mirror": "ok"}
    log = (rb.run.path / "artifacts" / "2.t-12h.validate-profiles.log").read_text()
    assert "→ docker compose --env-file deploy/compose/prod.env -f deploy/compose/docker-compose.prod.yaml config" in log


# ------------------------------------------------------------------------------ 4.2 and 6

def apply_cells(rb: Runbook) -> None:
    from nb_helpers import run_cells

    run_cells(rb, "05_apply.ipynb", "4.2.pull", "4.2.up", "4.2.health", "4.2.logs")


def rollback_cells(rb: Runbook) -> None:
    from nb_helpers import run_cells

    run_cells(rb, "08_rollback.ipynb", "6.logs", "6.compose-down", "6.compose-up-previous", "6.health-previous")


def test_upgrade_from_previous_release(docker_lab, clean_engines, tmp_path):
    host = docker_lab.engine("lab1")
    rb = make_rb(tmp_path, {"lab1": host})
    network_cell(rb)
    bring_up_stage(host)
    assert {v for _, v in versions().values()} == {"2025.09.1"}

    apply_cells(rb)

    s = steps(rb)
    assert [s[i]["outcome"] for i in ("4.2.pull", "4.2.up", "4.2.health", "4.2.logs")] == ["passed"] * 4
    base = "docker compose --env-file deploy/compose/prod.env -f deploy/compose/docker-compose.prod.yaml"
    assert s["4.2.pull"]["commands"] == [f"DOCKER_HOST={host} {base} pull"]
    assert s["4.2.up"]["commands"] == [f"DOCKER_HOST={host} {base} up -d"]
    assert s["4.2.health"]["commands"] == [f"DOCKER_HOST={host} {base} ps --all --format json"]
    assert s["4.2.health"]["data"]["nodes"]["lab1"]["images"] == ["127.0.0.1:5000/stellaops/lab:2025.09.2"]
    logs = s["4.2.logs"]["commands"]
    assert f"DOCKER_HOST={host} docker logs stellaops-scanner-web --tail 50" in logs and len(logs) == 7
    assert versions() == {name: (200, "2025.09.2") for name in SERVICES}


def test_unhealthy_release_fails_health_then_rollback_restores_previous(docker_lab, clean_engines, tmp_path):
    host = docker_lab.engine("lab1")
    bad = env_file(tmp_path, "prod.env", STELLAOPS_LAB_FAULTS="'{\"scanner.unhealthy\": true}'",
                   STELLAOPS_HEALTH_START_PERIOD="1s")
    rb = make_rb(tmp_path, {"lab1": host}, f"deploy.compose.env_file={bad}", "deploy.compose.health_timeout=60s")
    network_cell(rb)
    bring_up_stage(host)

    with pytest.raises(StepFailed, match="4.2.health"):
        apply_cells(rb)
    s = steps(rb)
    health = s["4.2.health"]
    assert health["outcome"] == "failed"
    assert "node lab1: not healthy after " in health["message"] and "(deadline 60s)" in health["message"]
    assert "scanner-web (stellaops-scanner-web) running/unhealthy" in health["message"]
    assert "last check: GET /healthz: HTTP/1.1 503 Service Unavailable" in health["message"]
    # the unhealthy one is named; any other named is only still starting (a loaded machine)
    named = re.findall(r"([\w-]+) \(stellaops-[\w-]+\) (\w+/\w+)", health["message"].split("observed", 1)[1])
    assert ("scanner-web", "running/unhealthy") in named
    assert {state for name, state in named if name != "scanner-web"} <= {"running/starting"}
    decision = [r for r in rb.run.read_ledger() if r.get("kind") == "decision"][-1]
    assert decision["decision"] == "rollback" and decision["failed"] == ["4.2.health"]

    rollback_cells(rb)
    s = steps(rb)
    assert s["6.logs"]["outcome"] == "passed"  # the failed release's logs, kept before it goes down
    assert [s[i]["outcome"] for i in ("6.compose-down", "6.compose-up-previous", "6.health-previous")] == \
        ["passed"] * 3
    assert s["6.compose-down"]["commands"] == [
        f"DOCKER_HOST={host} docker compose --env-file {bad} -f deploy/compose/docker-compose.prod.yaml down"]
    assert s["6.compose-up-previous"]["commands"] == [
        f"DOCKER_HOST={host} docker compose --env-file deploy/compose/stage.env "
        "-f deploy/compose/docker-compose.stage.yaml up -d"]
    assert versions() == {name: (200, "2025.09.1") for name in SERVICES}


def two_node_apply(tmp_path: Path, hosts: dict[str, str]) -> tuple[dict[str, dict], Path, float]:
    """The runbook's 4.1 and 4.2 cells on two nodes at parallelism 2, each engine publishing on its
    own loopback address (dockerd --ip, like two hosts): every node's steps pass, their up -d ran
    at the same time, both addresses serve 2025.09.2.  Returns (step records, env file, seconds)."""
    two = env_file(tmp_path, "prod.env", STELLAOPS_BIND_ADDRESS="")
    rb = make_rb(tmp_path, hosts, f"deploy.compose.env_file={two}", "deploy.compose.parallelism=2")
    network_cell(rb)
    t0 = time.monotonic()
    apply_cells(rb)
    elapsed = time.monotonic() - t0
    s = steps(rb)
    for sid in ("4.1.network", "4.2.pull", "4.2.up", "4.2.health", "4.2.logs"):
        nodes = s[sid]["data"]["nodes"]
        assert {n: r["outcome"] for n, r in nodes.items()} == {n: "passed" for n in hosts}, sid
        assert {n: r["docker_host"] for n, r in nodes.items()} == hosts, sid
    up = s["4.2.up"]["data"]["nodes"]
    spans = [(_when(up[n]["started"]), _when(up[n]["ended"])) for n in hosts]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans
    assert versions("127.0.0.1") == {name: (200, "2025.09.2") for name in SERVICES}
    assert versions("127.0.0.2") == {name: (200, "2025.09.2") for name in SERVICES}
    return s, two, elapsed


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_two_compose_nodes_updated_concurrently(docker_lab, clean_engines, tmp_path):
    hosts = {"lab1": docker_lab.engine("lab1"), "lab2": docker_lab.engine("lab2")}
    for h in hosts.values():
        clean_engines(h)
    s, _, elapsed = two_node_apply(tmp_path, hosts)
    for sid in ("4.2.pull", "4.2.up"):
        cmds = s[sid]["commands"]
        assert sorted(c.split()[0] for c in cmds) == [f"DOCKER_HOST={hosts['lab1']}", f"DOCKER_HOST={hosts['lab2']}"]
        assert {f"artifacts/{sid}.lab1.log", f"artifacts/{sid}.lab2.log"} <= set(s[sid]["artifacts"])
    print(f"two-node apply: {elapsed:.1f}s")
