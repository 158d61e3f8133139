"""stellaops-cutover: the Stella Ops launch cutover runbook as literate, executable notebooks.

Notebooks import from here::

    from cutover_lib import Runbook
    rb = Runbook.open(env, run_dir, dry_run=dry_run, resume=resume, notebook=notebook, ...)

Names load lazily so that ``cutover --help`` stays instant.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Before anything imports nbformat/jsonschema: their IRI checker compiles a grammar at import
# (seconds).  Cheap and idempotent; see _lazy.py.
from ._lazy import defer_rfc3987_syntax as _defer

_defer()
del _defer

_EXPORTS = {
    "ANY": "._expect",
    "above_zero": "._verify",
    "CheckFailed": "._errors",
    "CommandFailed": "._errors",
    "CutoverError": "._errors",
    "Environment": "._params",
    "EvidenceError": "._errors",
    "EvidenceTampered": "._errors",
    "GateNotApproved": "._errors",
    "LockHeld": "._errors",
    "ParamsError": "._errors",
    "RunFolder": "._evidence",
    "Runbook": "._steps",
    "SecretError": "._errors",
    "SecretRef": "._secrets",
    "StepFailed": "._errors",
    "ToolMissing": "._errors",
    "UsageError": "._errors",
    "load_environment": "._params",
    "containers_healthy": "._compose_steps",
    "every_profile_validated": "._verify",
    "mirror_holds_source": "._backup",
    "objects_present": "._backup",
    "restored_without_failures": "._backup",
    "fresh_event": "._verify",
    "oidc_discovery_complete": "._verify",
    "rollback_target": "._helm",
    "run_phase": "._runner",
    "runs_release": "._helm",
    "same_payload_as": "._verify",
    "signed_dsse": "._verify",
    "snapshot_holds": "._backup",
    "values_secrets_hold_keys": "._helm_steps",
    "verify_run": "._tamper",
    "visible_by_query": "._verify",
}

__all__ = sorted([*_EXPORTS, "__version__"])


# The runbook's step functions, one module per part of the runbook, for the notebooks.
_MODULES = {
    "approvals": "._approvals",
    "backup": "._backup",
    "checks": "._checks",
    "deploy": "._deploy",
    "people": "._people",
    "post": "._post",
    "readiness": "._readiness",
    "rehearsal": "._rehearsal",
    "rollback": "._rollback",
    "ticket": "._ticket",
}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        module = importlib.import_module(_MODULES[name], __name__)
        globals()[name] = module
        return module
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cutover_lib' has no attribute {name!r}")


def __dir__() -> list[str]:
    """What JupyterLab completes after ``cutover_lib.``: the public names and the step modules."""
    return sorted([*__all__, *_MODULES])
