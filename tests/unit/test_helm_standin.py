"""The helm stand-in (tests/standins/helm) against the stand-in Kubernetes API (tests/standins/kube_api.py),
without notebooks: ``helm upgrade`` renders the chart with the real Helm library (helm_python) and applies
what it rendered to the API with server-side apply; ``helm rollback`` re-applies an earlier revision's
rendering; a chart or values error is Helm's own message, exit 1, nothing applied."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from standins.kube_api import kube_api  # noqa: F401 - fixture

pytest.importorskip("helm_python")

REPO = Path(__file__).resolve().parents[2]
NS = "stellaops"
PROD = "deploy/helm/stellaops/values-prod.yaml"
CHART = "deploy/helm/stellaops"
IMAGE = "registry.stella-ops.internal/stellaops/{svc}:{release}"
SERVICES = ["attestor", "authority", "notify", "scanner-web", "scanner-worker", "signer", "web", "zastava-webhook"]


@pytest.fixture
def helm(tmp_path, kube_api, monkeypatch):  # noqa: F811
    root = tmp_path / "project"
    shutil.copytree(REPO / "deploy" / "helm", root / "deploy" / "helm")
    exe = tmp_path / "bin" / "helm"
    exe.parent.mkdir()
    shutil.copy(REPO / "tests" / "standins" / "helm", exe)
    exe.chmod(0o755)
    state = tmp_path / "helm-state.json"
    # (the kube_api fixture set KUBECONFIG and HELM_STANDIN_PYTHON, the interpreter with helm_python)
    monkeypatch.setenv("HELM_STANDIN_STATE", str(state))
    monkeypatch.delenv("HELM_STANDIN_FAIL_UPGRADE", raising=False)

    class H:
        def __init__(self):
            self.root, self.state = root, state

        def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(exe), *args], cwd=root, env=dict(os.environ), capture_output=True, text=True, timeout=60)

        def upgrade(self, *values: str) -> subprocess.CompletedProcess[str]:
            files = [a for v in values for a in ("-f", v)]
            return self("upgrade", "--install", "stellaops", CHART, *files, "--namespace", NS,
                        "--kube-context", "stellaops-prod")

        def history(self) -> list[dict]:
            r = self("history", "stellaops", "--namespace", NS, "-o", "json")
            assert r.returncode == 0, r.stderr
            return json.loads(r.stdout)

    return H()


def served(kube, plural: str, name: str | None = None) -> dict:
    """What the API serves (through HTTP, with the kubeconfig's bearer token)."""
    import urllib.request

    from standins.kube_api import TOKEN

    group = "apis/apps/v1" if plural == "deployments" else "api/v1"
    url = f"{kube.url}/{group}/namespaces/{NS}/{plural}" + (f"/{name}" if name else "")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def images(kube) -> dict[str, tuple[str, int]]:
    return {d["metadata"]["name"]: (d["spec"]["template"]["spec"]["containers"][0]["image"], d["spec"]["replicas"])
            for d in served(kube, "deployments")["items"]}


def test_upgrade_applies_what_helm_rendered(helm, kube_api):
    r = helm.upgrade(PROD)
    assert r.returncode == 0, r.stderr
    assert 'Release "stellaops" does not exist. Installing it now.' in r.stdout
    assert "NOTES:\nStella Ops 2025.09.2 deployed as release stellaops in stellaops." in r.stdout
    # every Deployment of the chart, named, tagged and sized as values.yaml + values-prod.yaml render them
    prod_replicas = {"authority": 3, "scanner-web": 3, "scanner-worker": 4, "signer": 2, "attestor": 2, "notify": 2,
                     "web": 3, "zastava-webhook": 2}
    assert images(kube_api) == {f"stellaops-{s}": (IMAGE.format(svc=s, release="2025.09.2"), prod_replicas[s])
                                for s in SERVICES}
    auth = served(kube_api, "deployments", "stellaops-authority")
    assert auth["metadata"]["labels"] == {
        "app.kubernetes.io/name": "stellaops-authority", "app.kubernetes.io/part-of": "stellaops",
        "app.kubernetes.io/instance": "stellaops", "app.kubernetes.io/version": "2025.09.2",
        "app.kubernetes.io/managed-by": "Helm"}
    container = auth["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"limits": {"memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}
    assert auth["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == "stellaops-prod-core"
    assert auth["metadata"]["generation"] == 1 and auth["metadata"]["managedFields"][0]["manager"] == "helm"
    # the Services too, and every object went in by server-side apply as field manager helm
    assert sorted(s["metadata"]["name"] for s in served(kube_api, "services")["items"]) == \
        [f"stellaops-{s}" for s in SERVICES]
    patches = [(p, q) for m, p, q in kube_api.requests.log if m == "PATCH"]
    assert len(patches) == 16 and all(q == {"fieldManager": "helm", "force": "true"} for _, q in patches)
    assert patches[0][0] == f"/api/v1/namespaces/{NS}/services/stellaops-attestor"  # helm's order: Services first
    assert patches[-1][0] == f"/apis/apps/v1/namespaces/{NS}/deployments/stellaops-zastava-webhook"
    # the history is helm's shape: no manifest in it; the state keeps the rendering of the revision
    assert helm.history() == [{"revision": 1, "updated": helm.history()[0]["updated"], "status": "deployed",
                               "chart": "stellaops-2025.9.2", "app_version": "2025.09.2",
                               "description": "Install complete"}]
    stored = json.loads(helm.state.read_text())["stellaops/stellaops"][0]
    assert "# Source: stellaops/templates/deployment.yaml" in stored["manifest"]
    # an applied deployment no test scripted rolls out after one watch event
    assert auth["status"] == {}
    assert kube_api.advance(NS) == 8
    auth = served(kube_api, "deployments", "stellaops-authority")
    assert auth["status"]["observedGeneration"] == 1 and auth["status"]["updatedReplicas"] == 3
    pods = served(kube_api, "pods")["items"]
    assert sorted(p["spec"]["containers"][0]["image"] for p in pods
                  if p["metadata"]["labels"]["app.kubernetes.io/name"] == "stellaops-authority") == \
        [IMAGE.format(svc="authority", release="2025.09.2")] * 3


def test_values_change_shows_after_the_next_upgrade_and_rollback_restores(helm, kube_api):
    assert helm.upgrade(PROD).returncode == 0
    kube_api.advance(NS)
    before = images(kube_api)
    # the next release: a later -f file wins key by key (helm's merge), null removes a service
    (helm.root / "next.yaml").write_text('global: {release: "2025.10.0"}\n'
                                         "services:\n  web: {replicas: 5}\n  zastava-webhook: null\n")
    kube_api.add_deployment("stellaops-scanner-web", converge_after=None, stuck_reason="ImagePullBackOff")
    r = helm.upgrade(PROD, "next.yaml")
    assert r.returncode == 0, r.stderr
    assert 'Release "stellaops" has been upgraded. Happy Helming!' in r.stdout and "REVISION: 2" in r.stdout
    after = images(kube_api)
    assert after["stellaops-web"] == (IMAGE.format(svc="web", release="2025.10.0"), 5)
    assert after["stellaops-authority"] == (IMAGE.format(svc="authority", release="2025.10.0"), 3)
    assert "stellaops-zastava-webhook" not in after  # deleted: the new revision no longer renders it
    assert "stellaops-zastava-webhook" not in [s["metadata"]["name"] for s in served(kube_api, "services")["items"]]
    web = served(kube_api, "deployments", "stellaops-web")
    assert web["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 8443}]  # kept from prod
    assert web["metadata"]["labels"]["app.kubernetes.io/version"] == "2025.10.0"
    assert web["metadata"]["generation"] == 2
    # the applied spec rolls out by the test's script: scanner-web sticks, the unscripted ones converge
    kube_api.advance(NS)
    sw = served(kube_api, "deployments", "stellaops-scanner-web")
    assert (sw["status"]["updatedReplicas"], sw["status"]["unavailableReplicas"]) == (1, 1)
    waiting = [p for p in served(kube_api, "pods")["items"]
               if p["status"]["containerStatuses"][0]["state"].get("waiting")]
    assert [(p["spec"]["containers"][0]["image"], p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"])
            for p in waiting] == [(IMAGE.format(svc="scanner-web", release="2025.10.0"), "ImagePullBackOff")]
    assert served(kube_api, "deployments", "stellaops-web")["status"]["observedGeneration"] == 2

    kube_api.next_rollout("stellaops-scanner-web", converge_after=1)  # ... and the rollback converges
    r = helm("rollback", "stellaops", "1", "--namespace", NS, "--kube-context", "stellaops-prod")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Rollback was a success! Happy Helming!\n"
    assert images(kube_api) == before  # revision 1's objects again, the removed one re-created
    assert "stellaops-zastava-webhook" in [s["metadata"]["name"] for s in served(kube_api, "services")["items"]]
    assert served(kube_api, "deployments", "stellaops-web")["metadata"]["generation"] == 3
    assert [(h["revision"], h["status"], h["app_version"], h["description"]) for h in helm.history()] == [
        (1, "superseded", "2025.09.2", "Install complete"), (2, "superseded", "2025.09.2", "Upgrade complete"),
        (3, "deployed", "2025.09.2", "Rollback to 1")]
    kube_api.advance(NS)
    sw = served(kube_api, "deployments", "stellaops-scanner-web")
    assert sw["status"]["updatedReplicas"] == 3 and "unavailableReplicas" not in sw["status"]


def test_a_bad_values_file_fails_with_helms_message_and_applies_nothing(helm, kube_api):
    (helm.root / "bad.yaml").write_text("global:\n  release: [2025.10.0\n")
    r = helm.upgrade(PROD, "bad.yaml")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == ("Error: failed to parse bad.yaml: error converting YAML to JSON: yaml: line 2: "
                        "did not find expected ',' or ']'\n")
    assert kube_api.deployments == {} and not helm.state.exists()


def test_a_template_error_fails_the_upgrade_with_helms_message(helm, kube_api):
    assert helm.upgrade(PROD).returncode == 0
    (helm.root / CHART / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.global.missing.name }}\n")
    r = helm.upgrade(PROD)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("Error: UPGRADE FAILED: stellaops/templates/configmap.yaml:4:")
    assert "nil pointer evaluating interface {}.name" in r.stderr
    assert [h["revision"] for h in helm.history()] == [1]  # no revision recorded, nothing applied
    assert kube_api.requests.count("PATCH") == 16


def test_a_kind_the_cluster_does_not_serve_fails_like_helm(helm, kube_api):
    (helm.root / CHART / "templates" / "pdb.yaml").write_text(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {{ .Release.Name }}-pdb\n"
        "spec:\n  minAvailable: 1\n")
    r = helm.upgrade(PROD)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "Error: INSTALLATION FAILED: unable to build kubernetes objects from release manifest: resource mapping not "
        'found for name: "stellaops-pdb" namespace: "" from "": no matches for kind "PodDisruptionBudget" in '
        'version "policy/v1"', "ensure CRDs are installed first"]
    assert kube_api.requests.count("PATCH") == 0


def test_upgrade_without_a_reachable_cluster_fails(helm, kube_api, monkeypatch, closed_port, tmp_path):
    from standins.kube_api import write_kubeconfig

    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "closed.yaml", f"http://127.0.0.1:{closed_port}")))
    r = helm.upgrade(PROD)
    assert r.returncode == 1
    assert r.stderr.startswith(f'Error: Kubernetes cluster unreachable: Get "http://127.0.0.1:{closed_port}/version": ')
    assert not helm.state.exists()
