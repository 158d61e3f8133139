"""Air-gapped and mirror sites rehearsed in the lab (issue 17): the ``airgap`` and ``mirror``
compose profiles (their own compose and env files) on the lab's private Docker engine, every
image from the lab registry on loopback as the lab's offline kit lists it, readiness (T-24h offline
kit: manifest, image digests in the registry, bundle checksums) and the cutover phase passing, with
an air-gap guard in every Python process of the run (``airgap_guard/sitecustomize.py``): no name
resolution and no connection outside loopback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from nb_helpers import through_post_smoke
from stellaops_lab.offline_kit import publish
from test_cutover_phase_on_engine import APPROVALS, network, project, run_of, steps

from cutover_lib.adapters import compose as dc

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
GUARD = Path(__file__).resolve().parent / "airgap_guard"
REGISTRY = "http://127.0.0.1:5000"


def guarded(log: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(GUARD), os.environ.get("PYTHONPATH")])),
            "AIRGAP_GUARD_LOG": str(log)}


def cutover(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    def call(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cutover_lib.cli.app", *argv, "--root", str(root)], cwd=root,
                              env=env, capture_output=True, text=True, timeout=900, check=False)

    return through_post_smoke(call(*args), call, args)  # approved at the post-smoke gate, then resumed


def bring_up_previous(host: str, profile: str) -> None:
    """The site's running previous release: the profile's compose file with its previous env file."""
    argv = ["docker", "compose", "--env-file", f"deploy/compose/{profile}-previous.env",
            "-f", f"deploy/compose/docker-compose.{profile}.yaml", "up", "-d"]
    subprocess.run(argv, cwd=REPO, env={**os.environ, "DOCKER_HOST": host}, check=True, capture_output=True,
                   timeout=180)
    with dc.engine_client("lab1", host) as client:
        ok, _, problems = dc.wait_healthy(lambda: dc.project_health(client, "stellaops"), [], 90)
    assert ok, problems


def image_sources(host: str) -> set[str]:
    """The registry every image of the lab project's containers came from."""
    import docker

    client = docker.DockerClient(base_url=host, version="auto", timeout=60)
    try:
        containers = client.containers.list(all=True, filters={"label": "com.docker.compose.project=stellaops"})
        return {c.attrs["Config"]["Image"].split("/", 1)[0] for c in containers}
    finally:
        client.close()


def test_the_guard_sees_a_lookup_outside_loopback(tmp_path):
    """The guard is live: a process under it that resolves a name outside loopback is recorded."""
    log = tmp_path / "guard.log"
    code = "import socket\ntry:\n    socket.getaddrinfo('stella-ops.invalid', 443)\nexcept OSError:\n    pass\n"
    subprocess.run([sys.executable, "-c", code], env=guarded(log), check=True, timeout=60)
    text = log.read_text()
    assert "guard loaded" in text and "VIOLATION getaddrinfo 'stella-ops.invalid'" in text


@pytest.mark.parametrize("profile", ["airgap", "mirror"])
def test_site_profile_rehearsed_in_the_lab_with_nothing_outside_loopback(docker_lab, clean_engines, tmp_path,
                                                                         profile):
    host = docker_lab.engine("lab1")
    clean_engines(host)
    network(host)
    bring_up_previous(host, profile)
    root = project(tmp_path, host)
    env_name = f"lab-{profile}"
    kit = publish(root / ".lab" / "offline-kit", "2025.09.2", registry=REGISTRY, images=("stellaops/lab",))
    log = tmp_path / "guard.log"
    env = guarded(log)
    for gate, role, name in APPROVALS:
        res = cutover(root, env, "approve", "--env", env_name, "--gate", gate, "--role", role, "--name", name,
                      "--record", "CHG-AIRGAP")
        assert res.returncode == 0, res.stderr

    ready = cutover(root, env, "run", "--env", env_name, "--phase", "readiness")
    assert ready.returncode == 0, ready.stdout[-6000:] + ready.stderr[-2000:]
    st = steps(run_of(ready.stdout))
    digest = json.loads(kit.read_text())["images"][0]["digest"]
    assert st["2.t-24h.kit-image-1"]["outcome"] == "passed" and digest in st["2.t-24h.kit-image-1"]["observed"]
    assert st["2.t-24h.kit-image-1"]["command"] == f"GET {REGISTRY}/v2/stellaops/lab/manifests/2025.09.2"
    for sid in ("2.t-24h.offline-kit", "2.t-24h.kit-bundle-1", "2.t-24h.kit-bundle-2", "2.t-12h.validate-profiles",
                "2.t-6h.freeze"):
        assert st[sid]["outcome"] == "passed", (sid, st[sid].get("message"))

    res = cutover(root, env, "run", "--env", env_name, "--phase", "cutover")
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    st = steps(run_of(res.stdout))
    not_passed = {sid: rec["outcome"] for sid, rec in st.items() if rec["outcome"] != "passed"}
    assert set(not_passed) <= {"4.1.backup-mongo", "4.1.mirror-minio", "4.3.helm-upgrade", "4.3.pods",
                               "4.3.rollout-status", "8.ticket-plan", "5.ticket-results", "5.ticket-screenshots",
                               "8.ticket-post-smoke", "4.1.tool-helm", "4.1.tool-kubectl", "4.1.tool-mongodump",
                               "4.1.tool-mongorestore", "4.1.tool-mc"}, not_passed
    assert st["4.1.tool-compose"]["command"] == "docker compose version"  # the real docker CLI and its plugin
    # (not applicable here: the lab's backups, the helm path, and the ticket cells -- no ticket system in
    # the compose lab's params)
    assert st["4.1.site-files"]["outcome"] == "passed"
    assert f"docker compose --env-file deploy/compose/{profile}.env -f deploy/compose/docker-compose.{profile}.yaml " \
           f"pull" in json.dumps(st["4.2.pull"])
    assert image_sources(host) == {"127.0.0.1:5000"}

    text = log.read_text()
    assert re.search(r"guard loaded in -m cutover_lib\.engine\.kernel_main -f \S+\.json", text), text[:2000]  # the kernels
    assert "guard loaded in -m cutover_lib.cli.app run" in text
    assert "VIOLATION" not in text, [ln for ln in text.splitlines() if "VIOLATION" in ln][:5]


def test_a_kit_whose_image_was_re_pushed_fails_t24h_naming_it(docker_lab, clean_engines, tmp_path):
    """An image the registry now serves with another digest than the kit lists is a failed T-24h."""
    host = docker_lab.engine("lab1")
    clean_engines(host)
    network(host)
    bring_up_previous(host, "airgap")  # (the bridge and the services T-30m looks at)
    root = project(tmp_path, host)
    kit = publish(root / ".lab" / "offline-kit", "2025.09.2", registry=REGISTRY, images=("stellaops/lab",))
    doc = json.loads(kit.read_text())
    doc["images"][0]["digest"] = "sha256:" + "0" * 64
    bundle = kit.parent / doc["bundles"][1]["path"]
    bundle.write_bytes(bundle.read_bytes() + b"\0")
    kit.write_text(json.dumps(doc))
    for gate, role, name in APPROVALS:
        assert cutover(root, dict(os.environ), "approve", "--env", "lab-airgap", "--gate", gate, "--role", role,
                       "--name", name, "--record", "CHG-AIRGAP").returncode == 0
    res = cutover(root, dict(os.environ), "run", "--env", "lab-airgap", "--phase", "readiness")
    assert res.returncode == 1, res.stdout[-4000:]
    st = steps(run_of(res.stdout))
    assert st["2.t-24h.kit-image-1"]["outcome"] == "failed"
    assert "Docker-Content-Digest" in st["2.t-24h.kit-image-1"]["message"]
    assert "sha256:" + "0" * 64 in st["2.t-24h.kit-image-1"]["message"]
    assert st["2.t-24h.kit-bundle-1"]["outcome"] == "passed"
    assert st["2.t-24h.kit-bundle-2"]["outcome"] == "failed"
