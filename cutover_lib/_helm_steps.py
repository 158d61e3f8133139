"""Deploy mode ``helm``: the runbook's Helm/Kubernetes lines as steps.

==================================  ==========================================================================
step                                what runs
==================================  ==========================================================================
``2.t-12h.validate-<profile>``      ``helm lint CHART -f VALUES`` and ``helm template ...`` (output archived)
``3.stage-secrets``                 ``kubectl apply -f secrets/stage/*.yaml`` as a server-side apply; then the
                                    secrets ``values-stage.yaml`` names hold their keys
``3.helm-upgrade``/``4.3.helm-upgrade``  ``helm upgrade stellaops deploy/helm/stellaops -f VALUES --atomic
                                    --timeout 15m --namespace stellaops [--kube-context C]``
``3.rollout-status``/``4.3.rollout-status``  a watch until every deployment rolled out; pods in
                                    ``artifacts/<section>.pods.json``
``6.helm-history``                  ``helm history stellaops -o json``: current and previous revision
``6.helm-rollback``                 ``helm rollback stellaops <previous> --namespace stellaops``
``6.rollout-status``                as above, after the rollback
``4.1.secret-<name>``               the Kubernetes secret holds every key the store lists (names only)
==================================  ==========================================================================

Mutating steps pass their exact argv as ``command`` so that a dry run plans exactly what
a real run executes.  The rollback revision comes from ``6.helm-history`` (which runs even
in a dry run, being read-only); if that step cannot name one, the rollback does not run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from . import _helm, _kube
from ._errors import CheckFailed, ToolMissing
from ._params import HelmDeploy, SecretStore
from ._shell import render
from ._steps import NotApplicable, Runbook, StepContext

__all__ = ["HelmSteps", "secret_store_keys"]

OWNER = "DevOps engineer"


def _deploy_helm(rb: Runbook) -> HelmDeploy:
    h = rb.env.deploy.helm
    if h is None:
        raise NotApplicable(f"deploy mode is {rb.env.deploy.mode}; deploy.helm is not configured")
    return h


def _kube_context(rb: Runbook) -> str | None:
    return rb.env.deploy.helm.kube_context if rb.env.deploy.helm else None


def _safe(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", name.lower())


def _kubectl(rb: Runbook, *args: str) -> list[str]:
    ctx = _kube_context(rb)
    return ["kubectl", *args, *(["--context", ctx] if ctx else [])]


def _values_secrets(path: Path) -> dict[str, list[str]]:
    """Secret name -> keys, from the values file's ``secrets:`` section (how the chart finds them)."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    out: dict[str, list[str]] = {}
    for ref in (doc.get("secrets") or {}).values() if isinstance(doc, dict) else []:
        if isinstance(ref, dict) and ref.get("name"):
            out[str(ref["name"])] = [str(k) for k in ref.get("keys") or []]
    return out


def _rollout(rb: Runbook, ctx: StepContext, section: str) -> str:
    """Watch the deployments roll out; pods written as evidence either way."""
    h = _deploy_helm(rb)
    if rb.dry_run:
        raise NotApplicable("dry run: nothing was deployed, so there is no rollout to watch")
    timeout = rb.env.timeouts.health.total_seconds()
    result = _kube.wait_rollout(h.namespace, h.deployments, timeout=timeout, context=h.kube_context,
                                request_timeout=rb.env.timeouts.http.total_seconds())
    pods = _kube.list_pods(h.namespace, context=h.kube_context, timeout=rb.env.timeouts.http.total_seconds())
    ctx.artifact(f"{section}.pods.json", json.dumps({"namespace": h.namespace, "context": h.kube_context,
                                                     "pods": pods}, indent=2))
    ctx.data["rollout"] = {"converged": result.converged, "not_converged": result.not_converged,
                           "status": result.status, "watches": result.watches, "events": result.events,
                           "duration_s": result.duration_s}
    for name in result.converged:
        st = result.status[name]
        ctx.log(f"deployment/{name}: rolled out ({st['updated']}/{st['desired']} updated and available)")
    for name, reasons in result.not_converged.items():
        ctx.log(f"deployment/{name}: NOT rolled out: " + "; ".join(reasons))
    if not result.ok:
        raise CheckFailed(f"expected every deployment rolled out within {timeout:g}s; observed "
                          + "; ".join(f"{n}: {', '.join(r)}" for n, r in result.not_converged.items()))
    return result.summary()


class HelmSteps:
    """The deploy-mode protocol of :mod:`cutover_lib._deploy` for Helm on Kubernetes."""

    # ------------------------------------------------------------------ 3 / 4.1
    # ------------------------------------------------------------------ T-12h
    def validate_profile(self, rb: Runbook, profile: str, path: str) -> None:
        h = rb.env.deploy.helm
        chart_dir = Path(path).parent
        chart = chart_dir.as_posix() if rb.path(str(chart_dir / "Chart.yaml")).exists() or h is None else h.chart
        release, namespace = (h.release, h.namespace) if h else ("stellaops", "stellaops")
        lint, template = _helm.lint_argv(chart, path), _helm.template_argv(release, chart, path, namespace)
        step_id = f"2.t-12h.validate-{_safe(profile)}"

        def act(ctx: StepContext) -> str:
            if not rb.path(path).is_file():
                raise CheckFailed(f"expected values file {path} (deploy.profiles.{profile}); observed no such file")
            timeout = rb.env.timeouts.command.total_seconds()
            try:
                _helm.run(lint, sh=ctx.sh, timeout=timeout, log_name=f"{step_id}.lint.log")
            except ToolMissing as exc:
                if rb.env.deploy.mode != "helm":
                    raise NotApplicable(f"{exc.message}; deploy mode is {rb.env.deploy.mode}") from exc
                raise
            res = _helm.run(template, sh=ctx.sh, timeout=timeout, log_name=f"{step_id}.template.log")
            kinds = re.findall(r"^kind:\s*(\S+)", _helm._output(res), flags=re.M)
            ctx.data["manifests"] = {k: kinds.count(k) for k in sorted(set(kinds))}
            return f"profile {profile}: helm lint clean; template renders {len(kinds)} manifests"

        rb.step(step_id, f"validate-profiles: {profile} ({path})", owner=OWNER,
                expect=f"`helm lint` and `helm template` succeed for {path}", action=act,
                command=f"{render(lint)} && {render(template)}")

    # ------------------------------------------------------------------ 3
    def stage_secrets(self, rb: Runbook) -> None:
        h = rb.env.deploy.helm
        folder = (h.stage_secrets if h else None) or "secrets/stage"
        ns = h.namespace if h else "stellaops"
        shown = render(_kubectl(rb, "apply", "--server-side", f"--field-manager={_kube.FIELD_MANAGER}",
                                "-n", ns, "-f", f"{folder}/")) + f"  # {folder}/*.yaml"

        def act(ctx: StepContext) -> str:
            helm = _deploy_helm(rb)
            if helm.secrets_plugin:
                raise NotApplicable("secrets_plugin: the staging secrets are decrypted and applied by "
                                    "`helm secrets upgrade` in 3.helm-upgrade")
            if not helm.stage_secrets:
                raise CheckFailed("deploy.helm.stage_secrets is not set",
                                  hint="set it to secrets/stage, or secrets_plugin: true")
            paths = sorted(rb.path(helm.stage_secrets).glob("*.yaml"))
            if not paths:
                raise CheckFailed(f"expected staging secret manifests; observed no *.yaml in {helm.stage_secrets}")
            results = _kube.apply_secrets(paths, helm.namespace, context=helm.kube_context,
                                          timeout=rb.env.timeouts.http.total_seconds())
            for obj, outcome in results:
                ctx.log(f"{obj} {outcome}")
            ctx.data["secrets"] = [{"object": o, "outcome": r} for o, r in results]
            # "ensuring stellaops-stage credentials align with values-stage.yaml": every secret the
            # values file names holds the keys it lists (names only)
            wanted = _values_secrets(rb.path(helm.values))
            gaps = []
            for name, keys in wanted.items():
                _, missing = _kube.secret_keys(helm.namespace, name, keys, context=helm.kube_context,
                                               timeout=rb.env.timeouts.http.total_seconds())
                if missing:
                    gaps.append(f"{name} lacks {', '.join(missing)}")
            ctx.data["values_secrets"] = sorted(wanted)
            if gaps:
                raise CheckFailed(f"expected the secrets {helm.values} names to hold its keys; observed "
                                  + "; ".join(gaps))
            counts = {r: sum(1 for _, x in results if x == r) for r in ("created", "changed", "unchanged")}
            return (f"{len(results)} secrets applied ({', '.join(f'{n} {k}' for k, n in counts.items() if n)}); "
                    f"{len(wanted)} secrets named in {Path(helm.values).name} hold their keys")

        rb.step("3.stage-secrets", "Apply staging secrets", owner=OWNER,
                expect=f"stellaops-stage credentials applied and aligned with {Path(h.values).name if h else 'values'}",
                action=act, command=shown, mutating=True)

    # ------------------------------------------------------------------ 3 / 4.3
    def apply(self, rb: Runbook, section: str) -> None:
        h = _deploy_helm(rb)
        argv = _helm.upgrade_argv(h)

        def upgrade(ctx: StepContext) -> str:
            if not rb.path(h.values).is_file():
                raise CheckFailed(f"expected values file {h.values} (deploy.helm.values); observed no such file")
            timeout = h.timeout.total_seconds() + 120  # helm enforces --timeout itself; this is a backstop
            res = _helm.run(argv, sh=ctx.sh, timeout=timeout, check=False)
            text = _helm._output(res)
            if not res.ok:
                if "rolled back" in text:
                    rev = _last_rev(rb, ctx)
                    raise CheckFailed(f"expected release {rb.env.release} deployed; observed helm upgrade failed and "
                                      f"--atomic rolled the release back{rev}: " + _last_lines(text))
                raise CheckFailed(f"expected release {rb.env.release} deployed; observed helm upgrade exited "
                                  f"{res.returncode}{' (timed out)' if res.timed_out else ''}: " + _last_lines(text))
            hist = _helm.history(h, sh=ctx.sh, timeout=rb.env.timeouts.command.total_seconds(),
                                 log_name=f"{section}.helm-history.log")
            cur = _helm.current_revision(hist)
            ctx.data["revision"] = {k: cur.get(k) for k in ("revision", "status", "chart", "app_version")}
            return f"release {h.release} revision {cur['revision']} deployed ({cur.get('chart')}, " \
                   f"app {cur.get('app_version')})"

        rb.step(f"{section}.helm-upgrade", f"helm upgrade {h.release} to {rb.env.release} with {Path(h.values).name}",
                owner=OWNER, expect=f"release {h.release} upgraded to {rb.env.release} (status deployed)",
                action=upgrade, command=argv, mutating=True)
        self._rollout_step(rb, section, f"Rollout of {rb.env.release} converged")

    def _rollout_step(self, rb: Runbook, section: str, title: str) -> None:
        h = _deploy_helm(rb)
        names = h.deployments or ["<every deployment>"]
        shown = " ; ".join(render(_kubectl(rb, "rollout", "status", f"deployment/{n}", "-n", h.namespace,
                                           f"--timeout={int(rb.env.timeouts.health.total_seconds())}s"))
                           for n in names)
        rb.step(f"{section}.rollout-status", title, owner=OWNER,
                expect="every deployment: updatedReplicas == replicas == availableReplicas and "
                       "observedGeneration >= generation",
                action=lambda ctx: _rollout(rb, ctx, section), command=shown)

    # ------------------------------------------------------------------ 6
    def rollback(self, rb: Runbook) -> None:
        h = _deploy_helm(rb)
        hist_argv = _helm.history_argv(h.release, h.namespace, h.kube_context)
        plan: dict[str, Any] = {}

        def read_history(ctx: StepContext) -> str:
            hist = _helm.history(h, sh=ctx.sh, timeout=rb.env.timeouts.command.total_seconds())
            ctx.artifact("6.helm-history.json", json.dumps(hist, indent=2))
            cur = _helm.current_revision(hist)
            ctx.data["current"] = {k: cur.get(k) for k in ("revision", "status", "chart", "app_version", "description")}
            if _helm.release_of(cur) == rb.env.previous_release:
                plan["already"] = cur
                return (f"revision {cur['revision']} already runs {rb.env.previous_release} "
                        f"({cur.get('description')}); nothing to roll back")
            prev = _helm.previous_revision(hist, previous_release=rb.env.previous_release)
            entry = next(e for e in hist if int(e["revision"]) == prev)
            plan["revision"] = prev
            ctx.data["previous"] = {k: entry.get(k) for k in ("revision", "status", "chart", "app_version")}
            return (f"current revision {cur['revision']} ({cur.get('chart')}, {cur.get('status')}); "
                    f"previous revision {prev} ({entry.get('chart')}, {entry.get('status')})")

        rb.step("6.helm-history", f"Read helm history of {h.release}", owner=OWNER,
                expect=f"a previous revision of {h.release} running {rb.env.previous_release}",
                action=read_history, command=hist_argv)

        if "revision" in plan:
            argv: list[str] | None = _helm.rollback_argv(h.release, plan["revision"], h.namespace, h.kube_context)
            shown: str | list[str] = list(argv or [])
        else:
            argv = None
            shown = render(["helm", "rollback", h.release, "<previous-release-number>", "--namespace", h.namespace,
                            *(["--kube-context", h.kube_context] if h.kube_context else [])])

        def do_rollback(ctx: StepContext) -> str:
            if "already" in plan:
                cur = plan["already"]
                raise NotApplicable(f"revision {cur['revision']} already runs {rb.env.previous_release} "
                                    f"({cur.get('description')})")
            run_argv = argv
            if run_argv is None:  # 6.helm-history passed in an earlier attempt (resume): read it again
                hist = _helm.history(h, sh=ctx.sh, timeout=rb.env.timeouts.command.total_seconds(),
                                     log_name="6.helm-rollback.history-before.log")
                now = _helm.current_revision(hist)
                if _helm.release_of(now) == rb.env.previous_release:
                    raise NotApplicable(f"revision {now['revision']} already runs {rb.env.previous_release}")
                plan["revision"] = _helm.previous_revision(hist, previous_release=rb.env.previous_release)
                run_argv = _helm.rollback_argv(h.release, plan["revision"], h.namespace, h.kube_context)
            _helm.run(run_argv, sh=ctx.sh, timeout=rb.env.timeouts.command.total_seconds())
            hist = _helm.history(h, sh=ctx.sh, timeout=rb.env.timeouts.command.total_seconds(),
                                 log_name="6.helm-rollback.history.log")
            cur = _helm.current_revision(hist)
            ctx.data["revision"] = {k: cur.get(k) for k in ("revision", "status", "chart", "app_version", "description")}
            ctx.check(_helm.release_of(cur) == rb.env.previous_release,
                      f"revision {cur['revision']} runs {_helm.release_of(cur)}")
            return f"rolled back to revision {plan['revision']}: now revision {cur['revision']} " \
                   f"({cur.get('chart')}, {cur.get('description')})"

        rb.step("6.helm-rollback", f"helm rollback {h.release} to the previous release {rb.env.previous_release}",
                owner=OWNER, expect=f"release {h.release} back on {rb.env.previous_release}",
                action=do_rollback, command=shown, mutating=True)
        self._rollout_step(rb, "6", f"Rollout of {rb.env.previous_release} converged")


def _last_lines(text: str, n: int = 3) -> str:
    return " | ".join(_helm._lines(text)[-n:]) or "(no output)"


def _last_rev(rb: Runbook, ctx: StepContext) -> str:
    """`` to revision N (chart)`` after an atomic rollback, from history; empty if unreadable."""
    h = _deploy_helm(rb)
    try:
        cur = _helm.current_revision(_helm.history(h, sh=ctx.sh, timeout=rb.env.timeouts.command.total_seconds(),
                                                   log_name=f"{ctx.step_id}.history.log"))
    except Exception:  # noqa: BLE001 - best effort detail inside an already failing step
        return ""
    ctx.data["revision"] = {k: cur.get(k) for k in ("revision", "status", "chart", "app_version", "description")}
    return f" (now revision {cur['revision']}, {cur.get('chart')}: {cur.get('description')})"


def secret_store_keys(rb: Runbook, store_name: str, store: SecretStore, *, step_prefix: str = "4.1") -> dict[str, Any]:
    """``<step_prefix>.secret-<store_name>``: the Kubernetes secret holds every key of the store.
    Key names only: no value is read into evidence, ever."""
    context = _kube_context(rb)
    shown = render(_kubectl(rb, "describe", "secret", store_name, "-n", store.namespace))

    def act(ctx: StepContext) -> str:
        present, missing = _kube.secret_keys(store.namespace, store_name, store.keys, context=context,
                                             timeout=rb.env.timeouts.http.total_seconds())
        ctx.data.update({"secret": f"{store.namespace}/{store_name}", "required": list(store.keys),
                         "missing": missing, "keys_present": len(present)})
        if missing:
            raise CheckFailed(f"expected keys {', '.join(store.keys)}; observed {store.namespace}/{store_name} "
                              f"lacks {', '.join(missing)}")
        return f"{store_name}: all {len(store.keys)} keys present ({', '.join(store.keys)})"

    return rb.step(f"{step_prefix}.secret-{_safe(store_name)}", f"Secret store {store_name} holds its keys",
                   owner="DevOps lead", expect=f"keys {', '.join(store.keys)} present in {store.namespace}/{store_name}",
                   command=shown, action=act)
