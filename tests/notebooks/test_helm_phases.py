"""Issue 8's done-when, through the CLI and the notebooks: ``--env stage --phase rehearsal`` and
``--env prod --phase cutover`` in helm deploy mode against the named stand-ins (stand-in ``helm`` that
renders with the real Helm library and applies the rendering, stand-in Kubernetes API, stand-in
``mongodump``/``mc``), with the Stella Ops endpoints served by the lab; and a rollout that does not
converge fails, leads to the rollback phase, and the rollback uses the revision read from ``helm history``
and re-applies that revision's objects."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import forkrun  # tests/forkrun.py: cutover as a process forked from a warm one
import yaml

from cutover_lib.config.params import parse_overrides
from cutover_lib.evidence.seal import operator_key, public_pem
from nb_helpers import DEMO_APPROVALS, REPO, free_block, lab_config, make_project, steps_of, through_post_smoke
from standins.kube_api import kube_api  # noqa: F401 - fixture

pytestmark = pytest.mark.notebooks

STANDINS = REPO / "tests" / "standins"
DEPLOYMENTS = ["stellaops-authority", "stellaops-scanner-web", "stellaops-web"]
SERVICES = ("authority", "scanner", "signer", "attestor", "notify", "web", "runtime")
STORE_KEYS = {"stellaops-prod-core": ["authority-signing-key.pem", "authority-client-secret", "signer-key.pem",
                                      "attestor-api-token"],
              "stellaops-prod-mongo": ["connection-string", "username", "password"],
              "stellaops-prod-minio": ["access-key", "secret-key", "endpoint"],
              "stellaops-prod-notify": ["smtp-password", "webhook-url"]}


@pytest.fixture
def world(tmp_path, kube_api, monkeypatch):  # noqa: F811
    from stellaops_lab import down, up

    root = make_project(tmp_path / "p", free_block())
    cfg = lab_config(root)
    up(cfg)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(STANDINS / "helm", bin_dir / "helm")
    (bin_dir / "helm").chmod(0o755)
    state = tmp_path / "helm-state.json"
    (tmp_path / "mc" / "minio" / "stellaops").mkdir(parents=True)
    (tmp_path / "mc" / "minio" / "stellaops" / "policy.json").write_text("{}")
    for name, keys in STORE_KEYS.items():
        kube_api.add_secret(name, {k: f"value-of-{k}-0123" for k in keys})
    env = {**os.environ, "PATH": f"{bin_dir}:{STANDINS / 'bin'}:{os.environ['PATH']}",
           "HELM_STANDIN_STATE": str(state), "HELM_STANDIN_LOG": str(tmp_path / "helm-argv.jsonl"),
           "MC_STANDIN_ROOT": str(tmp_path / "mc"), "MC_HOST_MINIO": "https://mc-access:mc-secret-4321@minio.local",
           "MC_HOST_MINIO_BACKUP": "https://mc-access:mc-secret-4321@minio-backup.local", "MONGO_BACKUP_URI": "mongodb://backup:pw-0123@db:27017/x",
           "KUBECONFIG": str(kube_api.kubeconfig), "HELM_STANDIN_PYTHON": sys.executable}
    install_previous_release(root, {**env, "HELM_STANDIN_LOG": ""}, tmp_path)
    kube_api.advance("stellaops")  # ... and it has rolled out
    secret_file = root / ".lab" / "secrets" / "stellaops-prod-core" / "authority-client-secret"
    web_password = root / ".lab" / "secrets" / "stellaops-web" / "smoke-password"
    kit = root / ".lab" / "offline-kit" / "{release}" / "offline-kit.manifest.json"
    sealers = tmp_path / "sealers"  # whose seal verify accepts on prod: this operator's, as a site lists its own
    sealers.mkdir()
    (sealers / "operator.pem").write_text(public_pem(operator_key()))
    params = [f"services.{s}={cfg.url(s)}" for s in SERVICES] + [
        "tls_verify=false", f"credentials.authority_client_secret=file:{secret_file}",
        f"deploy.helm.deployments={json.dumps(DEPLOYMENTS)}", "deploy.helm.timeout=20s", "deploy.helm.watch=1s", "timeouts.health=20s",
        "backup.object_store.source=minio/stellaops", "backup.object_store.target_prefix=minio-backup/stellaops-",
        f"backup.mongo.out_dir={tmp_path}/backups", "monitoring.duration=2s", "monitoring.interval=1s",
        # the bridge: the lab's receiver (T-30m posts the bridge call there)
        f"bridge.webhook=file:{root / '.lab' / 'secrets' / 'stellaops-prod-notify' / 'webhook-url'}",
        # T0 in five minutes, as the site's reviewed params say on the day: T-30m and T0 both run on time
        f"t0={(datetime.now(timezone.utc) + timedelta(minutes=5)):%Y-%m-%dT%H:%M:%SZ}",
        # the lab's stand-in stellaops-cli / dotnet (kubectl exec runs the latter through the kubectl stand-in),
        # the lab signer's key pinned as prod would pin its own, the lab's web pages
        f"tools.path=[{cfg.bin_dir}]", f"trust.signer_keys=[{cfg.trusted_signer_key}]",
        """smoke.web_pages={"/": 'id="dashboard"', "/policy": 'id="policy-view"'}""",
        f"smoke.web_login.password=file:{web_password}",  # (the lab web UI's smoke account: cutover-smoke)
        # the lab's Jira-shaped ticket stand-in and its Prometheus, as prod names its own
        f"ticket.url={cfg.url('notify')}", f"ticket.token=file:{root / '.lab' / 'secrets' / 'stellaops-ticket' / 'api-token'}",
        f"monitoring.prometheus={cfg.prometheus_url}",
        "smoke.runtime_event_query=GET {services.runtime}/api/v1/runtime/events?eventId={id}",
        # T-12h here: helm profiles through the helm stand-in; compose profiles need a docker CLI, which
        # `make test` may still be installing for the engine tests running alongside
        "tools.validate_profiles_may_skip=true",
        # the lab's offline kit stands for the one the site received
        f"offline_kit.manifest={kit}", f'site_files=["{kit}"]', f"trust.run_keys=[{sealers}]"]

    # in the project's params files, as a site edits its own (prod refuses -p for all but run-time settings)
    for name in ("prod", "stage"):
        shipped = root / "params" / f"{name}.yaml"
        shipped.rename(root / "params" / f"_{name}-as-shipped.yaml")
        shipped.write_text(yaml.safe_dump({"extends": f"_{name}-as-shipped.yaml", **parse_overrides(params)}))

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        extra = [] if args[0] in ("verify",) else ["--root", str(root)]
        return forkrun.run([*args, *extra], cwd=root, env=env, timeout=600)

    def cutover(*args: str) -> subprocess.CompletedProcess[str]:
        return through_post_smoke(call(*args), call, args)  # approved at the post-smoke gate, then resumed

    class World:
        pass

    w = World()
    w.root, w.cutover, w.kube, w.state = root, cutover, kube_api, state
    try:
        yield w
    finally:
        down(cfg)


def install_previous_release(root: Path, env: dict[str, str], tmp_path: Path) -> None:
    """What the cluster runs before the cutover: release 2025.09.1, installed as a site installs it
    (`helm upgrade --install` of that release's chart with its values-prod.yaml: here the checkout's
    chart with the release set back), so revision 1 holds the objects a rollback re-applies."""
    old = tmp_path / "stellaops-2025.09.1" / "stellaops"
    shutil.copytree(root / "deploy" / "helm" / "stellaops", old)
    for name in ("Chart.yaml", "values.yaml", "values-prod.yaml"):
        f = old / name
        f.write_text(f.read_text().replace("2025.9.2", "2025.9.1").replace("2025.09.2", "2025.09.1"))
    res = subprocess.run(["helm", "upgrade", "--install", "stellaops", str(old), "-f", str(old / "values-prod.yaml"),
                          "--namespace", "stellaops", "--kube-context", "stellaops-prod"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def served_image(kube, name: str) -> tuple[str, int]:
    """The image and replicas the stand-in API serves for deployment ``name``."""
    dep = kube.deployments[("stellaops", name)]
    return dep["spec"]["template"]["spec"]["containers"][0]["image"], dep["spec"]["replicas"]


def steps(stdout: str) -> tuple[Path, dict[str, dict]]:
    run = Path(next(x for x in stdout.splitlines() if x.startswith("evidence: ")).split(": ", 1)[1])
    return run, steps_of(run)


def approve(w, env: str) -> None:
    for gate, role, name in DEMO_APPROVALS:
        if gate in ("post-smoke", "go-no-go"):  # (given for one run, at its gate: through_post_smoke)
            continue
        res = w.cutover("approve", "--env", env, "--gate", gate, "--role", role, "--name", name, "--record", "CHG-HELM")
        assert res.returncode == 0, res.stderr


def day_before(root: Path) -> None:
    """T-24h, T-12h and T-6h of prod as passed runs of this release (each slot runs for real in
    test_timeline_slots.py; here only the T-30m go/no-go reads them)."""
    now = datetime.now(timezone.utc)
    for i, phase in enumerate(("t-24h", "t-12h", "t-6h")):
        run = root / "executed" / "prod" / f"{now - timedelta(hours=3 - i):%Y%m%dT%H%M%SZ}-prod-{phase}"
        run.mkdir(parents=True)
        (run / "manifest.json").write_text(json.dumps({"phase": phase, "release": "2025.09.2", "outcome": "passed",
                                                       "started": now.isoformat(), "sealed": True,
                                                       "dry_run": False}))


def test_stage_rehearsal_in_helm_mode(world):
    for name in DEPLOYMENTS:
        world.kube.add_deployment(name, converge_after=1)
    res = world.cutover("run", "--env", "stage", "--phase", "rehearsal")
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
    _, st = steps(res.stdout)
    assert st["3.helm-upgrade"]["command"] == (
        "helm upgrade stellaops deploy/helm/stellaops -f deploy/helm/stellaops/values-stage.yaml --namespace stellaops "
        "--kube-context stellaops-stage")
    for sid in ("3.stage-secrets", "3.helm-upgrade", "3.rollout-status", "3.health-authority", "3.health-scanner",
                "3.scan-submit", "3.wall-time", "3.validate-profiles"):
        assert st[sid]["outcome"] == "passed", (sid, st[sid].get("message"))
    assert st["3.network"]["outcome"] == "skipped"
    helm_profiles = {n: p["status"] for n, p in st["3.validate-profiles"]["data"]["profiles"].items() if "helm" in n}
    assert helm_profiles == {"stage-helm": "ok", "prod-helm": "ok"}  # linted and templated (helm stand-in)


def test_prod_cutover_in_helm_mode_then_non_convergence_rolls_back_by_history(world):
    approve(world, "prod")
    for name in DEPLOYMENTS:
        world.kube.add_deployment(name, converge_after=1)
    # prod refuses to start before stage rehearsed this release (issue 12), then names the rehearsal
    refused = world.cutover("run", "--env", "prod", "--phase", "cutover")
    assert refused.returncode == 3 and "no passed stage rehearsal of release 2025.09.2" in refused.stderr, \
        refused.stdout[-3000:] + refused.stderr[-2000:]
    assert not list((world.root / "executed" / "prod").glob("*-prod-cutover"))
    rehearsed = world.cutover("run", "--env", "stage", "--phase", "rehearsal")
    assert rehearsed.returncode == 0, rehearsed.stdout[-5000:] + rehearsed.stderr[-2000:]
    stage_run, _ = steps(rehearsed.stdout)
    for name in DEPLOYMENTS:
        world.kube.add_deployment(name, converge_after=1)
    # T0 in prod needs that day's T-30m GO: the guild leads' GO for a T-30m run whose readiness is green
    refused = world.cutover("run", "--env", "prod", "--phase", "cutover")
    assert refused.returncode == 3 and "needs the T-30m go/no-go of release 2025.09.2 to be GO: none was run" \
        in refused.stderr, refused.stdout[-3000:] + refused.stderr[-2000:]
    day_before(world.root)
    go = world.cutover("run", "--env", "prod", "--phase", "t-30m")  # (the leads' GO given at its gate)
    assert go.returncode == 0, go.stdout[-5000:] + go.stderr[-2000:]
    ok = world.cutover("run", "--env", "prod", "--phase", "cutover")
    assert ok.returncode == 0, ok.stdout[-5000:] + ok.stderr[-2000:]
    assert json.loads(next(x for x in (steps(ok.stdout)[0] / "ledger.jsonl").read_text().splitlines()
                           if '"kind":"slot"' in x))["go_no_go"]["run"] == steps(go.stdout)[0].name
    prod_run, st = steps(ok.stdout)
    evidence = [json.loads(x) for x in (prod_run / "ledger.jsonl").read_text().splitlines()
                if '"rehearsal-evidence"' in x]
    assert evidence and evidence[0]["run"] == stage_run.name and evidence[0]["env"] == "stage"
    assert st["4.3.helm-upgrade"]["command"] == ("helm upgrade stellaops deploy/helm/stellaops -f "
                                                 "deploy/helm/stellaops/values-prod.yaml --atomic --timeout 20s "
                                                 "--namespace stellaops --kube-context stellaops-prod")
    for sid in ("8.gate-plan", "4.gate-t0", "4.1.secret-stellaops-prod-core", "4.1.backup-mongo", "4.1.mirror-minio",
                "4.3.helm-upgrade", "4.3.rollout-status", "5.api-health", "5.scan-submit", "5.decision"):
        assert st[sid]["outcome"] == "passed", (sid, st[sid].get("message"))
    # the API serves what real Helm rendered from the chart and values-prod.yaml
    registry = "registry.stella-ops.internal/stellaops"
    assert served_image(world.kube, "stellaops-authority") == (f"{registry}/authority:2025.09.2", 3)
    assert served_image(world.kube, "stellaops-scanner-worker") == (f"{registry}/scanner-worker:2025.09.2", 4)
    assert world.kube.deployments[("stellaops", "stellaops-web")]["metadata"]["labels"][
        "app.kubernetes.io/managed-by"] == "Helm"

    # the cutover again, with the memory limit raised in values-prod.yaml: that upgrade changes every
    # Deployment's spec, and scanner-web's new pods never start; the rollback's apply converges
    values = world.root / "deploy" / "helm" / "stellaops" / "values-prod.yaml"
    values.write_text(values.read_text() + "\nresources:\n  limits: {memory: 2Gi}\n")
    world.kube.add_deployment("stellaops-authority", converge_after=1)
    world.kube.add_deployment("stellaops-web", converge_after=1)
    world.kube.add_deployment("stellaops-scanner-web", converge_after=None, stuck_reason="ImagePullBackOff")
    world.kube.next_rollout("stellaops-scanner-web", converge_after=1)
    bad = world.cutover("run", "--env", "prod", "--phase", "cutover")
    assert bad.returncode == 1, bad.stdout[-5000:] + bad.stderr[-2000:]
    assert "outcome: rolled-back" in bad.stdout
    run, st = steps(bad.stdout)
    ro = st["4.3.rollout-status"]
    assert ro["outcome"] == "failed" and "stellaops-scanner-web" in ro["message"]
    assert "timed out waiting for the condition" in ro["message"]
    hist = st["6.helm-history"]
    # revision 2 was the first 2025.09.2 upgrade: the previous release (2025.09.1) is revision 1
    assert hist["outcome"] == "passed" and "previous revision 1 (stellaops-2025.9.1, superseded)" in hist["observed"]
    rollback = st["6.helm-rollback"]
    assert rollback["outcome"] == "passed"
    assert rollback["command"] == "helm rollback stellaops 1 --namespace stellaops --kube-context stellaops-prod"
    assert st["6.rollout-status"]["outcome"] == "passed"
    # the rollback re-applied revision 1's objects: the cluster serves 2025.09.1 again
    assert served_image(world.kube, "stellaops-scanner-web") == (f"{registry}/scanner-web:2025.09.1", 3)
    assert world.kube.deployments[("stellaops", "stellaops-scanner-web")]["status"]["updatedReplicas"] == 3
    limits = world.kube.deployments[("stellaops", "stellaops-web")]["spec"]["template"]["spec"]["containers"][0][
        "resources"]["limits"]
    assert limits == {"memory": "1Gi"}
    assert world.cutover("verify", str(run)).returncode == 0
