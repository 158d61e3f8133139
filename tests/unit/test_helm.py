"""Helm adapter: lint/template argv, the previous-revision choice a rollback relies on, and running
through the stand-in ``helm`` (tests/standins/helm -- a stand-in, not helm)."""

import json
import shutil
from pathlib import Path

import pytest

from cutover_lib import _helm
from cutover_lib._errors import CheckFailed, CommandFailed, ToolMissing
from cutover_lib._params import HelmDeploy

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "standins" / "helm"


def h(**kw):
    return HelmDeploy(values="deploy/helm/stellaops/values-prod.yaml", **kw)


def test_lint_and_template_argv():
    assert _helm.lint_argv("deploy/helm/stellaops", "v.yaml") == "helm lint deploy/helm/stellaops -f v.yaml".split()
    assert _helm.template_argv("stellaops", "c", "v.yaml", "ns") == \
        "helm template stellaops c -f v.yaml --namespace ns".split()


def test_executable_uses_cutover_helm(monkeypatch):
    monkeypatch.delenv("CUTOVER_HELM", raising=False)
    assert _helm.executable(["helm", "version"]) == ["helm", "version"]
    monkeypatch.setenv("CUTOVER_HELM", "/opt/helm/bin/helm")
    assert _helm.executable(["helm", "version"]) == ["/opt/helm/bin/helm", "version"]


def rev(n, status, release="2025.09.1", desc="Upgrade complete"):
    return {"revision": n, "updated": "2025-10-27T14:02:11.1+00:00", "status": status,
            "chart": f"stellaops-{release}", "app_version": release, "description": desc}


@pytest.mark.parametrize("history, expected", [
    ([rev(1, "superseded"), rev(2, "deployed", "2025.09.2")], 1),
    ([rev(1, "superseded"), rev(2, "superseded"), rev(3, "deployed", "2025.09.2")], 2),
    # a failed upgrade in between never qualifies
    ([rev(1, "superseded"), rev(2, "failed", "2025.09.2"), rev(3, "deployed", "2025.09.2")], 1),
    # --atomic: failed revision, then "Rollback to 1" deployed; previous good is 1
    ([rev(1, "superseded"), rev(2, "failed", "2025.09.2"), rev(3, "deployed", desc="Rollback to 1")], 1),
    # pending and uninstalled revisions never qualify; an older "deployed" one does
    ([rev(1, "deployed"), rev(2, "pending-upgrade", "2025.09.2"), rev(3, "deployed", "2025.09.2")], 1),
    # out of order in the JSON
    ([rev(3, "deployed", "2025.09.2"), rev(1, "superseded"), rev(2, "superseded")], 2),
])
def test_previous_revision(history, expected):
    assert _helm.previous_revision(history) == expected


def test_previous_revision_matching_the_previous_release():
    hist = [rev(1, "superseded", "2025.08.3"), rev(2, "superseded", "2025.09.1"),
            rev(3, "superseded", "2025.09.2"), rev(4, "deployed", "2025.09.2")]
    assert _helm.previous_revision(hist) == 3  # same release re-applied: the plain rule
    assert _helm.previous_revision(hist, previous_release="2025.09.1") == 2
    with pytest.raises(CheckFailed, match=r"no earlier good revision running 2025.07.0 .*current is revision 4"):
        _helm.previous_revision(hist, previous_release="2025.07.0")


@pytest.mark.parametrize("history", [
    [rev(1, "deployed", desc="Install complete")],
    [rev(1, "failed"), rev(2, "deployed", "2025.09.2")],
    [rev(1, "uninstalled"), rev(2, "deployed", "2025.09.2")],
])
def test_no_previous_revision_is_a_clear_error_never_a_guess(history):
    with pytest.raises(CheckFailed) as ei:
        _helm.previous_revision(history)
    assert "no earlier good revision to roll back to" in ei.value.message
    assert "by hand" in ei.value.hint


def test_no_deployed_revision_at_all():
    with pytest.raises(CheckFailed, match="no deployed revision"):
        _helm.previous_revision([rev(1, "superseded"), rev(2, "pending-rollback")])


# --------------------------------------------------------------------------- through the stand-in

@pytest.fixture
def helm_standin(tmp_path, monkeypatch):
    """The stand-in helm (a copy, executable), its argv log and its release state."""
    exe = tmp_path / "bin" / "helm"
    exe.parent.mkdir()
    shutil.copy(STANDIN, exe)
    exe.chmod(0o755)
    log, state = tmp_path / "helm-argv.jsonl", tmp_path / "helm-state.json"
    state.write_text(json.dumps({"stellaops/stellaops": [rev(1, "deployed", desc="Install complete")]}))
    monkeypatch.setenv("CUTOVER_HELM", str(exe))
    monkeypatch.setenv("HELM_STANDIN_LOG", str(log))
    monkeypatch.setenv("HELM_STANDIN_STATE", str(state))
    monkeypatch.delenv("HELM_STANDIN_FAIL_UPGRADE", raising=False)
    return {"exe": exe, "log": log, "state": state,
            "argv": lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []}


def test_tool_missing_says_how_to_install_helm(monkeypatch, tmp_path):
    monkeypatch.setenv("CUTOVER_HELM", str(tmp_path / "no-such-helm"))
    with pytest.raises(ToolMissing) as ei:
        _helm.run(["helm", "version"], timeout=10)
    assert "helm is not installed" in ei.value.message and "https://helm.sh/docs/intro/install/" in ei.value.hint


def test_missing_helm_secrets_plugin_is_tool_missing(helm_standin, monkeypatch):
    monkeypatch.setenv("HELM_STANDIN_NO_SECRETS", "1")
    with pytest.raises(ToolMissing) as ei:
        _helm.run(["helm", "secrets", "upgrade", "stellaops", "deploy/helm/stellaops", "-f",
                   "deploy/helm/stellaops/values-stage.yaml"], timeout=30, cwd=REPO)
    assert "helm plugin install https://github.com/jkroepke/helm-secrets" in ei.value.hint


def test_lint_and_template_fail_on_missing_values_file(helm_standin):
    chart = "deploy/helm/stellaops"
    ok = _helm.run(_helm.template_argv("stellaops", chart, f"{chart}/values-prod.yaml", "stellaops"),
                   timeout=30, cwd=REPO)
    assert "kind: Deployment" in ok.output
    for argv in (_helm.lint_argv(chart, "nope.yaml"), _helm.template_argv("stellaops", chart, "nope.yaml", "s")):
        with pytest.raises(CommandFailed, match="nope.yaml"):
            _helm.run(argv, timeout=30, cwd=REPO)
