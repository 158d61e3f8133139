"""Helm adapter: the exact argv of every helm command the runbook runs, and reading ``helm history``.

Building an argv is pure (what a dry run plans is what a real run executes); running goes
through :func:`cutover_lib._shell.run_command` or a step's ``ctx.sh``.  Every argv starts
with ``helm`` exactly as the runbook reads; :func:`executable` swaps in the binary to run
(``$CUTOVER_HELM``, default ``helm`` on PATH), so evidence shows the runbook's command::

    helm upgrade stellaops deploy/helm/stellaops -f deploy/helm/stellaops/values-prod.yaml \
        --atomic --timeout 15m --namespace stellaops --kube-context stellaops-prod
    helm history stellaops -o json --namespace stellaops --kube-context stellaops-prod
    helm rollback stellaops 7 --namespace stellaops --kube-context stellaops-prod

The rollback target is read from ``helm history``, never guessed: see :func:`previous_revision`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._errors import CheckFailed, CommandFailed, ToolMissing
from ._params import HelmDeploy, format_duration
from ._shell import CommandResult, run_command

__all__ = ["INSTALL_HINT", "current_revision", "executable", "helm_bin", "history", "history_argv",
           "lint_argv", "parse_history", "previous_revision", "release_of", "rollback_argv", "run",
           "template_argv", "upgrade_argv"]

INSTALL_HINT = ("install helm 3 (https://helm.sh/docs/intro/install/, e.g. `brew install helm` or "
                "`curl -fsSL https://raw.githubusercontent.com/helm/helm/main/scripts/get-helm-3 | bash`), "
                "or set CUTOVER_HELM to the helm binary")
SECRETS_HINT = "install the helm-secrets plugin: helm plugin install https://github.com/jkroepke/helm-secrets"
#: revisions a rollback may return to (``failed``, ``pending-*`` and ``uninstalled`` may not)
_GOOD = ("superseded", "deployed")


def helm_bin() -> str:
    """The helm binary to run: ``$CUTOVER_HELM`` (read when called), else ``helm`` on PATH."""
    return os.environ.get("CUTOVER_HELM") or "helm"


def executable(argv: Sequence[str]) -> list[str]:
    """``argv`` with its leading ``helm`` replaced by :func:`helm_bin`."""
    return [helm_bin(), *argv[1:]] if argv and argv[0] == "helm" else list(argv)


def _target(namespace: str, kube_context: str | None) -> list[str]:
    return ["--namespace", namespace, *(["--kube-context", kube_context] if kube_context else [])]


def upgrade_argv(helm: HelmDeploy, *, values: str | None = None) -> list[str]:
    """``helm [secrets] upgrade RELEASE CHART -f VALUES [--atomic] --timeout 15m --namespace NS [--kube-context C]``."""
    argv = ["helm", *(["secrets"] if helm.secrets_plugin else []), "upgrade", helm.release, helm.chart,
            "-f", values or helm.values]
    if helm.atomic:
        argv.append("--atomic")
    return argv + ["--timeout", format_duration(helm.timeout), *_target(helm.namespace, helm.kube_context)]


def history_argv(release: str, namespace: str, kube_context: str | None = None) -> list[str]:
    return ["helm", "history", release, "-o", "json", *_target(namespace, kube_context)]


def rollback_argv(release: str, revision: int, namespace: str, kube_context: str | None = None) -> list[str]:
    """``helm rollback RELEASE REV --namespace NS [--kube-context C]`` (the runbook's Section 6 line)."""
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
        raise ValueError(f"a helm revision is a positive integer, got {revision!r}")
    return ["helm", "rollback", release, str(revision), *_target(namespace, kube_context)]


def lint_argv(chart: str, values: str) -> list[str]:
    return ["helm", "lint", chart, "-f", values]


def template_argv(release: str, chart: str, values: str, namespace: str) -> list[str]:
    return ["helm", "template", release, chart, "-f", values, "--namespace", namespace]


# --------------------------------------------------------------------------- running

Runner = Callable[..., CommandResult]


def run(argv: Sequence[str], *, sh: Runner | None = None, timeout: float = 120, check: bool = True,
        **kwargs: Any) -> CommandResult:
    """Run a helm argv (through ``sh``, e.g. ``ctx.sh``, or :func:`run_command`) with helm's own
    failure modes explained: helm not installed, the helm-secrets plugin missing."""
    real = executable(argv)
    try:
        if sh is not None:
            result = sh(real, timeout=timeout, check=False, **kwargs)
        else:
            result = run_command(real, timeout=timeout, check=False, **kwargs)
    except ToolMissing as exc:
        raise ToolMissing(f"helm is not installed or not executable ({real[0]}); needed for: "
                          f"{' '.join(argv[:3])} ...", hint=INSTALL_HINT) from exc
    text = _output(result)
    if not result.ok and argv[1:2] == ["secrets"] and 'unknown command "secrets"' in text:
        raise ToolMissing("the helm-secrets plugin is not installed (deploy.helm.secrets_plugin is true)",
                          hint=SECRETS_HINT)
    if check and not result.ok:
        last = " | ".join(_lines(text)[-3:]) or "(no output)"
        raise CommandFailed(f"`{result.command}` {'timed out' if result.timed_out else f'exited {result.returncode}'}"
                            f"; last output: {last}")
    return result


def _output(result: CommandResult) -> str:
    """The command's whole output: its log when there is one (masked already), else the tail."""
    if result.log_path is not None and Path(result.log_path).exists():
        return Path(result.log_path).read_text(encoding="utf-8", errors="replace")
    return "\n".join(result.tail)


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("$ ", "# exit "))]


def parse_history(text: str) -> list[dict[str, Any]]:
    """The revisions of ``helm history -o json`` output, oldest first.

    Lines that are not the JSON array (``$ cmd`` log headers, helm's ``WARNING:`` lines on
    stderr) are skipped; no array at all is an error."""
    for line in reversed(_lines(text)):
        line = line.strip()
        if line.startswith("["):
            try:
                rows = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rows, list) and all(isinstance(r, dict) and "revision" in r for r in rows):
                return sorted(rows, key=lambda r: int(r["revision"]))
    raise CheckFailed("`helm history -o json` printed no JSON history",
                      hint="run it by hand; is this helm 3?")


def history(helm: HelmDeploy, *, sh: Runner | None = None, timeout: float = 60, **kwargs: Any) -> list[dict[str, Any]]:
    """The release's revisions, oldest first (``helm history RELEASE -o json``).  A release that
    does not exist is a :class:`CheckFailed` naming release, namespace and context."""
    argv = history_argv(helm.release, helm.namespace, helm.kube_context)
    result = run(argv, sh=sh, timeout=timeout, check=False, **kwargs)
    text = _output(result)
    if not result.ok:
        where = f"namespace {helm.namespace}" + (f", context {helm.kube_context}" if helm.kube_context else "")
        if "release: not found" in text:
            raise CheckFailed(f"helm release {helm.release} not found in {where}: it has no history",
                              hint="check deploy.helm.release / namespace / kube_context in params")
        last = " | ".join(_lines(text)[-3:]) or "(no output)"
        raise CommandFailed(f"`{result.command}` exited {result.returncode}; last output: {last}")
    return parse_history(text)


def release_of(entry: dict[str, Any]) -> str:
    """The release a revision runs: its ``app_version``, else the chart's version suffix."""
    app = str(entry.get("app_version") or "")
    if app:
        return app
    chart = str(entry.get("chart") or "")
    return chart.rsplit("-", 1)[-1] if "-" in chart else chart


def current_revision(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The revision now deployed (the newest with status ``deployed``)."""
    deployed = [h for h in history if h.get("status") == "deployed"]
    if not deployed:
        states = ", ".join(f"{h['revision']} {h.get('status')}" for h in history) or "empty"
        raise CheckFailed(f"no deployed revision in the helm history ({states})",
                          hint="the release is mid-operation or failed; inspect `helm history` and `helm status`")
    return max(deployed, key=lambda h: int(h["revision"]))


def previous_revision(history: Sequence[dict[str, Any]], *, previous_release: str | None = None) -> int:
    """The revision to roll back to: the newest ``superseded`` (or older ``deployed``) revision
    before the current deployed one.  ``failed`` / ``pending-*`` revisions never qualify.

    With ``previous_release`` only a revision running that release qualifies.  If none does,
    a :class:`CheckFailed` lists the history -- the revision is never guessed."""
    current = current_revision(history)
    cur_rev = int(current["revision"])
    candidates = [h for h in history if int(h["revision"]) < cur_rev and h.get("status") in _GOOD]
    if previous_release is not None:
        candidates = [h for h in candidates if release_of(h) == previous_release]
    if not candidates:
        shown = "; ".join(f"{h['revision']} {h.get('status')} {h.get('chart')} ({h.get('description', '')})"
                          for h in history)
        want = f" running {previous_release}" if previous_release else ""
        raise CheckFailed(f"no earlier good revision{want} to roll back to: current is revision {cur_rev}; "
                          f"history: {shown}",
                          hint="there is nothing safe to roll back to automatically; decide the revision by hand "
                               "from `helm history` with the DevOps lead")
    return int(max(candidates, key=lambda h: int(h["revision"]))["revision"])
