"""Errors raised by the lab (the local stand-in Stella Ops stack).

    LabError            anything the lab cannot do; carries a one-line ``hint``
    └── LabConfigError  a bad argument: unknown service or fault, bad port, bad data dir
"""

from __future__ import annotations

__all__ = ["LabConfigError", "LabError"]


class LabError(Exception):
    """The lab could not do what was asked; ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message} ({self.hint})" if self.hint else message


class LabConfigError(LabError):
    """The caller passed something invalid (service, fault, port, data dir)."""
