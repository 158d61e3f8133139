"""Plug-ins: deploy modes, backup modes and CLI commands that other packages add.

A package declares them as entry points (the lab does, in its own pyproject.toml)::

    [project.entry-points."stellaops_cutover.deploy_modes"]
    lab = "some_package.module:DeployModeClass"

The tool finds them by name when params ask for one (``deploy.mode: lab``) and never imports a
plug-in otherwise; nothing in ``cutover_lib`` names a plug-in.  A deploy mode's class may type its
settings (``deploy.<mode>`` in params) with a ``settings`` attribute, a msgspec struct: they are
then checked with the rest of the params (``params check``, and before any run).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["GROUPS", "load", "names"]

GROUPS = {
    "deploy": "stellaops_cutover.deploy_modes",
    "backup": "stellaops_cutover.backup_modes",
    "commands": "stellaops_cutover.commands",
}


@lru_cache(maxsize=None)
def _entry_points(kind: str) -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=GROUPS[kind])}


def names(kind: str) -> list[str]:
    """The plug-ins of ``kind`` installed here, by name."""
    return sorted(_entry_points(kind))


def load(kind: str, name: str) -> Any:
    """The object a plug-in entry point names (imported now)."""
    try:
        ep = _entry_points(kind)[name]
    except KeyError:
        raise LookupError(f"no {kind} plug-in named {name!r} is installed "
                          f"(installed: {', '.join(names(kind)) or 'none'})") from None
    return ep.load()
