"""Lab configuration: data folder, host, one port per service, scan duration.

Defaults live here and only here. Nothing is read from the environment at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import LabConfigError

__all__ = [
    "DEFAULT_PORTS",
    "DEFAULT_PORT_BASE",
    "DEFAULT_RELEASE",
    "FAULTS",
    "SERVICES",
    "LabConfig",
    "fault_name",
]

#: The services of the lab, in start order (signer before scanner and attestor).
SERVICES: tuple[str, ...] = (
    "authority",
    "scanner",
    "signer",
    "attestor",
    "notify",
    "web",
    "runtime",
)

DEFAULT_PORT_BASE = 18080
DEFAULT_PORTS: dict[str, int] = {name: DEFAULT_PORT_BASE + i for i, name in enumerate(SERVICES)}
#: the lab's Prometheus sits at the end of the block of ten ports a lab takes
PROMETHEUS_OFFSET = 9
DEFAULT_RELEASE = "2025.09.2"

_COMMON_FAULTS = ("unhealthy", "slow", "down")
_SPECIFIC_FAULTS = {
    "authority": ("wrong_issuer",),
    "signer": ("bad_signature",),
    "scanner": ("queue_down", "scan_stuck"),
    "runtime": ("ingest_error",),
}

#: Every fault switch, by full name ``<service>.<fault>``, with what it does.
FAULTS: dict[str, str] = {}
for _svc in SERVICES:
    FAULTS[f"{_svc}.unhealthy"] = "GET /healthz answers 503 Unhealthy"
    FAULTS[f"{_svc}.slow"] = "every request is delayed by VALUE milliseconds"
    FAULTS[f"{_svc}.down"] = "the service stops listening (connections refused) until cleared"
FAULTS["authority.wrong_issuer"] = "discovery (and tokens) name an issuer other than the base URL"
FAULTS["signer.bad_signature"] = "sign returns a signature that does not verify"
FAULTS["scanner.queue_down"] = "queue health 503 disconnected; scan submission 503"
FAULTS["scanner.scan_stuck"] = "scans never complete while set"
FAULTS["runtime.ingest_error"] = "POST runtime events answers 500"


def fault_name(service: str, fault: str) -> str:
    """Return the full fault name; accepts ``slow`` or ``scanner.slow`` for service scanner."""
    if service not in SERVICES:
        raise LabConfigError(
            f"unknown lab service {service!r}", hint=f"one of: {', '.join(SERVICES)}"
        )
    full = fault if fault.startswith(f"{service}.") else f"{service}.{fault}"
    if full not in FAULTS:
        known = sorted(f.split(".", 1)[1] for f in FAULTS if f.startswith(f"{service}."))
        raise LabConfigError(
            f"unknown fault {fault!r} for {service}", hint=f"one of: {', '.join(known)}"
        )
    return full


@dataclass
class LabConfig:
    """Where the lab keeps its state and which loopback ports its services use."""

    data_dir: Path
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    scan_seconds: float = 2.0
    release: str | None = None  # STELLAOPS_RELEASE the services report; None keeps the environment's
    faults: dict[str, Any] = field(default_factory=dict)  # baked into this start (LAB_FAULTS), not stored
    #: the lab's Prometheus (Debian's ``prometheus``), scraping every service's ``/metrics``
    prometheus_port: int = DEFAULT_PORT_BASE + PROMETHEUS_OFFSET
    prometheus: bool = True  # False: a lab without monitoring (the lab's own unit tests)
    scrape_interval: str = "1s"

    def __post_init__(self) -> None:
        # absolute: the folder names the lab's processes in their command lines and working folders,
        # and a later call from another folder (or a kernel) must recognise them as this lab's
        self.data_dir = Path(self.data_dir).resolve()
        merged = dict(DEFAULT_PORTS)
        merged.update(self.ports)
        unknown = set(merged) - set(SERVICES)
        if unknown:
            raise LabConfigError(f"unknown lab service(s) in ports: {', '.join(sorted(unknown))}")
        for name, port in merged.items():
            if not isinstance(port, int) or not 0 < port < 65536:
                raise LabConfigError(f"invalid port {port!r} for {name}")
        self.ports = merged
        if not isinstance(self.prometheus_port, int) or not 0 < self.prometheus_port < 65536 \
                or self.prometheus_port in merged.values():
            raise LabConfigError(f"invalid or taken Prometheus port {self.prometheus_port!r}")

    @classmethod
    def from_port_base(cls, data_dir: Path | str, port_base: int, **kwargs: object) -> "LabConfig":
        """Ports ``port_base``, ``port_base + 1``, ... in :data:`SERVICES` order."""
        if not 0 < port_base < 65536 - PROMETHEUS_OFFSET:
            raise LabConfigError(f"invalid port base {port_base}")
        ports = {name: port_base + i for i, name in enumerate(SERVICES)}
        kwargs.setdefault("prometheus_port", port_base + PROMETHEUS_OFFSET)
        return cls(Path(data_dir), ports=ports, **kwargs)  # type: ignore[arg-type]

    def url(self, service: str) -> str:
        """Base URL of ``service`` (no trailing slash)."""
        if service not in SERVICES:
            raise LabConfigError(f"unknown lab service {service!r}")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.ports[service]}"

    @property
    def prometheus_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.prometheus_port}"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def bin_dir(self) -> Path:
        """The stand-in executables ``stellaops-cli`` and ``dotnet`` (written by ``up``)."""
        return self.data_dir / "bin"

    @property
    def trusted_signer_key(self) -> Path:
        """The signer's PUBLIC key PEM (written by ``up``), for params to pin as trusted."""
        return self.data_dir / "keys" / "trusted" / "signer.pem"

    def pid_file(self, service: str) -> Path:
        return self.run_dir / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.log_dir / f"{service}.log"
