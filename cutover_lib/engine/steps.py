"""Steps: the unit of evidence, and the ``Runbook`` object a notebook works through.

A notebook opens the run once (``rb = Runbook.open(env, run_dir, ...)`` in its first
cell) and then makes one call per runbook action.  Each call is a *step*: it has an id
tied to a runbook section (``4.1.backup-mongo``), a title, an owner role, the command or
request it makes and the expected result.  Running it records start/end UTC, duration,
outcome, the masked command, an output tail and artifact paths -- three ways: an HTML
status card in the notebook, a ``application/vnd.stellaops.cutover.step+json`` output,
and a line in the run's ledger.

Outcomes: ``passed``, ``failed``, ``skipped`` (already passed in an earlier attempt of a
resumed run), ``planned`` (a mutating step in a dry run) and ``waived``.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import (
    CheckFailed,
    CutoverError,
    GateNotApproved,
    OutcomeUnknown,
    ParamsError,
    SecretError,
    StepFailed,
    ToolMissing,
)

#: errors that mean the environment or its configuration is wrong, not the system under change:
#: the step is recorded as failed and the error itself propagates (exit 2, not 1)
_CONFIG_ERRORS = (SecretError, ToolMissing, ParamsError)
from ..adapters.bridge import BridgeVerbs
from ..adapters.calendar import CalendarVerbs
from ..adapters.promql import PromqlVerbs
from ..adapters.shell import CommandResult, render, run_command
from ..config.files import require_files
from ..config.params import Environment, load_environment, parse_overrides
from ..config.secrets import mask
from ..evidence.evidence import RunFolder, iso, utc_now, write_new
from .actions import Actions
from .phases import find_root
from .result import StepRecord

__all__ = ["STEP_MIMETYPE", "NotApplicable", "Runbook", "StepContext", "Waived"]

STEP_MIMETYPE = "application/vnd.stellaops.cutover.step+json"
_STEP_ID = re.compile(r"^\d+(\.[a-z0-9][a-z0-9-]*)+$")


class NotApplicable(Exception):
    """Raised by an action whose runbook line does not apply here; the step is ``skipped``
    with this reason (e.g. compose networks in helm mode, helm lint where helm is absent)."""


class Waived(Exception):
    """Raised by an action when a missing precondition was waived (stage/local gates);
    the step is ``waived`` and the waiver is evidence."""


@dataclass
class StepContext:
    """What a step's action gets: logging, commands, artifacts and checks, all into evidence."""

    rb: "Runbook"
    step_id: str
    expect: str
    lines: list[str] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def log(self, text: str) -> None:
        for line in mask(str(text)).splitlines() or [""]:
            self.lines.append(line)

    def artifact(self, name: str, content: bytes | str) -> Path:
        """Write an artifact (masked if text) under ``artifacts/``; never replaces one."""
        if isinstance(content, str):
            content = mask(content)
        path = write_new(self.rb.run.path / "artifacts" / name, content)
        self.artifacts.append(path.relative_to(self.rb.run.path).as_posix())
        return path

    def sh(self, argv: Sequence[str], *, timeout: float | None = None, env: dict[str, str] | None = None,
           cwd: Path | None = None, check: bool = True, log_name: str | None = None,
           capture_stdout: bool = False, pass_fds: Sequence[int] = ()) -> CommandResult:
        """Run a command; its full output goes to ``artifacts/<log_name or step id>.log``."""
        log = self.rb.run.path / "artifacts" / (log_name or f"{self.step_id}.log")
        if log.name not in {Path(a).name for a in self.artifacts}:
            if log.exists():
                log = write_new(log, "")
            self.artifacts.append(log.relative_to(self.rb.run.path).as_posix())
        self.commands.append(render(argv, {k: v for k, v in (env or {}).items() if k == "DOCKER_HOST"}))
        if argv and os.path.basename(argv[0]) in self.rb.env.tools.program_env:  # (mc's aliases, for a check)
            env = {**self.rb._tool_env({}, None, program=argv[0]), **(env or {})}
        result = run_command(argv, timeout=timeout or self.rb.env.timeouts.command.total_seconds(),
                             log_path=log, env=env, cwd=cwd or self.rb.root, check=check,
                             capture_stdout=capture_stdout, pass_fds=pass_fds)
        self.lines.extend(result.tail[-10:])
        return result

    def check(self, condition: bool, observed: str) -> None:
        """Fail the step unless ``condition``: the message names the expected and the observed result."""
        if not condition:
            raise CheckFailed(f"expected {self.expect}; observed {mask(observed)}", step_id=self.step_id)


class Runbook(Actions, PromqlVerbs, BridgeVerbs, CalendarVerbs):
    """One notebook's view of a run: environment, evidence folder, dry-run and resume state."""

    def __init__(self, env: Environment, run: RunFolder, *, root: Path, dry_run: bool = False,
                 resume: bool = False, notebook: str = "", confirm: Sequence[str] = (),
                 with_reads: bool = True, waive: Sequence[str] = (), interactive: bool = False) -> None:
        self.env = env
        self.run = run
        self.root = root
        self.dry_run = dry_run
        self.with_reads = with_reads
        self.resume = resume
        self.notebook = notebook
        self.confirm = set(confirm)
        self.waive = set(waive)
        self.interactive = interactive
        self.results: list[dict[str, Any]] = []
        self._display = _in_ipython()
        self._prior = self._prior_outcomes() if resume else {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, env: str, run_dir: str = "", *, dry_run: bool = False, resume: bool = False,
             notebook: str = "", overrides: str = "", confirm: str = "", with_reads: bool = True,
             root: str = "", waive: str = "") -> "Runbook":
        """Open the run a notebook belongs to.  Without ``run_dir`` (stepping through in
        JupyterLab) an interactive run folder is created under ``executed/<env>/``."""
        base = Path(root).resolve() if root else find_root()
        ov = json.loads(overrides) if overrides else None
        if isinstance(ov, list):
            ov = parse_overrides(ov)
        environment = load_environment(env, base / "params", ov)
        require_files(environment, base)
        if run_dir:
            run = RunFolder(Path(run_dir))
        else:
            run = RunFolder.create(base / "executed", env, "interactive")
            run.append({"kind": "run-start", "env": env, "phase": "interactive", "dry_run": dry_run})
        confirmed = [c.strip() for c in confirm.split(",") if c.strip()]
        waived = [w.strip() for w in waive.split(",") if w.strip()]
        return cls(environment, run, root=base, dry_run=dry_run, resume=resume, notebook=notebook,
                   confirm=confirmed, with_reads=with_reads, waive=waived, interactive=not run_dir)

    def _prior_outcomes(self) -> dict[str, str]:
        """Step id -> ``passed`` / ``unknown`` from earlier attempts of this run."""
        state: dict[str, str] = {}
        for rec in self.run.read_ledger():
            if rec.get("kind") == "intent":
                state[rec["step_id"]] = "unknown"
            elif rec.get("kind") == "step":
                sid, outcome = rec["step_id"], rec.get("outcome")
                if outcome in ("passed", "waived"):
                    state[sid] = "passed"
                elif outcome == "skipped" and state.get(sid) == "passed":
                    continue  # skipped on a resume because it passed before: still passed on the next one
                elif rec.get("unknown_outcome"):
                    state[sid] = "unknown"  # refused, not run: still unknown until confirmed
                else:
                    state.pop(sid, None)
        return state

    # ------------------------------------------------------------------ steps
    def step(
        self,
        step_id: str,
        title: str,
        *,
        owner: str,
        expect: str,
        action: Callable[[StepContext], str | None] | None = None,
        command: str | Sequence[str] | None = None,
        mutating: bool = False,
        required: bool = True,
        not_applicable: str | None = None,
    ) -> dict[str, Any]:
        """Run one step and record it.  ``action(ctx)`` returns the observed result (a short
        string) or raises :class:`CheckFailed`; a failed required step raises
        :class:`StepFailed` after its evidence is written.  ``not_applicable``: why the step does
        not apply here, known before it runs (recorded as skipped, in a plan too)."""
        if not _STEP_ID.match(step_id):
            raise ValueError(f"step id {step_id!r} must look like 4.1.backup-mongo")
        shown = command if isinstance(command, str) or command is None else render(command)
        shown = mask(shown) if shown else None
        ctx = StepContext(self, step_id, expect)
        started = utc_now()
        t0 = time.monotonic()
        outcome, observed, message = "passed", "", ""
        gate_error: GateNotApproved | None = None
        config_error: CutoverError | None = None
        prior = self._prior.get(step_id)

        if prior == "passed":
            outcome, observed = "skipped", "passed in an earlier attempt of this run (resume)"
        elif prior == "unknown" and step_id not in self.confirm:
            outcome = "failed"
            message = (f"step {step_id} was interrupted mid-run in an earlier attempt; its outcome is unknown. "
                       f"Check the system by hand, then resume with --confirm {step_id} to run it again")
        elif not_applicable is not None:  # (a plan never lists another deploy mode's cell as planned)
            outcome, observed = "skipped", mask(f"not applicable: {not_applicable}")
        elif self.dry_run and (mutating or not self.with_reads):
            outcome, observed = "planned", "not executed (dry run)"
        else:
            if mutating:
                self.run.append({"kind": "intent", "step_id": step_id, "notebook": self.notebook,
                                 "command": shown})
            try:
                result = action(ctx) if action else None
                observed = mask(str(result)) if result is not None else "as expected"
            except NotApplicable as exc:
                outcome, observed = "skipped", mask(f"not applicable: {exc}")
            except Waived as exc:
                outcome, observed = "waived", mask(str(exc))
            except GateNotApproved as exc:
                outcome, message, gate_error = "failed", mask(exc.one_line()), exc
            except _CONFIG_ERRORS as exc:
                outcome, message, config_error = "failed", mask(exc.one_line()), exc
            except CutoverError as exc:
                text = exc.one_line()
                if not text.startswith("expected "):
                    text = f"expected {expect}; observed {text}"
                outcome, message = "failed", mask(text)
            except Exception as exc:  # noqa: BLE001 - any error inside an action fails the step
                outcome = "failed"
                message = mask(f"unexpected {type(exc).__name__}: {exc}")
                ctx.artifact(f"{step_id}.traceback.txt", "".join(traceback.format_exception(exc)))
        ended = utc_now()
        if ctx.lines:
            ctx.artifact(f"{step_id}.output.txt", "\n".join(ctx.lines) + "\n")
        record = {
            "kind": "step",
            "step_id": step_id,
            "section": re.match(r"^\d+(\.\d+)*", step_id).group(0),  # type: ignore[union-attr]
            "title": title,
            "owner": owner,
            "notebook": self.notebook,
            "mutating": mutating,
            "command": shown or (" ; ".join(ctx.commands) if ctx.commands else None),
            "commands": ctx.commands,
            "expect": expect,
            "observed": observed,
            "outcome": outcome,
            "message": message,
            "started": iso(started),
            "ended": iso(ended),
            "duration_s": round(time.monotonic() - t0, 3),
            "output_tail": ctx.lines[-15:],
            "artifacts": ctx.artifacts,
            "required": required,
            "confirmed": prior == "unknown" and step_id in self.confirm,
            "unknown_outcome": prior == "unknown" and step_id not in self.confirm,
            "data": ctx.data,
        }
        saved = self.run.append(record)
        self.results.append(saved)
        self._show(saved)
        if gate_error is not None:
            raise gate_error
        if config_error is not None and required:
            raise config_error
        if record["unknown_outcome"]:
            raise OutcomeUnknown(f"step {step_id} failed: {message}", step_id=step_id) from None
        if outcome == "failed" and required:
            raise StepFailed(f"step {step_id} failed: {message}", step_id=step_id) from None
        return StepRecord(saved)

    def close(self) -> None:
        """End of a notebook.  An interactive run (stepping through in JupyterLab) is sealed here
        -- manifest with every file's hash, ``html/index.html`` -- since no runner seals it;
        under ``cutover run`` the runner seals the run after the last notebook."""
        client = self.__dict__.pop("_client", None)  # the run view's HTTP client (cells and checks share it)
        if client is not None:
            client.close()
        if not self.interactive:
            return
        from ..config.params import params_digest
        from ..evidence.evidence import iso, utc_now
        from ..evidence.report import index_sections, write_index

        steps = [r for r in self.run.read_ledger() if r.get("kind") == "step"]
        failed = [r["step_id"] for r in steps if r["outcome"] == "failed"]
        manifest = {"run_id": self.run.run_id, "env": self.env.name, "tier": self.env.tier, "phase": "interactive",
                    "release": self.env.release, "notebooks": [], "params_sha256": params_digest(self.env),
                    "started": steps[0]["started"] if steps else iso(utc_now()), "ended": iso(utc_now()),
                    "dry_run": self.dry_run, "outcome": "failed" if failed else "passed",
                    "reason": ", ".join(failed), "operator": os.environ.get("USER", "")}
        self.run.write_manifest(manifest)
        index = write_index(self.run, manifest, index_sections(self.run, self.env, self.root))
        self.run.seal(manifest)
        self.show_html(f"<p>Interactive run sealed: <code>{html.escape(str(index))}</code></p>",
                       f"interactive run sealed: {index}")

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        """A non-step ledger record (approval, note, decision)."""
        return self.run.append({"kind": kind, "notebook": self.notebook, **fields})

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    # ------------------------------------------------------------------ display
    def _show(self, rec: dict[str, Any]) -> None:
        if self._display:
            from IPython.display import display

            display({"text/html": status_card(rec), STEP_MIMETYPE: rec, "text/plain": text_line(rec)}, raw=True)
        else:
            print(text_line(rec))

    def show_html(self, markup: str, text: str = "") -> None:
        """Show trusted, self-contained HTML (tables rendered from params) in the notebook."""
        if self._display:
            from IPython.display import display

            display({"text/html": mask(markup), "text/plain": mask(text or re.sub(r"<[^>]+>", " ", markup))}, raw=True)
        else:
            print(mask(text or re.sub(r"<[^>]+>", " ", markup)))


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


_COLORS = {"passed": "#1a7f37", "failed": "#cf222e", "skipped": "#6e7781", "planned": "#0969da",
           "waived": "#9a6700"}


def text_line(rec: dict[str, Any]) -> str:
    extra = rec.get("message") or rec.get("observed") or ""
    return f"[{rec['outcome'].upper():7}] {rec['step_id']} {rec['title']} ({rec['duration_s']:.2f}s) {extra}".rstrip()


def status_card(rec: dict[str, Any]) -> str:
    """A self-contained status card: inline styles only, no script, no external URL."""
    e = html.escape
    color = _COLORS.get(rec["outcome"], "#57606a")
    rows = [("Owner", rec.get("owner")), ("Expected", rec.get("expect")), ("Observed", rec.get("observed")),
            ("Command", rec.get("command")), ("Problem", rec.get("message")),
            ("Started", rec.get("started")), ("Duration", f"{rec.get('duration_s', 0):.2f} s"),
            ("Artifacts", ", ".join(rec.get("artifacts") or []))]
    body = "".join(
        f'<tr><th style="text-align:left;padding:2px 8px;vertical-align:top;color:#57606a">{e(k)}</th>'
        f'<td style="padding:2px 8px;font-family:monospace;white-space:pre-wrap">{e(str(v))}</td></tr>'
        for k, v in rows if v)
    links = [(str(label), str(href)) for label, href in ((rec.get("data") or {}).get("next") or [])
             if re.fullmatch(r"[\w.][\w./-]*", str(href)) and ".." not in str(href).replace("../", "", 1)]
    if links:  # where a person goes next (relative links inside the run's record only)
        body += ('<tr><th style="text-align:left;padding:2px 8px;color:#57606a">Next</th><td style="padding:2px 8px">'
                 + " · ".join(f'<a href="{e(href)}">{e(label)}</a>' for label, href in links) + "</td></tr>")
    tail = rec.get("output_tail") or []
    tail_html = (f'<pre style="margin:4px 0 0;max-height:12em;overflow:auto;background:#f6f8fa;padding:6px">'
                 f'{e(chr(10).join(tail))}</pre>') if tail else ""
    return (f'<div class="cutover-step" data-step="{e(rec["step_id"])}" data-outcome="{e(rec["outcome"])}" '
            f'style="border:1px solid #d0d7de;border-left:6px solid {color};border-radius:6px;'
            f'padding:8px 12px;margin:6px 0;font-family:sans-serif;font-size:13px">'
            f'<div><span style="background:{color};color:#fff;border-radius:4px;padding:1px 8px;'
            f'font-weight:bold">{e(rec["outcome"].upper())}</span> '
            f'<b>{e(rec["step_id"])}</b> {e(rec["title"])}</div>'
            f'<table style="border-collapse:collapse;margin-top:4px">{body}</table>{tail_html}</div>')
