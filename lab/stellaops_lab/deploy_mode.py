"""Deploy mode ``lab``: the local stand-in stack "deployed" by restarting its processes on the
target release.  A named stand-in for compose/helm where neither can run (a laptop, CI);
it exercises the same runbook steps -- apply, health on the new release, rollback to the
previous release -- against real processes.

Faults can be *baked into a release* (``deploy.lab.release_faults``), the way a bad build
ships a bug: the services run with them on that release only, so rolling back cures them.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from cutover_lib.errors import CheckFailed

from ._errors import LabUnhealthy
from .settings import LabSettings, lab_settings

if TYPE_CHECKING:  # (not imported at run time: params check loads this class for its settings)
    from cutover_lib.engine.steps import Runbook, StepContext

__all__ = ["LabSteps"]


def _config(rb: Runbook, release: str) -> Any:
    from . import LabConfig

    lab = lab_settings(rb.env)
    return LabConfig.from_port_base(rb.path(lab.data_dir), lab.port_base, release=release,
                                    faults=dict(lab.release_faults.get(release, {})))


def _restart(ctx: StepContext, rb: Runbook, release: str) -> str:
    from . import down, up

    cfg = _config(rb, release)
    stopped = down(cfg)
    ctx.log(f"stopped {len(stopped)} lab processes: {', '.join(stopped) or 'none'}")
    try:
        state = up(cfg, timeout=rb.env.timeouts.health.total_seconds())
    except LabUnhealthy as exc:  # restarted, but not healthy: the health step that follows says so
        state = exc.state
        for name, problem in exc.problems.items():
            ctx.log(f"{name}: {problem}")
    for name, row in state.items():
        ctx.log(f"{name}: pid {row['pid']} {row['url']} version {row['version']} healthy={row['healthy']}")
    ctx.artifact(f"lab-status-{release}.json", json.dumps(state, indent=2, default=str))
    return f"{len(state)} services restarted on {release}"


def _wait_release(ctx: StepContext, rb: Runbook, release: str) -> str:
    from . import status

    cfg = _config(rb, release)
    deadline = time.monotonic() + rb.env.timeouts.health.total_seconds()
    while True:
        state = status(cfg)
        bad = {n: r for n, r in state.items() if not (r["healthy"] and r["version"] == release)}
        if not bad:
            return f"all {len(state)} services healthy on {release}"
        if time.monotonic() > deadline:
            detail = "; ".join(f"{n}: healthy={r['healthy']} http={r['http_status']} version={r['version']}"
                               for n, r in bad.items())
            raise CheckFailed(f"expected every service healthy on {release}; observed {detail}")
        time.sleep(0.5)


class LabSteps:
    """The deploy-mode protocol of ``cutover_lib.adapters.deploy`` for the lab."""

    #: what ``deploy.lab`` may hold (params check and every run check it before anything runs)
    settings = LabSettings

    def stage_secrets(self, rb: Runbook) -> None:
        def act(ctx: StepContext) -> str:
            from cutover_lib.engine.steps import NotApplicable

            raise NotApplicable("the lab provisions its own secret stores (cutover lab up)")

        rb.step("3.stage-secrets", "Apply staging secrets", owner="DevOps engineer",
                expect="stellaops-stage credentials align with values-stage.yaml", action=act,
                command="kubectl apply -f secrets/stage/*.yaml")

    def apply(self, rb: Runbook, section: str) -> None:
        release = rb.env.release
        rb.step(f"{section}.lab-upgrade", f"Restart the lab on release {release}", owner="DevOps engineer",
                expect=f"every lab service restarted on {release}", mutating=True,
                command=f"cutover lab down && STELLAOPS_RELEASE={release} cutover lab up",
                action=lambda ctx: _restart(ctx, rb, release))
        rb.step(f"{section}.lab-health", f"Services healthy on {release}", owner="DevOps engineer",
                expect=f"every service answers /healthz Healthy with version {release}",
                command="cutover lab status", action=lambda ctx: _wait_release(ctx, rb, release))

    def rollback(self, rb: Runbook) -> None:
        previous = rb.env.previous_release
        rb.step("6.lab-rollback", f"Restart the lab on the previous release {previous}", owner="DevOps engineer",
                expect=f"every lab service restarted on {previous}", mutating=True,
                command=f"cutover lab down && STELLAOPS_RELEASE={previous} cutover lab up",
                action=lambda ctx: _restart(ctx, rb, previous))
        rb.step("6.health-previous", f"Services healthy on {previous}", owner="DevOps engineer",
                expect=f"every service answers /healthz Healthy with version {previous}",
                command="cutover lab status", action=lambda ctx: _wait_release(ctx, rb, previous))
