"""The ``cutover`` command: a thin layer over the library.

Expected failures print one line (``error: what is wrong (how to fix it)``) and exit with
the error's code: 1 a step failed, 2 usage or params, 3 a gate not approved, 4 lock held.
Heavy modules load inside the commands, so ``cutover --help`` is instant.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

# rich_markup_mode=None: plain click help and errors (rich costs ~50 ms to load, and the
# top-level help is served without loading typer at all: see entry.py)
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Run the Stella Ops launch cutover runbook and keep its evidence.")
params_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Inspect and validate environment params.")
app.add_typer(params_app, name="params")

EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment: a file params/<env>.yaml.")]
RootOpt = Annotated[Optional[Path], typer.Option("--root", help="Project root (default: $CUTOVER_ROOT or the "
                                                 "nearest folder with params/ and notebooks/).")]
OverrideOpt = Annotated[Optional[list[str]], typer.Option("-p", "--param", help="Override a param: KEY=VALUE "
                                                          "(dotted key; value parsed as YAML).")]


def _root(root: Optional[Path]) -> Path:
    from ..engine.phases import find_root

    return root.resolve() if root else find_root()


def _fail(exc: Exception) -> "typer.Exit":
    from ..errors import CutoverError, report

    if isinstance(exc, CutoverError):
        return typer.Exit(report(exc))
    raise exc


@params_app.command("check")
def params_check(env: Annotated[Optional[str], typer.Option("--env", "-e", help="Environment (default: every "
                                                            "params/<env>.yaml, one line each).")] = None,
                 root: RootOpt = None, param: OverrideOpt = None) -> None:
    """Validate params/<env>.yaml and the files it names, and print the resolved environment (secrets
    as references); without --env, every environment (exit 2 if any is wrong)."""
    from .params_check import check

    code = check(env, root, param or [])
    if code:
        raise typer.Exit(code)


@app.command()
def run(
    env: EnvOpt,
    phase: Annotated[str, typer.Option("--phase", help="A phase of notebooks/phases.yaml (readiness, rehearsal, "
                                       "cutover, rollback, post, ...) or a Section 2 slot (t-24h, t-12h, t-6h, t-2h, "
                                       "t-30m, t0, t+45m, t+4h).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan mutating steps instead of running them.")] = False,
    param: OverrideOpt = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Resume the run RUN_ID after a failure or crash.")] = None,
    confirm: Annotated[Optional[list[str]], typer.Option("--confirm", help="Re-run this interrupted mutating step "
                                                          "(after checking the system by hand).")] = None,
    no_rollback: Annotated[bool, typer.Option("--no-rollback", help="Do not run the rollback phase when smoke "
                                               "tests fail.")] = False,
    waive: Annotated[Optional[list[str]], typer.Option("--waive", help="Waive a gate's missing approvals (stage, "
                                                        "dev and local only; recorded). GATE or 'all'.")] = None,
    accept_param_changes: Annotated[bool, typer.Option("--accept-param-changes", help="With --resume: continue "
                                                       "although the params changed since the run started "
                                                       "(recorded in the run).")] = False,
    at_any_time: Annotated[bool, typer.Option("--at-any-time", help="Run a slot far from its hour (or readiness's "
                                              "slots at once) where the timeline is enforced (prod); recorded.")
                           ] = False,
    root: RootOpt = None,
) -> None:
    """Execute a phase's notebooks with papermill into a new evidence folder."""
    if accept_param_changes and not resume:
        from ..errors import UsageError

        raise _fail(UsageError("--accept-param-changes goes with --resume RUN_ID",
                               hint="a new run takes the params as they are"))
    _run_cmd(env, phase, dry_run=dry_run, with_reads=True, param=param, resume=resume, confirm=confirm,
             no_rollback=no_rollback, root=root, waive=waive, accept_param_changes=accept_param_changes,
             at_any_time=at_any_time)


@app.command()
def plan(
    env: EnvOpt,
    phase: Annotated[str, typer.Option("--phase", help="The phase to plan.")],
    with_reads: Annotated[bool, typer.Option("--with-reads", help="Also run the read-only checks.")] = False,
    param: OverrideOpt = None,
    root: RootOpt = None,
) -> None:
    """Dry-run a phase: every mutating action is recorded as planned with its exact command."""
    _run_cmd(env, phase, dry_run=True, with_reads=with_reads, param=param, resume=None, confirm=None,
             no_rollback=True, root=root, waive=["all"])


def _run_cmd(env: str, phase: str, *, dry_run: bool, with_reads: bool, param: Optional[list[str]],
             resume: Optional[str], confirm: Optional[list[str]], no_rollback: bool, root: Optional[Path],
             waive: Optional[list[str]] = None, accept_param_changes: bool = False, at_any_time: bool = False) -> None:
    from ..engine.kernels import KERNEL_ENV, Kernels
    from ..engine.phases import load_phases, resolve_phase
    from ..engine.prestart import claim
    from ..errors import CutoverError

    base = _root(root)
    early = claim(base)
    kernels = early or Kernels(base, env=KERNEL_ENV)
    try:
        with kernels:
            try:
                first = None if early else load_phases(base).get(resolve_phase(base, phase), [None])[0]
            except CutoverError:
                first = None  # the runner says what is wrong with notebooks/phases.yaml
            if first and (base / "notebooks" / first).exists():
                # the kernel boots on the other core while the runner and the params load
                kernels.prepare(base / "notebooks" / first)
            from rich.console import Console

            from ..engine.progress import styled
            from ..engine.runner import run_phase

            console = Console(highlight=False, soft_wrap=True)
            with console.status("starting", spinner="dots") as line:
                result = run_phase(env, phase, root=base, dry_run=dry_run, with_reads=with_reads,
                                   overrides=param or [], resume=resume, confirm=confirm or [],
                                   rollback_on_failure=not no_rollback, waive=waive or [],
                                   echo=lambda s: console.print(styled(s)), status=line.update,
                                   kernels=kernels, accept_param_changes=accept_param_changes,
                                   at_any_time=at_any_time)
    except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM (click would turn it into "Aborted!", exit 1)
        raise typer.Exit(_interrupted(exc)) from None
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc) from None
    raise typer.Exit(result.exit_code)


def _interrupted(exc: KeyboardInterrupt) -> int:
    code = int(getattr(exc, "exit_code", 130))
    typer.echo(f"{'terminated' if code == 143 else 'interrupted'}: the evidence written so far is kept", err=True)
    return code


@app.command()
def verify(run_dir: Annotated[Path, typer.Argument(help="A run folder, e.g. executed/local/<run-id>.")],
           key: Annotated[Optional[list[Path]], typer.Option("--key", help="Also trust this PEM public key "
                                                             "to have sealed the run.")] = None,
           root: RootOpt = None) -> None:
    """Re-hash a run folder, check its ledger chain and its signed seal; exit 1 naming every change."""
    try:
        from ..evidence.tamper import verify_report

        findings, sealed_by = verify_report(run_dir, key or [], root.resolve() if root else None)
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc) from None
    if findings:
        for f in findings:
            typer.echo(f"TAMPERED {run_dir}: {f}", err=True)
        typer.echo(f"error: {run_dir}: {len(findings)} finding(s); this evidence cannot be trusted", err=True)
        from ..errors import EXIT_FAILED

        raise typer.Exit(EXIT_FAILED)
    typer.echo(f"ok: {run_dir}: every file and ledger link matches the sealed manifest; sealed by {sealed_by}")


@app.command("key")
def key_command() -> None:
    """Print this operator's public key (made on first use), to add to trust.run_keys in params."""
    try:
        from ..evidence.dsse import key_id
        from ..evidence.seal import key_path, operator_key, public_pem

        own = operator_key()
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc) from None
    typer.echo(f"# key id {key_id(own)} ({key_path()}; the private key never leaves it)")
    typer.echo("# save as deploy/keys/operators/<env>/<your-name>.pem and list the folder in trust.run_keys")
    typer.echo(public_pem(own).rstrip())


from .timeline import register as _register_timeline  # noqa: E402 - timeline, schedule, bridge (app.py's size)

_register_timeline(app)


@app.command()
def approve(
    env: EnvOpt,
    gate: Annotated[str, typer.Option("--gate", help="plan | t0 | post-smoke | rollback")],
    role: Annotated[str, typer.Option("--role", help="The approver's role in the matrix, e.g. cto, devops-lead.")],
    name: Annotated[str, typer.Option("--name", help="The approver's name.")],
    record: Annotated[str, typer.Option("--record", help="Where the approval is recorded: ticket id or channel.")],
    comment: Annotated[str, typer.Option("--comment", help="Free text kept with the approval.")] = "",
    reject: Annotated[bool, typer.Option("--reject", help="Record a rejection instead of an approval.")] = False,
    plan_run: Annotated[Optional[str], typer.Option("--plan", help="The plan run (cutover plan) this approves.")] = None,
    run: Annotated[Optional[str], typer.Option("--run", help="The run whose results this approves (post-smoke: "
                                               "once its smoke decision passed).")] = None,
    root: RootOpt = None,
) -> None:
    """Record an approval (or rejection) of a gate for the environment's change ticket."""
    try:
        from ..config.params import load_environment
        from ..engine.approvals import ApprovalStore, plan_digest_of

        base = _root(root)
        environment = load_environment(env, base / "params")
        digest = plan_digest_of(base, environment, plan_run) if plan_run else None
        rec = ApprovalStore(base, environment).record(gate=gate, role=role, name=name, record=record,
                                                      comment=comment, decision="reject" if reject else "approve",
                                                      plan_run=plan_run, plan_digest=digest, run=run)
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc) from None
    from ..adapters.notify import Bridge, gate_decision

    if environment.bridge.webhook is not None:
        posted = Bridge(environment.bridge, verify=environment.tls_verify).send(gate_decision(rec))
        if not posted.ok:
            typer.echo(f"warning: #{environment.bridge.channel} not told ({posted.error}); the approval is recorded",
                       err=True)
    typer.echo(f"{rec['decision']}d: gate {gate} of {env} ({environment.change_ticket}) by {rec['name']} as "
               f"{rec['role']} at {rec['at']}, recorded in {rec['record']}"
               + (f"; plan {plan_run} digest {str(digest)[:16]}…" if plan_run else "")
               + (f"; run {run} ({rec['after']} passed at {rec['after_at']})" if run else ""))


@app.command()
def approvals(env: EnvOpt, root: RootOpt = None) -> None:
    """List the approvals recorded for the environment's change, gate by gate."""
    try:
        from rich.console import Console
        from rich.table import Table

        from ..config.params import load_environment
        from ..engine.approvals import ApprovalStore

        base = _root(root)
        environment = load_environment(env, base / "params")
        store = ApprovalStore(base, environment)
        store.records()  # a tampered approvals file: one line, exit 1
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc) from None
    table = Table(title=f"{env}: approvals for {environment.change_ticket}")
    for col in ("Gate", "Needs", "Missing", "Role", "Name", "Decision", "UTC", "Record", "Comment"):
        table.add_column(col, overflow="fold")
    for gate_name, g in environment.approvals.gates.items():
        st = store.status(gate_name)
        recs = [r for r in store.records() if r.get("gate") == gate_name]
        if not recs:
            table.add_row(gate_name, " + ".join(g.roles), ", ".join(st.missing), "", "", "", "", "", "")
        for i, r in enumerate(recs):
            table.add_row(gate_name if i == 0 else "", " + ".join(g.roles) if i == 0 else "",
                          ", ".join(st.missing) if i == 0 else "", r["role"], r["name"], r["decision"], r["at"],
                          r["record"], r.get("comment", ""))
    Console(width=160).print(table)


@app.command()
def unlock(env: EnvOpt, root: RootOpt = None) -> None:
    """Break a stale run lock (only when its process is gone); the break is recorded."""
    try:
        from ..engine.runner import break_lock

        typer.echo(break_lock(_root(root), env))
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc) from None


def _add_plugin_commands() -> None:
    """Sub-commands other packages add (entry points ``stellaops_cutover.commands``: the lab adds
    ``cutover lab``); a plug-in that fails to load is left out with one line on stderr."""
    from ..adapters.plugins import load, names

    for name in names("commands"):
        try:
            sub = load("commands", name)
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not break the tool
            typer.echo(f"warning: plug-in command {name!r} not loaded: {exc}", err=True)
            continue
        app.add_typer(sub, name=name, help=sub.info.help)


_add_plugin_commands()


def _terminate(signum: int, frame: object) -> None:
    from ..errors import Terminated

    raise Terminated()


def install_signal_handlers() -> None:
    """SIGTERM unwinds like Ctrl-C (the run is sealed, the lock released); and an interrupt that
    lands while the interpreter runs a finalizer (a ``__del__``, a weakref callback, where Python
    prints an exception as "ignored" and goes on) is delivered again, so a Ctrl-C or a SIGTERM is
    never lost: without this a run went on to its next gate after one (seen in the tests)."""
    import signal
    import threading

    from ..errors import Terminated

    signal.signal(signal.SIGTERM, _terminate)
    report = sys.unraisablehook

    def redeliver(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):  # (one here came from a signal in a finalizer)
            report(unraisable)
            return
        # the signal again, to the main thread, 10 ms on (from a thread: its handler runs once this
        # hook and the finalizer have returned; one landing in a finalizer again comes back here).
        # On a loaded machine it can land while this hook still waits for the thread to start: then
        # it is raised here, and scheduled once more (the earlier timer cancelled, if it had not fired).
        again: threading.Timer | None = None
        sig = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
        while True:
            try:
                if again is not None:
                    again.cancel()
                again = threading.Timer(0.01, signal.pthread_kill, args=(threading.main_thread().ident, sig))
                again.daemon = True
                again.start()
                return
            except KeyboardInterrupt:
                continue

    sys.unraisablehook = redeliver


def main() -> None:
    install_signal_handlers()
    try:
        app()
    except KeyboardInterrupt as exc:
        _exit(_interrupted(exc))
    except SystemExit as exc:
        _exit(exc.code)


def _exit(code: int | str | None) -> None:
    """Leave without tearing the interpreter down: every file the command wrote is already
    closed and synced, so module teardown and the final garbage collection (~0.2 s after a
    run has loaded papermill, nbconvert and jupyter_client) buy nothing.  ``atexit`` handlers
    still run and standard streams are flushed."""
    import atexit

    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    main()
