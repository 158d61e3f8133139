"""Terminal progress of a run: each step as the kernel records it in the ledger (tailed by byte
offset), and the status line (notebook n/N, the step running now)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..evidence.evidence import RunFolder
from ..evidence.report import failed_not_blocking, latest_steps, root_failure
from .steps import text_line

if TYPE_CHECKING:  # pragma: no cover
    from rich.text import Text

    from ..config.models import Environment

__all__ = ["Progress", "closing_summary", "styled", "with_status"]


class Progress:
    """Terminal progress: notebook n/N and each step as the kernel records it in the ledger."""

    def __init__(self, run: RunFolder, echo: Callable[[str], None],
                 on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.run = run
        self.echo = echo
        self.on_record = on_record
        self.offset = run.ledger_path.stat().st_size if run.ledger_path.exists() else 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "Progress":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._drain()

    def _drain(self) -> None:
        try:
            new, self.offset = self.run.ledger.read_from(self.offset)  # only what was added since
        except OSError:
            return
        for rec in new:
            if rec.get("kind") == "step":  # (its UTC clock time first: the bridge and the timeline speak UTC)
                self.echo(f"    {str(rec.get('ended', ''))[11:19]}Z {text_line(rec)}")
            if self.on_record is not None:
                self.on_record(rec)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._drain()


def with_status(on_record: Callable[[dict[str, Any]], None], status: Callable[[str], None] | None,
                 where: str) -> Callable[[dict[str, Any]], None]:
    """The ledger tail also drives the terminal's status line: notebook n/N and the current step."""
    def handle(rec: dict[str, Any]) -> None:
        if status is not None:
            if rec.get("kind") == "intent":
                status(f"{where} · running {rec.get('step_id')}")
            elif rec.get("kind") == "step":
                status(f"{where} · {rec.get('step_id')} {rec.get('outcome')}")
        on_record(rec)

    return handle


def note_not_blocking(records: list[dict[str, Any]], manifest: dict[str, Any], message: str) -> str:
    """A passed run's message with the steps that failed without stopping it (``required=False``)
    named, and their ids in ``manifest["failed_not_blocking"]``: a run that passed so never reads as
    a clean pass (on the terminal, the bridge, the record and the change page)."""
    if not (ids := [r["step_id"] for r in failed_not_blocking(records)]):
        return message
    manifest["failed_not_blocking"] = ids
    note = f"{len(ids)} step(s) failed without stopping the run: {', '.join(ids)}"
    return f"{message}; {note}" if message else note


def closing_summary(records: list[dict[str, Any]], manifest: dict[str, Any], env: "Environment",
                    dry_run: bool) -> list[str]:
    """The closing lines before the outcome: the steps by outcome, the root failure (the first step
    that failed, unless the run passed with only ``required=False`` steps failed) and each step that
    failed without stopping the run; for a plan, every mutating command, its digest and how to
    approve it."""
    steps = latest_steps(records)
    counts: dict[str, int] = {}
    for r in steps.values():
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    lines = ["steps:    " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) if counts else "steps:    none"]
    root = root_failure(list(steps.values()), manifest.get("outcome", ""))
    if root is not None:
        lines.append(f"failed:   {root['step_id']} ({root['title']}): {root.get('message', '')}")
    lines += [f"failed, not blocking (required=False): {r['step_id']} ({r['title']}): {r.get('message', '')}"
              for r in failed_not_blocking(records, besides=root)]
    if dry_run:
        planned = manifest.get("planned") or []
        lines.append(f"plan:     {len(planned)} mutating command(s), digest {manifest.get('plan_digest', '')}")
        lines += [f"          {sid}: {cmd}" for sid, cmd in planned]
        gate = env.approvals.gates.get("plan")
        if planned and gate is not None:
            lines += [f"approve:  cutover approve --env {env.name} --gate plan --plan {manifest['run_id']} "
                      f"--role {role} --name NAME --record {env.change_ticket}" for role in gate.roles]
    return lines


_STYLES = {"PASSED": "green", "FAILED": "bold red", "SKIPPED": "dim", "WAIVED": "yellow", "PLANNED": "cyan",
           "passed": "bold green", "planned": "bold cyan", "failed": "bold red", "blocked": "bold red",
           "rolled-back": "bold yellow", "rollback-failed": "bold red", "rollback-pending": "bold yellow"}


def styled(line: str) -> "Text":
    """A progress line with its outcome in colour (rich drops colour for NO_COLOR and a non-terminal),
    in characters the terminal can show."""
    import re

    from rich.text import Text

    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"  # an ASCII terminal gets "?" for "…", not a crash
    line = line.encode(encoding, "replace").decode(encoding)
    text = Text(line)
    m = re.search(r"\[(PASSED|FAILED|SKIPPED|WAIVED|PLANNED) *\]|^outcome: ([a-z-]+)|^failed: ", line)
    if m:
        word = m.group(1) or m.group(2) or "failed"
        text.stylize(_STYLES.get(word, ""), m.start(), m.end())
    return text
