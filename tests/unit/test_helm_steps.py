"""HelmSteps driven through a real ``Runbook`` against the named stand-ins: the stand-in
``helm`` (tests/standins/helm) and the stand-in Kubernetes API (tests/standins/kube_api.py)."""

import base64
import json
import shutil
from pathlib import Path

import pytest

from cutover_lib import _deploy
from cutover_lib._errors import StepFailed, ToolMissing
from cutover_lib._evidence import RunFolder
from cutover_lib._helm_steps import HelmSteps, secret_store_keys
from cutover_lib._params import load_environment
from cutover_lib._steps import Runbook
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

    def make(env="prod", **kw):
        overrides = {"timeouts": {"health": "2s"}, "deploy": {"helm": {"deployments": DEPLOYMENTS}}}
        environment = load_environment(env, REPO / "params", overrides)
        run = RunFolder.create(tmp_path / "executed", env, "t")
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


def test_apply_upgrades_and_watches_rollout(kube_api, helm, make_rb):
    for name in DEPLOYMENTS:
        kube_api.add_deployment(name, converge_after=2)
    rb = make_rb()
    _deploy.apply(rb)  # the notebook call: helm mode -> section 4.3
    s = steps(rb)
    up = s["4.3.helm-upgrade"]
    assert up["outcome"] == "passed" and up["mutating"] and up["command"] == PROD_UPGRADE
    assert "revision 2 deployed (stellaops-2025.09.2" in up["observed"]
    assert helm.argv()[0] == PROD_UPGRADE.split()[1:]
    ro = s["4.3.rollout-status"]
    assert ro["outcome"] == "passed" and not ro["mutating"]
    for name in DEPLOYMENTS:
        assert name in ro["observed"]
    assert "artifacts/4.3.pods.json" in ro["artifacts"]
    pods = json.loads((rb.run.path / "artifacts" / "4.3.pods.json").read_text())["pods"]
    assert {p["name"].rsplit("-7d9c5b", 1)[0] for p in pods} == set(DEPLOYMENTS)
    assert kube_api.requests.count("GET", "/apis/apps/v1/namespaces/stellaops/deployments", watch=True) >= 1


def test_rollout_not_converged_fails_then_rollback_uses_history(kube_api, helm, make_rb):
    kube_api.add_deployment("stellaops-authority", converge_after=1)
    kube_api.add_deployment("stellaops-web", converge_after=1)
    kube_api.add_deployment("stellaops-scanner-web", converge_after=None, stuck_reason="CrashLoopBackOff")
    rb = make_rb()
    with pytest.raises(StepFailed) as ei:
        HelmSteps().apply(rb, "4.3")
    assert ei.value.step_id == "4.3.rollout-status"
    s = steps(rb)
    assert s["4.3.helm-upgrade"]["outcome"] == "passed"
    ro = s["4.3.rollout-status"]
    assert ro["outcome"] == "failed" and "stellaops-scanner-web" in ro["message"]
    assert "CrashLoopBackOff" in ro["message"] and "stellaops-web" not in ro["message"].split("observed", 1)[1]
    assert (rb.run.path / "artifacts" / "4.3.pods.json").exists()
    assert ro["data"]["rollout"]["converged"] == ["stellaops-authority", "stellaops-web"]

    # the stand-ins are not wired to each other: script what the rollback does to the cluster
    kube_api.add_deployment("stellaops-scanner-web", converge_after=1)
    HelmSteps().rollback(rb)
    s = steps(rb)
    assert s["6.helm-history"]["outcome"] == "passed"
    assert s["6.rollout-status"]["outcome"] == "passed"
    assert "previous revision 1 (stellaops-2025.09.1, superseded)" in s["6.helm-history"]["observed"]
    rb_rec = s["6.helm-rollback"]
    assert rb_rec["outcome"] == "passed" and rb_rec["mutating"]
    assert rb_rec["command"] == "helm rollback stellaops 1 --namespace stellaops --kube-context stellaops-prod"
    assert ["rollback", "stellaops", "1", "--namespace", "stellaops", "--kube-context", "stellaops-prod"] in helm.argv()
    assert helm.history()[-1]["description"] == "Rollback to 1"
    assert json.loads((rb.run.path / "artifacts" / "6.helm-history.json").read_text())[0]["revision"] == 1


def test_rollback_without_previous_revision_never_guesses(kube_api, helm, make_rb):
    helm.seed([rev(1, "failed", "2025.09.1", "Install failed"), rev(2, "deployed", "2025.09.2", "Upgrade complete")])
    rb = make_rb()
    with pytest.raises(StepFailed) as ei:
        HelmSteps().rollback(rb)
    assert ei.value.step_id == "6.helm-history"
    s = steps(rb)
    assert "no earlier good revision running 2025.09.1" in s["6.helm-history"]["message"]
    assert "6.helm-rollback" not in s
    assert not [a for a in helm.argv() if a[0] == "rollback"]


def test_atomic_failure_then_rollback_is_not_needed(kube_api, helm, make_rb, monkeypatch):
    monkeypatch.setenv("HELM_STANDIN_FAIL_UPGRADE", "1")
    rb = make_rb()
    with pytest.raises(StepFailed):
        _deploy.apply(rb)
    s = steps(rb)
    assert s["4.3.helm-upgrade"]["outcome"] == "failed"
    assert "--atomic rolled the release back (now revision 3" in s["4.3.helm-upgrade"]["message"]
    assert "4.3.rollout-status" not in s
    decision = [r for r in rb.run.read_ledger() if r.get("kind") == "decision"]
    assert decision and decision[0]["failed"] == ["4.3.helm-upgrade"]
    kube_api.add_deployment("stellaops-authority", converge_after=0)
    kube_api.add_deployment("stellaops-web", converge_after=0)
    kube_api.add_deployment("stellaops-scanner-web", converge_after=0)
    HelmSteps().rollback(rb)
    s = steps(rb)
    assert "revision 3 already runs 2025.09.1 (Rollback to 1)" in s["6.helm-history"]["observed"]
    assert s["6.helm-rollback"]["outcome"] == "skipped"
    assert s["6.rollout-status"]["outcome"] == "passed"
    assert not [a for a in helm.argv() if a[0] == "rollback"]


def test_dry_run_plans_exact_commands_and_reads_history(kube_api, helm, make_rb):
    helm.seed([rev(1, "superseded", "2025.09.1", "Install complete"), rev(2, "deployed", "2025.09.2", "Upgrade complete")])
    rb = make_rb(dry_run=True)
    HelmSteps().apply(rb, "4.3")
    HelmSteps().rollback(rb)
    s = steps(rb)
    assert s["4.3.helm-upgrade"]["outcome"] == "planned" and s["4.3.helm-upgrade"]["command"] == PROD_UPGRADE
    assert s["4.3.rollout-status"]["outcome"] == "skipped"
    assert s["6.helm-history"]["outcome"] == "passed"  # read-only: runs in a dry run
    assert s["6.helm-rollback"]["outcome"] == "planned"
    assert s["6.helm-rollback"]["command"] == "helm rollback stellaops 1 --namespace stellaops --kube-context stellaops-prod"
    assert [a[0] for a in helm.argv()] == ["history"]


def test_stage_section_3_secrets_and_upgrade(kube_api, helm, make_rb):
    rb = make_rb("stage")
    HelmSteps().stage_secrets(rb)
    HelmSteps().stage_secrets(rb)
    recs = [r for r in rb.run.read_ledger() if r.get("kind") == "step" and r["step_id"] == "3.stage-secrets"]
    assert [r["outcome"] for r in recs] == ["passed", "passed"]
    assert recs[0]["observed"].startswith("4 secrets applied (4 created)")
    assert recs[1]["observed"].startswith("4 secrets applied (4 unchanged)")
    assert "4 secrets named in values-stage.yaml hold their keys" in recs[0]["observed"]
    assert recs[0]["command"].startswith("kubectl apply --server-side --field-manager=stellaops-cutover -n stellaops "
                                         "-f secrets/stage/ --context stellaops-stage")
    for name in DEPLOYMENTS:
        kube_api.add_deployment(name, converge_after=1)
    HelmSteps().apply(rb, "3")
    s = steps(rb)
    assert s["3.helm-upgrade"]["command"].startswith(
        "helm upgrade stellaops deploy/helm/stellaops -f deploy/helm/stellaops/values-stage.yaml --atomic")
    assert s["3.rollout-status"]["outcome"] == "passed"
    assert (rb.run.path / "artifacts" / "3.pods.json").exists()


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


def test_validate_profile_archives_lint_and_template(helm, make_rb):
    rb = make_rb()
    HelmSteps().validate_profile(rb, "prod", "deploy/helm/stellaops/values-prod.yaml")
    rec = steps(rb)["2.t-12h.validate-prod"]
    assert rec["outcome"] == "passed" and not rec["mutating"]
    assert rec["command"] == ("helm lint deploy/helm/stellaops -f deploy/helm/stellaops/values-prod.yaml && "
                              "helm template stellaops deploy/helm/stellaops -f deploy/helm/stellaops/values-prod.yaml "
                              "--namespace stellaops")
    log = rb.run.path / "artifacts" / "2.t-12h.validate-prod.template.log"
    assert "artifacts/2.t-12h.validate-prod.template.log" in rec["artifacts"] and "kind: Deployment" in log.read_text()
    with pytest.raises(StepFailed, match="values file deploy/helm/stellaops/values-qa.yaml"):
        HelmSteps().validate_profile(rb, "qa", "deploy/helm/stellaops/values-qa.yaml")


def test_network_is_skipped_in_helm_mode(make_rb):
    from nb_helpers import run_cells

    rb = make_rb()
    run_cells(rb, "04_preflight.ipynb", "4.1.network")
    rec = steps(rb)["4.1.network"]
    assert rec["outcome"] == "skipped"
    assert rec["observed"] == "not applicable: deploy mode is helm, this is the compose path"


def test_helm_missing_fails_the_step_with_install_hint(kube_api, make_rb, monkeypatch, tmp_path):
    monkeypatch.setenv("CUTOVER_HELM", str(tmp_path / "absent" / "helm"))
    rb = make_rb()
    with pytest.raises(ToolMissing) as ei:
        HelmSteps().apply(rb, "4.3")
    assert "https://helm.sh/docs/intro/install/" in ei.value.hint
    rec = steps(rb)["4.3.helm-upgrade"]
    assert rec["outcome"] == "failed" and "helm is not installed" in rec["message"]
