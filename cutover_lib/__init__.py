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

# Before anything imports nbformat/jsonschema (their IRI checker compiles a grammar at import:
# seconds) or httpx (its CLI imports rich and pygments).  Cheap and idempotent; see lazy.py.
from .lazy import defer_imports as _defer

_defer()
del _defer

_EXPORTS = {
    "ANY": ".engine.expect",
    "above_zero": ".engine.verify",
    "CheckFailed": ".errors",
    "CommandFailed": ".errors",
    "CutoverError": ".errors",
    "Environment": ".config.params",
    "EvidenceError": ".errors",
    "EvidenceTampered": ".errors",
    "GateNotApproved": ".errors",
    "LockHeld": ".errors",
    "ParamsError": ".errors",
    "RunFolder": ".evidence.evidence",
    "Runbook": ".engine.steps",
    "SecretError": ".errors",
    "SecretRef": ".config.secrets",
    "StepFailed": ".errors",
    "ToolMissing": ".errors",
    "UsageError": ".errors",
    "load_environment": ".config.params",
    "containers_healthy": ".adapters.compose_steps",
    "every_profile_validated": ".engine.verify",
    "mirror_holds_source": ".adapters.backup",
    "objects_present": ".adapters.backup",
    "restored_without_failures": ".adapters.backup",
    "fresh_event": ".engine.verify",
    "oidc_discovery_complete": ".engine.verify",
    "rollback_target": ".adapters.helm",
    "run_phase": ".engine.runner",
    "runs_release": ".adapters.helm",
    "same_payload_as": ".engine.verify",
    "signed_dsse": ".engine.verify",
    "snapshot_holds": ".adapters.backup",
    "values_secrets_hold_keys": ".adapters.helm_steps",
    "verify_run": ".evidence.tamper",
    "visible_by_query": ".engine.verify",
}

__all__ = sorted([*_EXPORTS, "__version__"])


# The runbook's step functions, one module per part of the runbook, for the notebooks.
_MODULES = {
    "approvals": ".engine.approvals",
    "backup": ".adapters.backup",
    "checks": ".runbook.checks",
    "deploy": ".adapters.deploy",
    "people": ".runbook.people",
    "readiness": ".runbook.readiness",
    "rehearsal": ".runbook.rehearsal",
    "rollback": ".runbook.rollback",
    "ticket": ".adapters.ticket",
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
