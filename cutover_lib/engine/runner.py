"""Phases and runs: papermill orchestration, progress, the lock, sealing the evidence.

A *phase* is an ordered list of notebooks.  A *run* executes one phase against one
environment into a new run folder.  papermill gets only plain parameters (``env``,
``run_dir``, ``dry_run``, ``resume``, ``notebook``, ``overrides``, ``confirm``,
``with_reads``, ``root``) -- never a secret.  Kernels talk over IPC sockets, not TCP.

The ledger, not papermill's cell status, decides the outcome: papermill marks cells that
never ran as completed after a timeout, the ledger only holds what really happened.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import platform
import socket
import subprocess
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.files import require_files
from ..config.params import Environment, load_environment, params_digest
from ..config.secrets import mask as _mask
from ..errors import EXIT_FAILED, EXIT_GATE, EXIT_PASSED, CutoverError, Terminated, UsageError, exit_code_for
from ..evidence.change_page import write_change_page
from ..evidence.evidence import RunFolder, iso, utc_now
from ..evidence.report import HtmlExports
from ..evidence.reporter import BridgeReporter
from .admission import open_for_resume, params_changed, passed_rehearsal
from .kernels import KERNEL_ENV, Kernels, NotebookFailed, execute_notebook
from .lock import EnvLock, break_lock
from .phases import load_phases, notebook_deadline, resolve_phase
from .plan import plan_diff, plan_digest, planned_commands
from .progress import Progress, closing_summary, note_not_blocking, with_status

__all__ = ["EnvLock", "NotebookFailed", "RunResult", "break_lock", "run_phase"]


@dataclass
class RunResult:
    run_dir: Path
    outcome: str
    exit_code: int
    message: str = ""
    index_html: Path | None = None
    notebooks: list[str] = field(default_factory=list)


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown (not a git checkout)"
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("stellaops-cutover", "papermill", "nbconvert", "nbclient", "ipykernel", "httpx"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _pending_gate(root: Path, env: Environment, run: RunFolder) -> list[str]:
    """The ``cutover approve`` commands the gate that stopped the run still needs."""
    from .approvals import pending_approvals

    records = run.read_ledger()
    stopped = [r["step_id"].split(".gate-", 1)[1] for r in records
               if r.get("kind") == "step" and ".gate-" in r.get("step_id", "") and r.get("outcome") == "failed"]
    if not stopped or stopped[-1] not in env.approvals.gates:
        return []
    after = env.approvals.gates[stopped[-1]].after
    passed = [r.get("ended") for r in records if r.get("kind") == "step" and r.get("step_id") == after
              and r.get("outcome") == "passed"]
    try:
        return pending_approvals(root, env, stopped[-1], run.run_id, passed[-1] if passed else None)
    except CutoverError:  # (an approvals file that fails its chain: the gate step said so)
        return []


def _applied_without_decision(run: RunFolder) -> bool:
    """A mutating step of Section 4.2/4.3 (the apply) ran, and no go/rollback decision was recorded."""
    records = run.read_ledger()
    return not any(r.get("kind") == "decision" for r in records) and any(
        r.get("kind") == "step" and r.get("mutating") and str(r.get("section", "")).startswith(("4.2", "4.3"))
        and r.get("outcome") in ("passed", "failed") for r in records)


def _json_default(value: Any) -> str:
    """``-p`` values YAML reads as dates and times travel to the kernel as ISO text (the params
    models parse it back); anything else that JSON cannot carry is an error."""
    if isinstance(value, (datetime.date, datetime.time)):  # datetime.datetime is a date
        return value.isoformat()
    raise TypeError(f"a -p value of type {type(value).__name__} cannot be passed to the notebooks")


def _notebook_failure(exc: BaseException) -> tuple[int, str]:
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None) or str(exc).strip().splitlines()[-1:] or [""]
    if isinstance(evalue, list):
        evalue = evalue[0]
    return exit_code_for(ename), f"{ename}: {evalue}"


# ---------------------------------------------------------------------------- runs

def run_phase(
    env_name: str,
    phase: str,
    *,
    root: Path,
    dry_run: bool = False,
    with_reads: bool = True,
    overrides: Sequence[str] = (),
    resume: str | None = None,
    confirm: Sequence[str] = (),
    rollback_on_failure: bool = True,
    waive: Sequence[str] = (),
    echo: Callable[[str], None] = print,
    status: Callable[[str], None] | None = None,
    kernels: Kernels | None = None,
    accept_param_changes: bool = False,
    at_any_time: bool = False,
) -> RunResult:
    """Run ``phase`` (or a slot: ``t-12h``, ``t0``) against ``env_name``; return the outcome
    (expected failures are results, not exceptions).  Raises :class:`CutoverError` only for
    problems found before the run folder exists (params, unknown phase, off its hour, lock)."""
    from ..config.params import parse_overrides
    from .slots import check_on_time, go_no_go_given

    phases, phase = load_phases(root), resolve_phase(root, phase)
    ov = parse_overrides(list(overrides))
    env = load_environment(env_name, root / "params", ov)
    require_files(env, root)
    slot = check_on_time(root, env, phase, at_any_time=at_any_time, dry_run=dry_run, resumed=bool(resume))
    notebooks = list(phases[phase])
    for nb in notebooks + (phases["rollback"] if phase == "cutover" else []):
        if not (root / "notebooks" / nb).exists():
            raise UsageError(f"notebook notebooks/{nb} of phase {phase} is missing",
                             hint="restore it from git: git checkout -- notebooks/")
    with ExitStack() as stack:
        if kernels is None:  # (the CLI starts one before it loads the runner)
            kernels = stack.enter_context(Kernels(root, env=KERNEL_ENV))
        kernels.prepare(root / "notebooks" / notebooks[0])  # boots while the checks below run
        exports = stack.enter_context(HtmlExports())
        executed = root / "executed"
        if resume:
            run = open_for_resume(executed, env_name, resume, phase)
            changed = params_changed(run, env, accept_param_changes)
        else:
            run, changed = None, None
        lock = EnvLock(executed, env_name)
        lock.acquire(run.run_id if run else f"(starting) {env_name}-{phase}", resume_of=run)
        try:
            if run is not None and changed is not None:
                run.append({"kind": "params-changed", **changed})
            if run is not None and slot is not None and resume:
                run.append({**slot, "kind": "slot-resume"})
            rehearsed = passed_rehearsal(env, executed) if phase == "cutover" and not dry_run else None
            if slot is not None and slot["slot"] == "T0" and not dry_run and env.timeline.enforced:
                slot["go_no_go"] = go_no_go_given(root, env)  # then the T-30m GO of this release (exit 3)
            # a resumed T0 run is checked against the approved plan as strictly as its first attempt
            if phase == "cutover" and not dry_run:
                blocked = _check_against_approved_plan(env, notebooks, root, executed, ov, echo, kernels, exports)
                if blocked is not None:
                    return blocked
            if run is None:
                run = RunFolder.create(executed, env_name, phase)
                lock.rename(run.run_id)
            if rehearsed is not None:
                run.append({"kind": "rehearsal-evidence", **rehearsed})
            if slot is not None and not resume:
                run.append(slot)
            return _run(env, phase, notebooks, run, root=root, dry_run=dry_run, with_reads=with_reads,
                        overrides=ov, resume=bool(resume), confirm=confirm, waive=waive,
                        rollback_on_failure=rollback_on_failure, echo=echo, status=status, kernels=kernels,
                        exports=exports)
        finally:
            lock.release()


def _check_against_approved_plan(env: Environment, notebooks: list[str], root: Path, executed: Path,
                                 overrides: dict[str, Any], echo: Callable[[str], None], kernels: Kernels,
                                 exports: HtmlExports) -> RunResult | None:
    """Before T0 mutates anything: when the plan gate was approved for a plan run (``cutover
    approve --gate plan --plan RUN_ID``), plan this run now and compare the commands.  Any
    difference stops the run (exit 3) naming the steps whose commands changed."""
    from .approvals import ApprovalStore

    approved = [r for r in ApprovalStore(root, env).records()
                if r.get("gate") == "plan" and r.get("decision") == "approve" and r.get("plan_digest")]
    if not approved:
        return None
    plan = approved[-1]
    echo(f"checking this run's commands against the approved plan {plan['plan_run']} "
         f"(approved by {', '.join(sorted({r['name'] for r in approved}))})")
    check = RunFolder.create(executed, env.name, "cutover-plancheck")
    result = _run(env, "cutover", notebooks, check, root=root, dry_run=True, with_reads=False,
                  overrides=overrides, resume=False, confirm=(), waive=["all"], rollback_on_failure=False,
                  echo=lambda s: None, kernels=kernels, exports=exports)
    now = check.read_manifest()
    if now.get("plan_digest") == plan["plan_digest"]:
        echo(f"commands match the approved plan (digest {plan['plan_digest'][:16]}…)")
        return None
    try:
        approved_cmds = json.loads((executed / env.name / plan["plan_run"] / "manifest.json").read_text())["planned"]
    except (OSError, ValueError, KeyError):
        approved_cmds = []
    diff = plan_diff([tuple(x) for x in approved_cmds], [tuple(x) for x in now.get("planned", [])])
    message = (f"this run's commands differ from the approved plan {plan['plan_run']}: " + "; ".join(diff[:5])
               + (f" (+{len(diff) - 5} more)" if len(diff) > 5 else ""))
    echo(f"outcome: blocked - {message}")
    echo(f"plan check evidence: {check.path}")
    echo(f"fix: make a new plan (cutover plan --env {env.name} --phase cutover) and have it approved "
         f"(cutover approve --env {env.name} --gate plan --plan <run-id> ...)")
    return RunResult(check.path, "blocked", EXIT_GATE, message, result.index_html)


def _run(env: Environment, phase: str, notebooks: list[str], run: RunFolder, *, root: Path, dry_run: bool,
         with_reads: bool, overrides: dict[str, Any], resume: bool, confirm: Sequence[str],
         waive: Sequence[str], rollback_on_failure: bool, echo: Callable[[str], None], kernels: Kernels,
         exports: HtmlExports, status: Callable[[str], None] | None = None) -> RunResult:
    """Execute ``notebooks`` into ``run`` in the run's kernel (a notebook that passed in an earlier
    attempt is not re-run), roll back when the cutover decided so, seal, and report."""
    started = utc_now()
    done = {r["notebook"] for r in run.read_ledger() if r.get("kind") == "notebook-end" and r.get("outcome") == "passed"}
    manifest = run.read_manifest() if resume else {}
    manifest.update({
        "run_id": run.run_id, "env": env.name, "tier": env.tier, "phase": phase, "release": env.release,
        "operator": f"{getpass.getuser()}@{socket.gethostname()}", "git_commit": _git_commit(root),
        "params_sha256": params_digest(env), "versions": _versions(), "dry_run": dry_run,
        "started": manifest.get("started", iso(started)), "outcome": "running", "sealed": False,
        "notebooks": manifest.get("notebooks", []),
    })
    run.write_manifest(manifest)
    run.append({"kind": "run-resume" if resume else "run-start", "env": env.name, "phase": phase,
                "dry_run": dry_run, "operator": manifest["operator"], "params_sha256": manifest["params_sha256"],
                "git_commit": manifest["git_commit"]})
    echo(f"run {run.run_id}: {phase} on {env.name}{' (dry run)' if dry_run else ''}")
    reporter = BridgeReporter(env, phase, run, dry_run, notebooks)
    reporter.start()
    exit_code, outcome, message = EXIT_PASSED, "passed", ""
    params = {"env": env.name, "run_dir": str(run.path), "dry_run": dry_run, "resume": resume,
              "overrides": json.dumps(overrides, default=_json_default) if overrides else "", "confirm": ",".join(confirm),
              "with_reads": with_reads, "root": str(root), "waive": ",".join(waive)}

    import papermill  # noqa: F401 - needed now; then nbconvert loads in the export thread

    exports.warm()

    def export(out: Path, nb: str) -> None:
        """HTML of one executed notebook, made while the next one runs."""
        exports.submit(out, run.path / "html" / f"{out.stem}.html", lambda exc: run.append(
            {"kind": "note", "notebook": nb, "text": f"HTML export failed: {exc}"}))

    def execute(nb_list: list[str], label: str) -> tuple[int, str]:
        for i, nb in enumerate(nb_list, start=1):
            if nb in done:
                echo(f"[{label} {i}/{len(nb_list)}] {nb}: finished in an earlier attempt, not re-run")
                continue
            echo(f"[{label} {i}/{len(nb_list)}] {nb}")
            where = f"{label} {i}/{len(nb_list)} · {nb}"
            if status:
                status(where)
            out = run.path / "notebooks" / nb
            n = 1
            while out.exists():
                n += 1
                out = run.path / "notebooks" / f"{Path(nb).stem}.{n}.ipynb"
            run.append({"kind": "notebook-start", "notebook": nb, "output": f"notebooks/{out.name}"})
            code, msg = EXIT_PASSED, ""
            with Progress(run, echo, with_status(reporter.on_record, status, where)):
                try:
                    deadline = notebook_deadline(env, root / "notebooks" / nb)
                    execute_notebook(root / "notebooks" / nb, out, {**params, "notebook": nb}, root, deadline,
                                     deadline, kernels=kernels)
                except Exception as exc:  # noqa: BLE001 - papermill/nbclient errors become a run outcome
                    code, msg = _notebook_failure(exc)
            if out.exists():
                os.chmod(out, 0o600)
                manifest["notebooks"].append(f"notebooks/{out.name}")
                export(out, nb)
            run.append({"kind": "notebook-end", "notebook": nb, "outcome": "passed" if code == 0 else "failed",
                        "error": _mask(msg)})
            if code:
                return code, f"{nb}: {msg}"
        return EXIT_PASSED, ""

    interrupted: KeyboardInterrupt | None = None
    pending: list[str] = []
    try:
        can_roll_back = phase == "cutover" and rollback_on_failure and not dry_run
        earlier = [r for r in run.read_ledger() if r.get("kind") == "decision"] if resume else []
        if can_roll_back and earlier and earlier[-1].get("decision") == "rollback":
            # decided in an earlier attempt: the rollback goes on, the cutover's notebooks are not re-run
            exit_code, message, outcome = EXIT_FAILED, f"rollback decided earlier: {earlier[-1].get('reason', '')}", \
                "failed"
        else:
            exit_code, message = execute(notebooks, phase)
            if exit_code:
                outcome = "blocked" if exit_code == EXIT_GATE else "failed"
            if outcome == "blocked":
                pending = _pending_gate(root, env, run)
            if can_roll_back and exit_code not in (EXIT_PASSED, EXIT_GATE) and "OutcomeUnknown:" not in message \
                    and _applied_without_decision(run):  # e.g. a smoke cell crashed: results unknown
                run.append({"kind": "decision", "decision": "rollback", "failed": [], "reason":
                            f"the cutover stopped after the release was applied, before its go/rollback decision "
                            f"({_mask(message)})"})
        decisions = [r for r in run.read_ledger() if r.get("kind") == "decision"]
        if can_roll_back and decisions and decisions[-1].get("decision") == "rollback":
            echo(f"rollback decided ({decisions[-1].get('reason', '')}): running the rollback phase (Section 6)")
            rb_code, rb_msg = execute(load_phases(root)["rollback"], "rollback")
            if rb_code == EXIT_GATE:  # waits for its approvals: record them, then resume
                from .approvals import pending_approvals

                outcome, exit_code = "rollback-pending", EXIT_GATE
                pending = pending_approvals(root, env, "rollback")
            else:
                outcome = "rolled-back" if rb_code == 0 else "rollback-failed"
                exit_code = exit_code or EXIT_FAILED
            message = message + (f"; rollback: {rb_msg}" if rb_msg else "; rolled back")
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the kernel is already stopped; seal what exists
        interrupted = exc
        how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        outcome, exit_code, message = "interrupted", getattr(exc, "exit_code", 130), f"interrupted by {how}"
        run.append({"kind": "interrupted", "by": how})
    records = run.read_ledger()  # (a run that stopped names its root failure instead)
    message = note_not_blocking(records, manifest, message) if outcome == "passed" else message
    if dry_run:
        manifest["plan_digest"], manifest["planned_commands"] = plan_digest(records)
        manifest["planned"] = planned_commands(records)
        if outcome == "passed":  # a plan ran nothing that changes anything: it never reads as a success
            outcome = "planned"
    ended = utc_now()
    manifest.update({"ended": iso(ended), "outcome": outcome, "reason": message,
                     "duration_s": round((ended - datetime.datetime.fromisoformat(manifest["started"]))
                                         .total_seconds(), 3)})  # from the first attempt's start
    from ..evidence.report import index_sections, write_index

    exports.wait()  # every notebook's HTML is in the folder before the index and the seal
    reporter.finish(outcome, message, run.path / "html" / "index.html")
    index = write_index(run, manifest, index_sections(run, env, root))
    run.seal(manifest)
    unanchored = reporter.anchor(outcome)
    change_page = write_change_page(root, env)  # executed/<env>/index.html: every run of the change (a view)
    for line in closing_summary(run.read_ledger(), manifest, env, dry_run):
        echo(line)
    echo(f"outcome: {outcome}{' - ' + message if message else ''}")
    echo(f"evidence: {run.path}")
    echo(f"report:   {index}")
    echo(f"change:   {change_page}" if isinstance(change_page, Path) else f"warning:  {change_page}")
    if unanchored:
        echo(f"warning:  {unanchored}")
    if interrupted is not None:  # (a plan is not resumed: it is made again)
        echo(f"next:     cutover plan --env {env.name} --phase {phase}" if dry_run else
             f"next:     cutover run --env {env.name} --phase {phase} --resume {run.run_id}")
        raise interrupted
    for command in pending:
        echo(f"next:     {command}")
    if pending:
        echo(f"then:     cutover run --env {env.name} --phase {phase} --resume {run.run_id}")
    unknown = [r["step_id"] for r in run.read_ledger() if r.get("kind") == "step" and r.get("unknown_outcome")]
    if "OutcomeUnknown:" in message and unknown:
        echo(f"next:     check by hand what {unknown[-1]} did, then: cutover run --env {env.name} --phase {phase} "
             f"--resume {run.run_id} --confirm {unknown[-1]}")
    return RunResult(run.path, outcome, exit_code, message, index, manifest["notebooks"])
