"""Helm adapter: exact argv of every helm command, history parsing, previous-revision choice,
and running through the stand-in ``helm`` (tests/standins/helm -- a stand-in, not helm)."""

import json
import shutil
from pathlib import Path

import pytest

from cutover_lib import _helm
from cutover_lib._errors import CheckFailed, CommandFailed, ToolMissing
from cutover_lib._params import HelmDeploy, load_environment

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "standins" / "helm"


def h(**kw):
    return HelmDeploy(values="deploy/helm/stellaops/values-prod.yaml", **kw)


def test_upgrade_argv_reads_like_the_runbook():
    assert _helm.upgrade_argv(h()) == (
        "helm upgrade stellaops deploy/helm/stellaops -f deploy/helm/stellaops/values-prod.yaml "
        "--atomic --timeout 15m --namespace stellaops").split()


def test_upgrade_argv_from_prod_params_adds_kube_context():
    prod = load_environment("prod", REPO / "params").deploy.helm
    assert _helm.upgrade_argv(prod) == [
        "helm", "upgrade", "stellaops", "deploy/helm/stellaops", "-f", "deploy/helm/stellaops/values-prod.yaml",
        "--atomic", "--timeout", "15m", "--namespace", "stellaops", "--kube-context", "stellaops-prod"]


def test_upgrade_argv_stage_values_secrets_plugin_and_no_atomic():
    stage = load_environment("stage", REPO / "params").deploy.helm
    assert _helm.upgrade_argv(stage)[:6] == ["helm", "upgrade", "stellaops", "deploy/helm/stellaops", "-f",
                                            "deploy/helm/stellaops/values-stage.yaml"]
    assert _helm.upgrade_argv(h(secrets_plugin=True, timeout="90s"))[:3] == ["helm", "secrets", "upgrade"]
    assert "--timeout" in (a := _helm.upgrade_argv(h(timeout="90s"))) and a[a.index("--timeout") + 1] == "90s"
    assert "--atomic" not in _helm.upgrade_argv(h(atomic=False))
    assert _helm.upgrade_argv(h(timeout="1h"))[-3] == "1h"


def test_history_rollback_lint_template_argv():
    assert _helm.history_argv("stellaops", "stellaops") == "helm history stellaops -o json --namespace stellaops".split()
    assert _helm.history_argv("stellaops", "stellaops", "stellaops-prod")[-2:] == ["--kube-context", "stellaops-prod"]
    assert _helm.rollback_argv("stellaops", 7, "stellaops") == "helm rollback stellaops 7 --namespace stellaops".split()
    assert _helm.rollback_argv("stellaops", 7, "stellaops", "c")[-2:] == ["--kube-context", "c"]
    with pytest.raises(ValueError):
        _helm.rollback_argv("stellaops", 0, "stellaops")
    assert _helm.lint_argv("deploy/helm/stellaops", "v.yaml") == ["helm", "lint", "deploy/helm/stellaops", "-f", "v.yaml"]
    assert _helm.template_argv("stellaops", "c", "v.yaml", "ns") == \
        ["helm", "template", "stellaops", "c", "-f", "v.yaml", "--namespace", "ns"]


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


def test_parse_history_skips_headers_and_warnings():
    text = ("$ helm history stellaops -o json --namespace stellaops\n"
            "WARNING: Kubernetes configuration file is group-readable. This is insecure.\n"
            + json.dumps([rev(2, "deployed"), rev(1, "superseded")]) + "\n# exit 0 after 0.10s\n")
    assert [r["revision"] for r in _helm.parse_history(text)] == [1, 2]
    with pytest.raises(CheckFailed, match="no JSON history"):
        _helm.parse_history("Error: something\n")


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


def test_standin_upgrade_history_rollback_round_trip(helm_standin):
    hd = h()
    _helm.run(_helm.upgrade_argv(hd), timeout=30, cwd=REPO)
    hist = _helm.history(hd, timeout=30)
    assert [(r["revision"], r["status"], r["app_version"]) for r in hist] == \
        [(1, "superseded", "2025.09.1"), (2, "deployed", "2025.09.2")]
    assert set(hist[0]) == {"revision", "updated", "status", "chart", "app_version", "description"}
    prev = _helm.previous_revision(hist, previous_release="2025.09.1")
    _helm.run(_helm.rollback_argv("stellaops", prev, "stellaops"), timeout=30)
    after = _helm.history(hd, timeout=30)
    assert _helm.current_revision(after)["description"] == "Rollback to 1"
    assert helm_standin["argv"]() == [
        _helm.upgrade_argv(hd)[1:], _helm.history_argv("stellaops", "stellaops")[1:],
        ["rollback", "stellaops", "1", "--namespace", "stellaops"], _helm.history_argv("stellaops", "stellaops")[1:]]


def test_history_of_unknown_release_is_check_failed(helm_standin):
    with pytest.raises(CheckFailed, match="helm release other not found in namespace stellaops"):
        _helm.history(HelmDeploy(values="v.yaml", release="other"), timeout=30)


def test_atomic_upgrade_failure_is_command_failed(helm_standin, monkeypatch):
    monkeypatch.setenv("HELM_STANDIN_FAIL_UPGRADE", "1")
    with pytest.raises(CommandFailed, match="rolled back due to atomic"):
        _helm.run(_helm.upgrade_argv(h()), timeout=30, cwd=REPO)
    hist = _helm.history(h(), timeout=30)
    assert [(r["revision"], r["status"]) for r in hist] == [(1, "superseded"), (2, "failed"), (3, "deployed")]
    assert _helm.previous_revision(hist) == 1


def test_tool_missing_says_how_to_install_helm(monkeypatch, tmp_path):
    monkeypatch.setenv("CUTOVER_HELM", str(tmp_path / "no-such-helm"))
    with pytest.raises(ToolMissing) as ei:
        _helm.run(["helm", "version"], timeout=10)
    assert "helm is not installed" in ei.value.message and "https://helm.sh/docs/intro/install/" in ei.value.hint
    monkeypatch.delenv("CUTOVER_HELM")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing, match="helm is not installed"):
        _helm.history(h(), timeout=10)


def test_missing_helm_secrets_plugin_is_tool_missing(helm_standin, monkeypatch):
    monkeypatch.setenv("HELM_STANDIN_NO_SECRETS", "1")
    with pytest.raises(ToolMissing) as ei:
        _helm.run(_helm.upgrade_argv(h(secrets_plugin=True)), timeout=30, cwd=REPO)
    assert "helm plugin install https://github.com/jkroepke/helm-secrets" in ei.value.hint


def test_lint_and_template_fail_on_missing_values_file(helm_standin):
    chart = "deploy/helm/stellaops"
    ok = _helm.run(_helm.template_argv("stellaops", chart, f"{chart}/values-prod.yaml", "stellaops"),
                   timeout=30, cwd=REPO)
    assert "kind: Deployment" in ok.output
    for argv in (_helm.lint_argv(chart, "nope.yaml"), _helm.template_argv("stellaops", chart, "nope.yaml", "s")):
        with pytest.raises(CommandFailed, match="nope.yaml"):
            _helm.run(argv, timeout=30, cwd=REPO)
