"""The lab: a local, named stand-in for the Stella Ops stack.

Nobody can reach a Stella Ops staging cluster from a laptop or CI, so the runbook is
rehearsed against this lab: authority (OIDC discovery, JWKS, ES256 tokens), scanner (SBOM
intake, timed scans, DSSE-signed reports, queue health), signer (DSSE with a real P-256
key), attestor (store and verify by uuid), runtime event ingest, notify (legacy) and a web
UI. Each service is its own tornado process on loopback; state lives in SQLite under
``LabConfig.data_dir`` and survives restarts; fault switches make any service unhealthy,
slow, down, or wrong so the runbook's failure and rollback paths run for real.

    >>> from stellaops_lab import LabConfig, up, down, set_fault
    >>> cfg = LabConfig(Path(".lab"))
    >>> up(cfg)                      # idempotent
    >>> set_fault(cfg, "scanner", "unhealthy")
    >>> down(cfg)

Importing this package loads neither tornado nor cryptography; the servers do.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_PORTS": "._config", "FAULTS": "._config", "SERVICES": "._config", "LabConfig": "._config",
    "clear_faults": "._control", "down": "._control", "list_faults": "._control", "set_fault": "._control",
    "status": "._control", "up": "._control",
    "LabConfigError": "._errors", "LabError": "._errors", "monitoring_green": "._prometheus",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Names load on first use: ``cutover --help`` and ``cutover params check`` register the
    ``cutover lab`` commands without loading the lab's control code."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stellaops_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
