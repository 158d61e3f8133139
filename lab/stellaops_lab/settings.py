"""The lab deploy mode's settings: ``deploy.lab`` in params (the tool keeps them as a plain mapping
for the plug-in; this is where they get their types)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["LabSettings", "lab_settings"]


class LabSettings(BaseModel):
    """Deploy mode ``lab``: the local stand-in stack, "deployed" by restarting its processes on the
    target release.  A named stand-in for compose/helm where neither can run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: str = ".lab"
    port_base: int = Field(18080, ge=1024, le=65000)
    #: faults baked into a release, e.g. {"2025.09.2": {"runtime.ingest_error": true}}
    release_faults: dict[str, dict[str, Any]] = Field(default_factory=dict)


def lab_settings(env: Any) -> LabSettings:
    """``deploy.lab`` of an environment (defaults when absent); a wrong value is a params error."""
    from cutover_lib.errors import ParamsError

    try:
        return LabSettings.model_validate(env.deploy.settings("lab"))
    except ValidationError as exc:
        problems = [f"deploy.lab.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ParamsError(problems, hint=f"fix deploy.lab in params/{env.name}.yaml") from None
