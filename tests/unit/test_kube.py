"""Kubernetes adapter against the stand-in API server (tests/standins/kube_api.py -- a stand-in
answering the Kubernetes REST API subset the adapter calls, not a cluster), plus a real-cluster
test that runs only where a kubeconfig reaches one."""

import base64
import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from cutover_lib.adapters import kube as _kube
from cutover_lib.errors import CheckFailed, ParamsError, SecretError
from cutover_lib.config.secrets import SecretRef
from standins.kube_api import kube_api, write_kubeconfig  # noqa: F401 - fixture

CANARY = "canary-kube-value-8e41c2d7"
CANARY_B64 = base64.b64encode(CANARY.encode()).decode().rstrip("=")


def _no_canary(*texts):
    for t in texts:
        assert CANARY not in str(t) and CANARY_B64 not in str(t)


# --------------------------------------------------------------------------- secrets

def test_standin_secret_keys_present_and_missing_never_values(kube_api, caplog):
    caplog.set_level(logging.DEBUG)
    kube_api.add_secret("stellaops-prod-core", {"authority-client-secret": CANARY, "signer-key.pem": CANARY})
    present, missing = _kube.secret_keys("stellaops", "stellaops-prod-core",
                                         ["authority-client-secret", "signer-key.pem", "attestor-api-token"],
                                         context="stellaops-prod")
    assert present == ["authority-client-secret", "signer-key.pem"] and missing == ["attestor-api-token"]
    _no_canary(present, missing, caplog.text)


def test_standin_missing_secret_names_namespace_and_secret(kube_api):
    with pytest.raises(CheckFailed) as ei:
        _kube.secret_keys("stellaops", "stellaops-prod-mongo", ["password"], context="stellaops-prod")
    assert "secret stellaops/stellaops-prod-mongo does not exist" in ei.value.message
    assert "kube_context 'stellaops-prod'" in ei.value.message


def test_standin_read_secret_value_and_k8s_ref(kube_api):
    kube_api.add_secret("stellaops-prod-mongo", {"password": CANARY})
    assert _kube.read_secret_value("stellaops", "stellaops-prod-mongo", "password") == CANARY
    assert SecretRef("k8s:stellaops/stellaops-prod-mongo#password").resolve() == CANARY
    with pytest.raises(SecretError, match=r"has no key 'username' \(it has: password\)") as ei:
        _kube.read_secret_value("stellaops", "stellaops-prod-mongo", "username")
    _no_canary(ei.value.one_line())
    with pytest.raises(SecretError, match="secret stellaops/nope does not exist"):
        SecretRef("k8s:stellaops/nope#password").resolve()


def test_unreachable_api_is_one_clear_line(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = write_kubeconfig(tmp_path / "kc.yaml", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KUBECONFIG", str(cfg))
    with pytest.raises(SecretError) as ei:
        _kube.read_secret_value("stellaops", "s", "k", context="stellaops-prod")
    assert ei.value.message.startswith(f"cannot reach the Kubernetes API at http://127.0.0.1:{port}: connection refused")
    assert "kube_context 'stellaops-prod' in params" in ei.value.hint and "VPN" in ei.value.hint
    with pytest.raises(CheckFailed, match="connection refused"):
        _kube.secret_keys("stellaops", "s", ["k"], context="stellaops-prod")


def test_bad_token_unknown_context_and_no_kubeconfig(kube_api, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "bad.yaml", kube_api.url, token="wrong")))
    with pytest.raises(CheckFailed, match=r"rejected the credentials .*\(HTTP 401"):
        _kube.secret_keys("stellaops", "s", ["k"], context="stellaops-prod")
    monkeypatch.setenv("KUBECONFIG", str(kube_api.kubeconfig))
    with pytest.raises(ParamsError, match="cannot use kube_context 'stellaops-typo'") as ei:
        _kube.secret_keys("stellaops", "s", ["k"], context="stellaops-typo")
    assert "kubectl config get-contexts" in ei.value.hint
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(SecretError, match="no kubeconfig found"):
        _kube.read_secret_value("stellaops", "s", "k")


# --------------------------------------------------------------------------- a real cluster

def _real_cluster_reason() -> str | None:
    """None when a real cluster answers; else why the real-cluster test skips."""
    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    if not any(Path(p).is_file() for p in path.split(os.pathsep) if p):
        if shutil.which("kind"):
            return "kind is installed but no kubeconfig exists: run `kind create cluster` to enable this test"
        return f"no real Kubernetes cluster: no kubeconfig at {path} and kind is not installed"
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return "kubectl is not installed to probe the cluster in the kubeconfig"
    try:
        probe = subprocess.run([kubectl, "version", "--request-timeout=3s", "-o", "json"], capture_output=True,
                               timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return "the cluster in the kubeconfig did not answer within 10 s"
    if probe.returncode != 0 or b"serverVersion" not in probe.stdout:
        return f"the cluster in the kubeconfig ({path}) is not reachable"
    return None


def test_real_cluster_secret_round_trip(tmp_path):
    """Real cluster (kind or a kubeconfig): apply a secret, check its keys, clean up."""
    reason = _real_cluster_reason()
    if reason:
        pytest.skip(reason)
    from kubernetes import client, config

    ns = f"cutover-test-{uuid.uuid4().hex[:8]}"
    api = config.new_client_from_config(persist_config=False)
    core = client.CoreV1Api(api)
    try:
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        core.create_namespaced_secret(ns, {"apiVersion": "v1", "kind": "Secret",
                                           "metadata": {"name": "cutover-test"}, "stringData": {"password": CANARY}})
        assert _kube.secret_keys(ns, "cutover-test", ["password", "x"]) == (["password"], ["x"])
        assert _kube.read_secret_value(ns, "cutover-test", "password") == CANARY
    finally:
        core.delete_namespace(ns)
        api.close()
