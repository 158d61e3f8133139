"""The helm cells of the notebooks (and HelmSteps) driven through a real ``Runbook`` against the named stand-ins: the stand-in
``helm`` (tests/standins/helm) and the stand-in Kubernetes API (tests/standins/kube_api.py)."""

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from cutover_lib.errors import StepFailed, ToolMissing
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.adapters.helm_steps import secret_store_keys
from cutover_lib.config.params import parse_overrides
from nb_helpers import variant
from cutover_lib.engine.steps import Runbook
from standins.kube_api import kube_api  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]
CANARY = "canary-helmsteps-3b9f0a17"
DEPLOYMENTS = ["stellaops-authority", "stellaops-scanner-web", "stellaops-web"]


def rev(n, status, release, desc):
    return {"revision": n, "updated": "2025-10-26T10:00:00.000000000+00:00", "status": status,
            "chart": f"stellaops-{release}", "app_version": release, "description": desc}


@pytest.fixture
def helm(tmp_path, monkeypatch):
    """Stand-in helm: release stellaops at revision 1 (2025.09.1)."""
    exe = tmp_path / "bin" / "helm"
    exe.parent.mkdir()
    shutil.copy(REPO / "tests" / "standins" / "helm", exe)
    exe.chmod(0o755)
    log, state = tmp_path / "helm-argv.jsonl", tmp_path / "helm-state.json"
    state.write_text(json.dumps({"stellaops/stellaops": [rev(1, "deployed", "2025.09.1", "Install complete")]}))
    for k, v in {"CUTOVER_HELM": str(exe), "HELM_STANDIN_LOG": str(log), "HELM_STANDIN_STATE": str(state)}.items():
        monkeypatch.setenv(k, v)
    # the cells run `helm` and `kubectl` from PATH: the stand-ins first
    monkeypatch.setenv("PATH", f"{exe.parent}:{REPO / 'tests' / 'standins' / 'bin'}:{os.environ['PATH']}")
    monkeypatch.delenv("HELM_STANDIN_FAIL_UPGRADE", raising=False)

    class H:
        def argv(self):
            return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

        def history(self):
            return json.loads(state.read_text())["stellaops/stellaops"]

        def seed(self, entries):
            state.write_text(json.dumps({"stellaops/stellaops": entries}))

    return H()


@pytest.fixture
def make_rb(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(REPO / "deploy" / "helm", root / "deploy" / "helm")
    shutil.copytree(REPO / "secrets" / "stage", root / "secrets" / "stage")

    def make(env="prod", overrides=(), run=None, **kw):
        ov = {"timeouts": {"health": "2s"}, "deploy": {"helm": {"deployments": DEPLOYMENTS, "watch": "1s"}}}
        for key, value in parse_overrides(list(overrides)).items():
            ov["deploy"]["helm"].update(value["helm"]) if key == "deploy" else ov.update({key: value})
        environment = variant(env, overrides=ov)
        run = run or RunFolder.create(tmp_path / "executed", env, "t")
        return Runbook(environment, run, root=root, notebook="nb.ipynb", **kw)

    return make


def steps(rb):
    return {r["step_id"]: r for r in rb.run.read_ledger() if r.get("kind") == "step"}


def no_canary_in_run(rb):
    b64 = base64.b64encode(CANARY.encode()).decode().rstrip("=")
    for p in rb.run.path.rglob("*"):
        if p.is_file():
            text = p.read_text(errors="replace")
            assert CANARY not in text and b64 not in text, p


PROD_UPGRADE = ("helm upgrade stellaops deploy/helm/stellaops -f deploy/helm/stellaops/values-prod.yaml "
                "--atomic --timeout 15m --namespace stellaops --kube-context stellaops-prod")


def apply_cells(rb):
    from nb_helpers import run_cells

    run_cells(rb, "05_apply.ipynb", "4.3.helm-upgrade", "4.3.pods", "4.3.rollout-status")


def rollback_cells(rb):
    from nb_helpers import run_cells

    return run_cells(rb, "08_rollback.ipynb", "6.helm-history", "6.helm-rollback", "6.rollout-status",
                     "6.helm-release")


def test_apply_upgrades_and_watches_rollout(kube_api, helm, make_rb):
    for name in DEPLOYMENTS:
        kube_api.add_deployment(name, converge_after=2)
    rb = make_rb()
    apply_cells(rb)
    s = steps(rb)
    up = s["4.3.helm-upgrade"]
    assert up["outcome"] == "passed" and up["mutating"] and up["command"] == PROD_UPGRADE
    assert helm.argv()[0] == PROD_UPGRADE.split()[1:]
    pods = s["4.3.pods"]
    assert pods["outcome"] == "passed" and pods["observed"].startswith("watched for 1s")
    assert pods["command"] == "kubectl get pods -n stellaops --watch --context stellaops-prod"
    ro = s["4.3.rollout-status"]
    assert ro["outcome"] == "passed" and not ro["mutating"]
    assert ro["command"].split(" ; ") == [
        f"kubectl rollout status deployment/{name} -n stellaops --timeout 15m --context stellaops-prod"
        for name in DEPLOYMENTS]
    for name in DEPLOYMENTS:
        log = rb.run.path / "artifacts" / f"4.3.rollout-status.{name}.log"
        assert f'deployment "{name}" successfully rolled out' in log.read_text()
    assert kube_api.requests.count("GET", "/apis/apps/v1/namespaces/stellaops/deployments", watch=True) >= 1


def test_rollout_not_converged_fails_then_rollback_uses_history(kube_api, helm, make_rb):
    kube_api.add_deployment("stellaops-authority", converge_after=1)
    kube_api.add_deployment("stellaops-web", converge_after=1)
    kube_api.add_deployment("stellaops-scanner-web", converge_after=None, stuck_reason="CrashLoopBackOff")
    rb = make_rb(overrides=["deploy.helm.timeout=3s"])
    with pytest.raises(StepFailed) as ei:
        apply_cells(rb)
    assert ei.value.step_id == "4.3.rollout-status"
    s = steps(rb)
    assert s["4.3.helm-upgrade"]["outcome"] == "passed"
    ro = s["4.3.rollout-status"]
    assert ro["outcome"] == "failed" and "timed out waiting for the condition" in ro["message"]
    assert "stellaops-web" not in ro["message"].split("observed", 1)[1]  # only the late one is named
    late = (rb.run.path / "artifacts" / "4.3.rollout-status.stellaops-scanner-web.log").read_text()
    assert 'Waiting for deployment "stellaops-scanner-web" rollout to finish' in late
    decision = [r for r in rb.run.read_ledger() if r.get("kind") == "decision"][-1]
    assert decision["decision"] == "rollback" and decision["failed"] == ["4.3.rollout-status"]

    # the stand-ins are not wired to each other: script what the rollback does to the cluster
    kube_api.add_deployment("stellaops-scanner-web", converge_after=1)
    rollback_cells(rb)
    s = steps(rb)
    assert s["6.helm-history"]["outcome"] == "passed"
    assert "previous revision 1 (stellaops-2025.09.1, superseded)" in s["6.helm-history"]["observed"]
    rb_rec = s["6.helm-rollback"]
    assert rb_rec["outcome"] == "passed" and rb_rec["mutating"]
    assert rb_rec["command"] == "helm rollback stellaops 1 --namespace stellaops --kube-context stellaops-prod"
    assert ["rollback", "stellaops", "1", "--namespace", "stellaops", "--kube-context", "stellaops-prod"] in helm.argv()
    assert helm.history()[-1]["description"] == "Rollback to 1"
    assert s["6.rollout-status"]["outcome"] == "passed"
    assert s["6.helm-release"]["outcome"] == "passed" and "runs 2025.09.1 (Rollback to 1)" in s["6.helm-release"]["observed"]
    assert json.loads((rb.run.path / "artifacts" / "6.helm-history.json").read_text())[0]["revision"] == 1


def test_rollback_without_previous_revision_never_guesses(kube_api, helm, make_rb):
    helm.seed([rev(1, "failed", "2025.09.1", "Install failed"), rev(2, "deployed", "2025.09.2", "Upgrade complete")])
    rb = make_rb()
    with pytest.raises(StepFailed) as ei:
        rollback_cells(rb)
    assert ei.value.step_id == "6.helm-history"
    s = steps(rb)
    assert "no earlier good revision running 2025.09.1" in s["6.helm-history"]["message"]
    assert "6.helm-rollback" not in s
    assert not [a for a in helm.argv() if a[0] == "rollback"]


def test_atomic_failure_then_rollback_is_not_needed(kube_api, helm, make_rb, monkeypatch):
    monkeypatch.setenv("HELM_STANDIN_FAIL_UPGRADE", "1")
    rb = make_rb()
    with pytest.raises(StepFailed):
        apply_cells(rb)
    s = steps(rb)
    assert s["4.3.helm-upgrade"]["outcome"] == "failed"
    assert "rolled back due to atomic" in s["4.3.helm-upgrade"]["message"]
    assert "4.3.rollout-status" not in s
    decision = [r for r in rb.run.read_ledger() if r.get("kind") == "decision"]
    assert decision and decision[0]["failed"] == ["4.3.helm-upgrade"]
    for name in DEPLOYMENTS:
        kube_api.add_deployment(name, converge_after=0)
    rollback_cells(rb)
    s = steps(rb)
    assert "revision 3 already runs 2025.09.1 (Rollback to 1)" in s["6.helm-history"]["observed"]
    assert s["6.helm-rollback"]["outcome"] == "skipped"
    assert "revision 3 already runs 2025.09.1" in s["6.helm-rollback"]["observed"]
    assert s["6.rollout-status"]["outcome"] == "passed"
    assert not [a for a in helm.argv() if a[0] == "rollback"]


def test_dry_run_plans_exact_commands_and_reads_history(kube_api, helm, make_rb):
    helm.seed([rev(1, "superseded", "2025.09.1", "Install complete"), rev(2, "deployed", "2025.09.2", "Upgrade complete")])
    rb = make_rb(dry_run=True)
    apply_cells(rb)
    rollback_cells(rb)
    s = steps(rb)
    assert s["4.3.helm-upgrade"]["outcome"] == "planned" and s["4.3.helm-upgrade"]["command"] == PROD_UPGRADE
    assert s["4.3.rollout-status"]["outcome"] == "skipped"
    assert s["6.helm-history"]["outcome"] == "passed"  # read-only: runs in a dry run
    assert s["6.helm-rollback"]["outcome"] == "planned"
    assert s["6.helm-rollback"]["command"] == "helm rollback stellaops 1 --namespace stellaops --kube-context stellaops-prod"
    assert [a[0] for a in helm.argv()] == ["history"]


def test_stage_section_3_secrets_and_upgrade(kube_api, helm, make_rb):
    """kubectl apply --server-side -f secrets/stage (the kubectl stand-in against the stand-in API),
    then every secret values-stage.yaml names holds its keys; applying again changes nothing."""
    from nb_helpers import run_cells

    rb = make_rb("stage")
    run_cells(rb, "03_rehearsal.ipynb", "3.stage-secrets")
    run_cells(rb, "03_rehearsal.ipynb", "3.stage-secrets")
    recs = [r for r in rb.run.read_ledger() if r.get("kind") == "step" and r["step_id"] == "3.stage-secrets"]
    assert [r["outcome"] for r in recs] == ["passed", "passed"]
    assert recs[0]["command"] == ("kubectl apply --server-side -f secrets/stage -n stellaops --context stellaops-stage")
    assert "4 secrets named in values-stage.yaml hold their keys" in recs[0]["observed"]
    assert recs[0]["mutating"]
    log = (rb.run.path / "artifacts" / "3.stage-secrets.log").read_text()
    assert log.count("serverside-applied") == 4
    assert kube_api.requests.count("PATCH", "/api/v1/namespaces/stellaops/secrets/stellaops-stage-core") >= 2
    for name in DEPLOYMENTS:
        kube_api.add_deployment(name, converge_after=1)
    from nb_helpers import run_cells

    run_cells(rb, "03_rehearsal.ipynb", "3.helm-upgrade", "3.rollout-status")
    s = steps(rb)
    assert s["3.helm-upgrade"]["command"] == ("helm upgrade stellaops deploy/helm/stellaops -f "
                                              "deploy/helm/stellaops/values-stage.yaml --namespace stellaops "
                                              "--kube-context stellaops-stage")
    assert s["3.rollout-status"]["outcome"] == "passed"


def test_secret_store_keys_never_leak_values(kube_api, helm, make_rb):
    kube_api.add_secret("stellaops-prod-core", {k: CANARY for k in
                                                ["authority-signing-key.pem", "authority-client-secret",
                                                 "signer-key.pem", "attestor-api-token"]})
    kube_api.add_secret("stellaops-prod-mongo", {"connection-string": CANARY, "username": CANARY})
    rb = make_rb()
    env = rb.env
    rec = secret_store_keys(rb, "stellaops-prod-core", env.secret_stores["stellaops-prod-core"])
    assert rec["outcome"] == "passed" and rec["step_id"] == "4.1.secret-stellaops-prod-core"
    assert rec["command"] == "kubectl describe secret stellaops-prod-core -n stellaops --context stellaops-prod"
    with pytest.raises(StepFailed, match="lacks password"):
        secret_store_keys(rb, "stellaops-prod-mongo", env.secret_stores["stellaops-prod-mongo"],
                          step_prefix="2.t-24h")
    assert steps(rb)["2.t-24h.secret-stellaops-prod-mongo"]["data"]["missing"] == ["password"]
    no_canary_in_run(rb)


def test_network_is_skipped_in_helm_mode(make_rb):
    from nb_helpers import run_cells

    rb = make_rb()
    run_cells(rb, "04_preflight.ipynb", "4.1.network")
    rec = steps(rb)["4.1.network"]
    assert rec["outcome"] == "skipped"
    assert rec["observed"] == "not applicable: deploy mode is helm, this is the compose path"


def test_helm_missing_is_tool_missing(kube_api, make_rb, monkeypatch, tmp_path):
    from nb_helpers import run_cells

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    rb = make_rb()
    with pytest.raises(ToolMissing) as ei:
        run_cells(rb, "05_apply.ipynb", "4.3.helm-upgrade")
    assert "install helm or put it on PATH" in ei.value.hint
    rec = steps(rb)["4.3.helm-upgrade"]
    assert rec["outcome"] == "failed" and "helm is not installed" in rec["message"]


def test_resume_keeps_the_rollback_not_needed_after_atomic(kube_api, helm, make_rb, monkeypatch):
    """6.helm-history passed in an earlier attempt and found --atomic had already rolled back: the resumed
    run skips 6.helm-rollback for that reason instead of failing for want of a revision."""
    monkeypatch.setenv("HELM_STANDIN_FAIL_UPGRADE", "1")
    rb = make_rb()
    with pytest.raises(StepFailed):
        apply_cells(rb)
    from nb_helpers import run_cells

    run_cells(rb, "08_rollback.ipynb", "6.helm-history")
    again = make_rb(run=rb.run, resume=True)
    run_cells(again, "08_rollback.ipynb", "6.helm-history", "6.helm-rollback")
    s = steps(again)
    assert s["6.helm-history"]["outcome"] == "skipped"  # passed before: not run again
    assert s["6.helm-rollback"]["outcome"] == "skipped"
    assert "already runs 2025.09.1" in s["6.helm-rollback"]["observed"]
    assert not [a for a in helm.argv() if a[0] == "rollback"]
