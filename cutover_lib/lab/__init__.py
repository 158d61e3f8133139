"""The lab: a local, named stand-in for the Stella Ops stack.

Nobody can reach a Stella Ops staging cluster from a laptop or CI, so the runbook is
rehearsed against this lab: authority (OIDC discovery, JWKS, ES256 tokens), scanner (SBOM
intake, timed scans, DSSE-signed reports, queue health), signer (DSSE with a real P-256
key), attestor (store and verify by uuid), runtime event ingest, notify (legacy) and a web
UI. Each service is its own tornado process on loopback; state lives in SQLite under
``LabConfig.data_dir`` and survives restarts; fault switches make any service unhealthy,
slow, down, or wrong so the runbook's failure and rollback paths run for real.

    >>> from cutover_lib.lab import LabConfig, up, down, set_fault
    >>> cfg = LabConfig(Path(".lab"))
    >>> up(cfg)                      # idempotent
    >>> set_fault(cfg, "scanner", "unhealthy")
    >>> down(cfg)

Importing this package loads neither tornado nor cryptography; the servers do.
"""

from __future__ import annotations

from ._config import DEFAULT_PORTS, FAULTS, SERVICES, LabConfig
from ._control import clear_faults, down, list_faults, set_fault, status, up
from ._errors import LabConfigError, LabError

__all__ = [
    "DEFAULT_PORTS",
    "FAULTS",
    "LabConfig",
    "LabConfigError",
    "LabError",
    "SERVICES",
    "clear_faults",
    "down",
    "list_faults",
    "set_fault",
    "status",
    "up",
]
