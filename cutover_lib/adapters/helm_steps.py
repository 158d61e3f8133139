"""Deploy mode ``helm``: what is still a library step (the runbook's helm and kubectl lines are cells).

==================================  ==========================================================================
step                                what runs
==================================  ==========================================================================
``4.1.secret-<name>``               the Kubernetes secret holds every key the store lists (names only)
==================================  ==========================================================================

``helm upgrade`` (3, 4.3), ``kubectl get pods --watch``, ``kubectl rollout status``, ``helm history``
and ``helm rollback`` (6) are cells of the notebooks (``rb.sh(..., mode="helm")``); the rollback
revision comes from :func:`cutover_lib.adapters.helm.rollback_target`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..config.params import HelmDeploy, SecretStore
from ..engine.steps import NotApplicable, Runbook, StepContext
from ..errors import CheckFailed
from . import kube as _kube
from .shell import render

__all__ = ["secret_store_keys", "values_secrets_hold_keys"]

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


def values_secrets_hold_keys() -> Any:
    """After ``kubectl apply -f secrets/stage``: "ensuring stellaops-stage credentials align with
    values-stage.yaml" -- every secret the values file names (its ``secrets:`` section) holds the keys
    it lists (key names only, never values), read through the Kubernetes API."""
    from ..engine.result import NamedCheck as _Check

    def check(ctx: StepContext, result: Any) -> str:
        rb = ctx.rb
        helm = _deploy_helm(rb)
        wanted = _values_secrets(rb.path(helm.values))
        gaps = []
        for name, keys in wanted.items():
            _, missing = _kube.secret_keys(helm.namespace, name, keys, context=helm.kube_context,
                                           timeout=rb.env.timeouts.http.total_seconds())
            if missing:
                gaps.append(f"{name} lacks {', '.join(missing)}")
        ctx.data["values_secrets"] = sorted(wanted)
        if gaps:
            raise CheckFailed(f"expected {ctx.expect}; observed " + "; ".join(gaps))
        return f"{len(wanted)} secrets named in {Path(helm.values).name} hold their keys"

    return _Check("every secret the values file names holds its keys", check)


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
