"""Deploy modes: a small registry the notebooks dispatch through.

``params: deploy.mode`` picks the adapter (``compose``, ``helm`` or ``lab``).  Each adapter
turns the runbook's deploy actions into steps on the ``Runbook``:

================  ==========================================================  =========
method            runbook                                                     mutating
================  ==========================================================  =========
stage_secrets     3 ``kubectl apply -f secrets/stage/*.yaml``                 yes
apply             a plug-in mode's apply (compose and helm: cells)              yes
rollback          a plug-in mode's rollback (compose and helm: cells)           yes
================  ==========================================================  =========

A method that does not apply to a mode records a ``skipped`` step saying why, so the
evidence shows every runbook bullet either way.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from ._steps import Runbook

__all__ = ["DeployAdapter", "adapter_for", "register_deploy_mode"]


class DeployAdapter(Protocol):
    def stage_secrets(self, rb: Runbook) -> None: ...

    def apply(self, rb: Runbook, section: str) -> None: ...

    def rollback(self, rb: Runbook) -> None: ...


# mode -> "module:attribute" (imported lazily: docker and kubernetes are heavy); other modes are
# plug-ins, found by entry point (group stellaops_cutover.deploy_modes, see _plugins.py)
_REGISTRY: dict[str, str] = {
    "compose": "cutover_lib._compose_steps:ComposeSteps",
    "helm": "cutover_lib._helm_steps:HelmSteps",
}


def register_deploy_mode(mode: str, target: str) -> None:
    """Plug in a deploy mode in this process: ``target`` is ``"package.module:ClassName"``."""
    _REGISTRY[mode] = target


def adapter_for(rb: Runbook) -> Any:
    mode = rb.env.deploy.mode
    if mode in _REGISTRY:
        module_name, attr = _REGISTRY[mode].split(":")
        return getattr(importlib.import_module(module_name), attr)()
    from ._plugins import load

    return load("deploy", mode)()


# ----------------------------------------------------------------------------- notebook calls



def stage_secrets(rb: Runbook) -> None:
    adapter_for(rb).stage_secrets(rb)


#: deploy modes whose runbook lines are notebook cells (``rb.sh(..., on="each node")``)
_IN_CELLS = {"compose", "helm"}


def apply(rb: Runbook, section: str | None = None) -> None:
    """A plug-in deploy mode's apply (the lab's restart); a failure records the rollback decision.
    In compose and helm mode the cells of 4.2 / 4.3 are the path: nothing happens here."""
    from ._errors import StepFailed

    mode = rb.env.deploy.mode
    if mode in _IN_CELLS:
        rb.show_html(f"<p>deploy mode <b>{mode}</b>: the cells above are this environment's path.</p>",
                     f"deploy mode {mode}: the cells above are this environment's path")
        return
    sec = section or "4.2"
    try:
        adapter_for(rb).apply(rb, sec)
    except StepFailed as exc:
        if sec.startswith("4"):
            rb.record("decision", decision="rollback", reason=f"apply failed: {exc.message}", failed=[exc.step_id])
        raise


def rollback(rb: Runbook) -> None:
    """Section 6 for a plug-in deploy mode (the lab's); in compose and helm mode the cells of
    Section 6 are the path."""
    mode = rb.env.deploy.mode
    if mode in _IN_CELLS:
        rb.show_html(f"<p>deploy mode <b>{mode}</b>: the cells above are this environment's path.</p>",
                     f"deploy mode {mode}: the cells above are this environment's path")
        return
    adapter_for(rb).rollback(rb)
