"""Section 2's readiness activities (T-24h .. T-30m) and the Section 1 bridge check, as steps."""

from __future__ import annotations

import json
from typing import Any

from ._approvals import require
from ._stella import api_for as _api, healthy as _healthy
from ._errors import CheckFailed
from ._params import SecretStore
from ._steps import Runbook, StepContext

__all__ = ["bridge_reachable", "change_ticket_approved", "freeze_notice", "go_no_go",
           "secret_stores"]


def _post(rb: Runbook, ctx: StepContext, text: str, kind: str) -> str:
    from ._notify import Bridge

    res = Bridge(rb.env.bridge).post(text, kind=kind)
    ctx.data["bridge"] = {"ok": res.ok, "attempts": res.attempts, "status": res.status}
    ctx.check(res.ok, f"post to #{rb.env.bridge.channel} failed after {res.attempts} attempt(s): {res.error}")
    return f"posted to #{rb.env.bridge.channel} (HTTP {res.status}, {res.attempts} attempt(s))"


def bridge_reachable(rb: Runbook) -> dict[str, Any]:
    """1.bridge: #launch-bridge takes a post (the bridge call is set up 30 minutes before start)."""
    return rb.step("1.bridge", "#launch-bridge reachable", owner="Cutover lead",
                   expect=f"the #{rb.env.bridge.channel} incoming webhook accepts a post", mutating=True,
                   command=f"POST <bridge webhook {rb.env.bridge.webhook}> (Mattermost incoming webhook)",
                   action=lambda ctx: _post(rb, ctx, f":white_check_mark: bridge check for {rb.env.change_ticket} "
                                                     f"({rb.env.name}, release {rb.env.release})", "bridge-check"))


def change_ticket_approved(rb: Runbook) -> dict[str, Any]:
    """T-24h: change ticket approved = the production deployment plan gate (CTO + DevOps lead)."""
    return require(rb, "plan", section="2.t-24h")


def _dir_store(rb: Runbook, name: str, store: SecretStore) -> str:
    assert store.path
    folder = rb.path(store.path)
    if not folder.is_dir():
        raise CheckFailed(f"secret store {name} not found at {store.path}",
                          hint="create it (for the lab: cutover lab up)")
    present = {p.name for p in folder.iterdir() if p.is_file() and p.stat().st_size > 0}  # names and sizes only
    missing = [k for k in store.keys if k not in present]
    if missing:
        raise CheckFailed(f"expected keys {', '.join(store.keys)}; observed {name} lacks {', '.join(missing)}")
    return f"{name}: all {len(store.keys)} keys present ({', '.join(store.keys)})"


def secret_stores(rb: Runbook, section: str = "4.1") -> None:
    """Every secret store holds every required key -- key names only, values are never read."""
    prefix = "2.t-24h" if section.startswith("2") else section
    for name, store in rb.env.secret_stores.items():
        if store.backend == "dir":
            rb.step(f"{prefix}.secret-{name}", f"Secret store {name} holds its keys", owner="DevOps lead",
                    expect=f"keys {', '.join(store.keys)} present", command=f"ls {store.path}",
                    action=lambda ctx, n=name, s=store: _dir_store(rb, n, s))
        else:
            from ._helm_steps import secret_store_keys

            secret_store_keys(rb, name, store, step_prefix=prefix)


def freeze_notice(rb: Runbook) -> dict[str, Any]:
    """T-6h: freeze non-launch deployments; notify guild leads on the bridge."""
    text = (f":snowflake: Deployment freeze for {rb.env.name}: non-launch deployments are frozen until the "
            f"{rb.env.release} cutover at T0 {rb.env.t0:%Y-%m-%d %H:%M} UTC closes ({rb.env.change_ticket}). "
            f"Guild leads: authority, scanner, storage, observability.")
    return rb.step("2.t-6h.freeze", "Freeze non-launch deployments; notify guild leads", owner="Product owner",
                   expect="freeze notice posted to the bridge", mutating=True,
                   command=f"POST #{rb.env.bridge.channel}: {text[:60]}…",
                   action=lambda ctx: _post(rb, ctx, text, "freeze"))


def go_no_go(rb: Runbook) -> dict[str, Any]:
    """T-30m: final go/no-go: every readiness step so far passed, every service green."""
    def act(ctx: StepContext) -> str:
        steps = [r for r in rb.run.read_ledger() if r.get("kind") == "step" and r["step_id"] != "2.t-30m.go-no-go"]
        bad = [f"{r['step_id']} ({r['outcome']})" for r in steps if r["outcome"] in ("failed",)]
        api = _api(rb)
        red = []
        for service in ("authority", "scanner", "signer", "attestor", "notify", "web", "runtime"):
            try:
                _healthy(ctx, api, service)
            except CheckFailed as exc:
                red.append(f"{service}: {exc.message}")
        ctx.artifact("2.t-30m.go-no-go.json", json.dumps({"readiness_failures": bad, "services_not_green": red,
                                                          "steps": len(steps)}, indent=2))
        ctx.check(not bad and not red, "NO-GO: " + "; ".join(bad + red))
        return f"GO: {len(steps)} readiness steps without failure; all 7 services green"

    return rb.step("2.t-30m.go-no-go", "Final go/no-go; monitoring dashboards green", owner="Cutover lead",
                   expect="every readiness step passed and every service healthy", action=act)

