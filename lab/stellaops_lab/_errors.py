"""Errors raised by the lab (the local stand-in Stella Ops stack).

    LabError            anything the lab cannot do; carries a one-line ``hint``          exit 1
    ├── LabConfigError  a bad argument: unknown service or fault, bad port, bad data dir   exit 2
    └── LabUnhealthy    ``up`` started the lab, but a service is not healthy (left running) exit 1

``exit_code`` is what ``cutover lab ...`` exits with: the codes of ``cutover_lib.errors``'s table
(2 bad usage, 1 a failed check).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LabConfigError", "LabError", "LabUnhealthy"]


class LabError(Exception):
    """The lab could not do what was asked; ``hint`` says how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message} ({self.hint})" if self.hint else message


class LabConfigError(LabError):
    """The caller passed something invalid (service, fault, port, data dir)."""

    exit_code = 2


class LabUnhealthy(LabError):
    """``up`` started every service, but some do not answer ``/healthz`` healthy.

    ``problems`` maps each such service to one line: what its ``/healthz`` said (and the fault
    that explains it, and its log); ``state`` is :func:`stellaops_lab.status` at that moment.
    The services are left running, for an operator to inspect.
    """

    def __init__(self, problems: dict[str, str], state: dict[str, dict[str, Any]], hint: str | None = None) -> None:
        self.problems = dict(problems)
        self.state = state
        super().__init__(
            f"{len(self.problems)} lab service(s) not healthy: "
            + "; ".join(f"{service}: {text}" for service, text in self.problems.items()),
            hint=hint,
        )

    def lines(self) -> list[str]:
        """One line per unhealthy service, naming it."""
        return [f"lab {service} is not healthy: {text}" for service, text in self.problems.items()]
