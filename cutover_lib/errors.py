"""The error tree of cutover_lib.

Every error the library raises on purpose is a ``CutoverError``. Each carries a
one-line message saying what is wrong, an optional ``hint`` saying how to fix it,
and the process exit code the CLI uses for it::

    CutoverError                      exit 1
    ├── UsageError                    exit 2   bad command line
    ├── ParamsError                   exit 2   a params file is wrong (carries its problems)
    ├── SecretError                   exit 2   a secret reference cannot be resolved
    ├── ToolMissing                   exit 2   a program the step needs is not installed
    ├── EvidenceError                 exit 1   the evidence folder cannot be written or read
    │   └── EvidenceTampered          exit 1   ``cutover verify`` found changes
    ├── LockHeld                      exit 4   another run holds the environment's lock
    ├── StepFailed                    exit 1   a required step failed (evidence already written)
    │   ├── CommandFailed             exit 1   a command exited non-zero or timed out
    │   ├── CheckFailed               exit 1   a check saw something other than expected
    │   └── OutcomeUnknown            exit 1   a mutating step was interrupted: confirm before re-running
    └── GateNotApproved               exit 3   a gate lacks the approvals the matrix requires

The exit codes of ``cutover`` -- the one table; the runner and the CLI take theirs from here::

    0  EXIT_PASSED  the phase passed (or a command did what it was asked)
    1  EXIT_FAILED  a step failed, evidence is tampered, a run rolled back
    2  EXIT_USAGE   bad command line, params, secret reference or missing tool
    3  EXIT_GATE    a gate is not approved (or the run differs from the approved plan)
    4  EXIT_LOCK    another run holds the environment's lock
    130            interrupted (Ctrl-C): what exists is sealed, the lock released, the resume command printed
    143            terminated (SIGTERM): the same

Third-party errors (subprocess, httpx, docker, kubernetes) are converted at the
adapter edge into one of these, ``raise ... from exc``.  Messages never contain a
resolved secret: they are built from masked text.
"""

from __future__ import annotations

__all__ = [
    "EXIT_FAILED",
    "EXIT_GATE",
    "EXIT_LOCK",
    "EXIT_PASSED",
    "EXIT_USAGE",
    "CheckFailed",
    "CommandFailed",
    "CutoverError",
    "EvidenceError",
    "EvidenceTampered",
    "GateNotApproved",
    "LockHeld",
    "OutcomeUnknown",
    "ParamsError",
    "SecretError",
    "StepFailed",
    "Terminated",
    "ToolMissing",
    "UsageError",
    "exit_code_for",
    "report",
]

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_GATE, EXIT_LOCK = 0, 1, 2, 3, 4


class CutoverError(Exception):
    """Root of every error cutover_lib raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and the fix hint on one line, for the terminal."""
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message

    def _render_traceback_(self) -> list[str]:
        """What a notebook cell shows for this error (IPython's hook for an exception that renders
        itself): its name and its one line, as the terminal says it.  An error raised on purpose is
        a finding of the runbook, not a bug to trace through the library's frames -- and IPython's
        own traceback (every frame's source, highlighted) costs the kernel ~1 CPU-s each time.  An
        unexpected step error keeps its traceback as the step's artifact."""
        return [f"{type(self).__name__}: {self.one_line()}"]


class UsageError(CutoverError):
    exit_code = 2


class ParamsError(CutoverError):
    """A params file is wrong; ``problems`` holds one line per problem with its YAML path."""

    exit_code = 2

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) if len(self.problems) == 1 else
                         f"{len(self.problems)} problems in params: " + "; ".join(self.problems),
                         hint=hint)


class SecretError(CutoverError):
    exit_code = 2


class ToolMissing(CutoverError):
    """``program``: the program that is not installed (None: it is there but cannot run)."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None, program: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.program = program


class EvidenceError(CutoverError):
    exit_code = 1


class EvidenceTampered(EvidenceError):
    def __init__(self, findings: list[str]) -> None:
        self.findings = list(findings)
        super().__init__(f"evidence changed: {len(self.findings)} finding(s): " + "; ".join(self.findings))


class LockHeld(CutoverError):
    exit_code = 4


class StepFailed(CutoverError):
    """A required step failed.  Raised only after the step's evidence is written."""

    def __init__(self, message: str, *, step_id: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.step_id = step_id


class CommandFailed(StepFailed):
    pass


class CheckFailed(StepFailed):
    pass


class OutcomeUnknown(StepFailed):
    """A resumed run reached a mutating step an earlier attempt was interrupted in: not re-run, not a
    reason to roll back -- the operator checks the system and resumes with ``--confirm``."""


class GateNotApproved(CutoverError):
    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is (so every ``finally`` runs); exit 143."""

    exit_code = 143


def exit_code_for(name: str) -> int:
    """The exit code of the error class called ``name`` (an error raised inside a notebook reaches the
    runner by name only); any other name is a failure (1)."""
    cls = globals().get(name)
    if isinstance(cls, type) and issubclass(cls, CutoverError):
        return int(cls.exit_code)
    return EXIT_FAILED


def report(exc: CutoverError) -> int:
    """Say ``exc`` on stderr as every command does (one line; or each problem, then the hint) and
    return its exit code."""
    import sys

    problems = getattr(exc, "problems", None)
    lines = [f"error: {p}" for p in problems] if problems and len(problems) > 1 else [f"error: {exc.one_line()}"]
    if len(lines) > 1 and exc.hint:
        lines.append(f"hint: {exc.hint}")
    sys.stderr.write("".join(f"{line}\n" for line in lines))
    sys.stderr.flush()
    return exc.exit_code
