"""The ``cutover`` command: a thin layer over the library.

Expected failures print one line (``error: what is wrong (how to fix it)``) and exit with
the error's code: 1 a step failed, 2 usage or params, 3 a gate not approved, 4 lock held.
Heavy modules load inside the commands, so ``cutover --help`` is instant.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Run the Stella Ops launch cutover runbook and keep its evidence.")
params_app = typer.Typer(no_args_is_help=True, help="Inspect and validate environment params.")
app.add_typer(params_app, name="params")

EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment: a file params/<env>.yaml.")]
RootOpt = Annotated[Optional[Path], typer.Option("--root", help="Project root (default: $CUTOVER_ROOT or the "
                                                 "nearest folder with params/ and notebooks/).")]
OverrideOpt = Annotated[Optional[list[str]], typer.Option("-p", "--param", help="Override a param: KEY=VALUE "
                                                          "(dotted key; value parsed as YAML).")]


def _root(root: Optional[Path]) -> Path:
    from ._steps import find_root

    return root.resolve() if root else find_root()


def _fail(exc: Exception) -> "typer.Exit":
    from ._errors import CutoverError

    if isinstance(exc, CutoverError):
        problems = getattr(exc, "problems", None)
        if problems and len(problems) > 1:
            for p in problems:
                typer.echo(f"error: {p}", err=True)
            if exc.hint:
                typer.echo(f"hint: {exc.hint}", err=True)
        else:
            typer.echo(f"error: {exc.one_line()}", err=True)
        return typer.Exit(exc.exit_code)
    raise exc


@params_app.command("check")
def params_check(env: EnvOpt, root: RootOpt = None, param: OverrideOpt = None) -> None:
    """Validate params/<env>.yaml and print the resolved environment (secrets as references)."""
    try:
        from rich.console import Console
        from rich.table import Table

        from ._params import flatten, load_environment, parse_overrides

        base = _root(root)
        environment = load_environment(env, base / "params", parse_overrides(param or []))
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc) from None
    table = Table(title=f"params/{env}.yaml (valid)", show_lines=False)
    table.add_column("key", style="cyan", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in flatten(environment):
        table.add_row(key, value)
    Console(width=max(100, int(os.environ.get("COLUMNS", "0") or 0))).print(table)


@app.command()
def run(
    env: EnvOpt,
    phase: Annotated[str, typer.Option("--phase", help="readiness | rehearsal | cutover | rollback | post")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan mutating steps instead of running them.")] = False,
    param: OverrideOpt = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Resume the run RUN_ID after a failure or crash.")] = None,
    confirm: Annotated[Optional[list[str]], typer.Option("--confirm", help="Re-run this interrupted mutating step "
                                                          "(after checking the system by hand).")] = None,
    no_rollback: Annotated[bool, typer.Option("--no-rollback", help="Do not run the rollback phase when smoke "
                                               "tests fail.")] = False,
    root: RootOpt = None,
) -> None:
    """Execute a phase's notebooks with papermill into a new evidence folder."""
    _run_cmd(env, phase, dry_run=dry_run, with_reads=True, param=param, resume=resume, confirm=confirm,
             no_rollback=no_rollback, root=root)


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
             no_rollback=True, root=root)


def _run_cmd(env: str, phase: str, *, dry_run: bool, with_reads: bool, param: Optional[list[str]],
             resume: Optional[str], confirm: Optional[list[str]], no_rollback: bool, root: Optional[Path]) -> None:
    try:
        from ._runner import run_phase

        result = run_phase(env, phase, root=_root(root), dry_run=dry_run, with_reads=with_reads,
                           overrides=param or [], resume=resume, confirm=confirm or [],
                           rollback_on_failure=not no_rollback, echo=lambda s: typer.echo(s))
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc) from None
    raise typer.Exit(result.exit_code)


@app.command()
def verify(run_dir: Annotated[Path, typer.Argument(help="A run folder, e.g. executed/local/<run-id>.")]) -> None:
    """Re-hash a run folder and check its ledger chain; exit 1 naming every change."""
    try:
        from ._evidence import verify_run

        findings = verify_run(run_dir)
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc) from None
    if findings:
        for f in findings:
            typer.echo(f"TAMPERED {run_dir}: {f}", err=True)
        typer.echo(f"error: {run_dir}: {len(findings)} finding(s); this evidence cannot be trusted", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {run_dir}: every file and ledger link matches the sealed manifest")


@app.command()
def timeline(env: EnvOpt, root: RootOpt = None, param: OverrideOpt = None) -> None:
    """Print the Section 2 timeline: the UTC time of every activity, computed from T0."""
    try:
        from rich.console import Console
        from rich.table import Table

        from ._params import load_environment, parse_overrides
        from ._timeline import schedule

        environment = load_environment(env, _root(root) / "params", parse_overrides(param or []))
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc) from None
    table = Table(title=f"{env}: T0 = {environment.t0:%Y-%m-%d %H:%M} UTC")
    for col in ("When", "UTC", "Activity", "Owner"):
        table.add_column(col, overflow="fold")
    for item in schedule(environment.t0):
        table.add_row(item["label"], f"{item['planned']:%Y-%m-%d %H:%M}", item["activity"], item["owner"])
    Console(width=120).print(table)


@app.command()
def unlock(env: EnvOpt, root: RootOpt = None) -> None:
    """Break a stale run lock (only when its process is gone); the break is recorded."""
    try:
        from ._runner import break_lock

        typer.echo(break_lock(_root(root), env))
    except Exception as exc:  # noqa: BLE001
        raise _fail(exc) from None


def _mount_lab() -> None:
    try:
        from .lab._cli import lab_app
    except ImportError:  # the lab is optional in a production install
        return
    app.add_typer(lab_app, name="lab", help="The local stand-in Stella Ops stack (a lab for rehearsals).")


_mount_lab()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted: the evidence written so far is kept; resume with --resume RUN_ID", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
