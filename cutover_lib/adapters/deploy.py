"""Deploy modes beyond the runbook's two: the hook a plug-in deploy mode (the lab's) runs through.

The compose and helm paths are cells of the notebooks (``rb.sh(..., on="each node")`` and
``rb.sh(..., mode="helm")``).  A plug-in deploy mode (``deploy.mode`` naming an entry point of
group ``stellaops_cutover.deploy_modes``) provides ``apply(rb, section)`` and ``rollback(rb)``; the
notebooks call them from one cell each (``deploy.apply(rb)``, ``deploy.rollback(rb)``), which does
nothing in compose and helm mode.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from ..engine.steps import Runbook

__all__ = ["DeployAdapter", "adapter_for", "register_deploy_mode"]


class DeployAdapter(Protocol):
    def apply(self, rb: Runbook, section: str) -> None: ...

    def rollback(self, rb: Runbook) -> None: ...


# mode -> "module:attribute" registered in this process; other modes are plug-ins, found by entry
# point (group stellaops_cutover.deploy_modes, see plugins.py).  compose and helm are cells.
_REGISTRY: dict[str, str] = {}


def register_deploy_mode(mode: str, target: str) -> None:
    """Plug in a deploy mode in this process: ``target`` is ``"package.module:ClassName"``."""
    _REGISTRY[mode] = target


def adapter_for(rb: Runbook) -> Any:
    mode = rb.env.deploy.mode
    if mode in _REGISTRY:
        module_name, attr = _REGISTRY[mode].split(":")
        return getattr(importlib.import_module(module_name), attr)()
    from .plugins import load

    return load("deploy", mode)()


# ----------------------------------------------------------------------------- notebook calls

#: deploy modes whose runbook lines are notebook cells (``rb.sh(..., on="each node")``)
_IN_CELLS = {"compose", "helm"}


def _in_cells(rb: Runbook) -> bool:
    """True (and says so under the cell) when this deploy mode's path is the cells above."""
    mode = rb.env.deploy.mode
    if mode in _IN_CELLS:
        rb.show_html(f"<p>deploy mode <b>{mode}</b>: the cells above are this environment's path.</p>",
                     f"deploy mode {mode}: the cells above are this environment's path")
    return mode in _IN_CELLS


def apply(rb: Runbook, section: str | None = None) -> None:
    """A plug-in deploy mode's apply (the lab's restart); a failure records the rollback decision.
    In compose and helm mode the cells of 4.2 / 4.3 are the path: nothing happens here."""
    from ..errors import OutcomeUnknown, StepFailed

    if _in_cells(rb):
        return
    sec = section or "4.2"
    try:
        adapter_for(rb).apply(rb, sec)
    except OutcomeUnknown:
        raise  # interrupted earlier and not confirmed: nothing ran now, nothing to roll back
    except StepFailed as exc:
        if sec.startswith("4"):  # the same rollback decision a cell's on_failure="rollback" records
            rb._decide("rollback", exc.step_id or f"{sec}.apply", exc.message)
        raise


def rollback(rb: Runbook) -> None:
    """Section 6 for a plug-in deploy mode (the lab's); in compose and helm mode the cells of
    Section 6 are the path."""
    if not _in_cells(rb):
        adapter_for(rb).rollback(rb)
