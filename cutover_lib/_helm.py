"""Helm adapter: T-12h's lint and template argv, and reading ``helm history`` for a rollback.

The runbook's ``helm upgrade``, ``helm history`` and ``helm rollback`` lines are cells of the
notebooks (``rb.sh(..., mode="helm")``); what they need from here is :func:`rollback_target`
(the revision to roll back to, read from ``helm history -o json``, never guessed: see
:func:`previous_revision`) and :func:`runs_release`.  T-12h's ``helm lint`` / ``helm template``
run through :func:`run` (``$CUTOVER_HELM``, default ``helm`` on PATH).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._errors import CheckFailed, CommandFailed, ToolMissing

from ._shell import CommandResult, run_command

__all__ = ["INSTALL_HINT", "current_revision", "executable", "helm_bin", "lint_argv", "previous_revision", "release_of",
           "rollback_target", "run", "runs_release", "template_argv"]

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


def rollback_target() -> Any:
    """A check for the cell that reads ``helm history ... -o json`` before a rollback (Section 6):
    which revision to roll back to -- the newest good one running ``previous_release`` -- handed to
    the next cell as ``hist["rollback_to"]``.  When the current revision already runs the previous
    release (``--atomic`` rolled back), the rollback is not needed; when no revision qualifies, the
    step fails listing the history: the revision is never guessed."""
    from ._template import NotNeeded
    from ._verify import _Check

    def check(ctx: Any, result: Any) -> str:
        hist = result.json if isinstance(result.json, list) else []
        previous = ctx.rb.env.previous_release
        cur = current_revision(hist)
        ctx.data["current"] = {k: cur.get(k) for k in ("revision", "status", "chart", "app_version", "description")}
        if release_of(cur) == previous:
            why = f"revision {cur['revision']} already runs {previous} ({cur.get('description')})"
            result.values["rollback_to"] = NotNeeded(why)
            return why + "; nothing to roll back"
        prev = previous_revision(hist, previous_release=previous)
        entry = next(e for e in hist if int(e["revision"]) == prev)
        result.values["rollback_to"] = prev
        return (f"current revision {cur['revision']} ({cur.get('chart')}, {cur.get('status')}); "
                f"previous revision {prev} ({entry.get('chart')}, {entry.get('status')})")

    return _Check("a previous revision running previous_release (never guessed)", check)


def runs_release(release: str) -> Any:
    """A check for ``helm history ... -o json`` after the rollback: the deployed revision runs ``release``
    (a template such as ``{previous_release}``)."""
    from ._template import render_text
    from ._verify import _Check

    def check(ctx: Any, result: Any) -> str:
        want = render_text(release, ctx.rb.env)
        cur = current_revision(result.json if isinstance(result.json, list) else [])
        if release_of(cur) != want:
            raise CheckFailed(f"revision {cur['revision']} runs {release_of(cur)}, not {want}")
        return f"revision {cur['revision']} runs {want} ({cur.get('description')})"

    return _Check(f"the deployed revision runs {release}", check)
