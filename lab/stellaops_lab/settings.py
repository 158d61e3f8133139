"""The lab deploy mode's settings: ``deploy.lab`` in params (the tool keeps them as a plain mapping
for the plug-in; this is where they get their types, as the tool's own params get theirs)."""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta, Struct

__all__ = ["LabSettings", "lab_settings"]


class LabSettings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Deploy mode ``lab``: the local stand-in stack, "deployed" by restarting its processes on the
    target release.  A named stand-in for compose/helm where neither can run."""

    data_dir: str = ".lab"
    port_base: Annotated[int, Meta(ge=1024, le=65000)] = 18080
    #: faults baked into a release, e.g. {"2025.09.2": {"runtime.ingest_error": true}}
    release_faults: dict[str, dict[str, Any]] = {}


def lab_settings(env: Any) -> LabSettings:
    """``deploy.lab`` of an environment (defaults when absent); a wrong value is a params error."""
    from cutover_lib.config.schema import check
    from cutover_lib.errors import ParamsError

    settings, problems = check(env.deploy.settings("lab"), LabSettings)
    if settings is None:
        raise ParamsError([f"deploy.lab.{'.'.join(map(str, where))}: {what}" for where, what in problems],
                          hint=f"fix deploy.lab in params/{env.name}.yaml")
    return settings
