"""``cutover lab ...``: start, stop and inspect the local stand-in Stella Ops stack.

A thin layer over :mod:`stellaops_lab`; the library is imported inside each command so
``cutover --help`` stays instant. Expected errors print one ``error: ...`` line and exit 2
(bad arguments) or 1 (the lab could not do it; ``lab up`` with a service not healthy: one
``error:`` line per such service, then a ``hint:`` line).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer

if TYPE_CHECKING:  # pragma: no cover
    from ._config import LabConfig

__all__ = ["lab_app"]

lab_app = typer.Typer(
    name="lab",
    rich_markup_mode=None,
    help="The lab: a local stand-in Stella Ops stack (one process per service, on loopback).",
    no_args_is_help=True,
    add_completion=False,
)
fault_app = typer.Typer(rich_markup_mode=None, help="Fault switches: make a lab service unhealthy, slow, down or wrong.",
                        no_args_is_help=True)
lab_app.add_typer(fault_app, name="fault")

DataDirOpt = Annotated[
    Path,
    typer.Option("--data-dir", envvar="CUTOVER_LAB_DIR", help="Lab state folder.", show_default=True),
]
PortBaseOpt = Annotated[
    Optional[int],
    typer.Option("--port-base", envvar="CUTOVER_LAB_PORT_BASE",
                 help="First port; services take PORT_BASE+0..6 (default 18080)."),
]


def _config(data_dir: Path, port_base: int | None) -> "LabConfig":
    from ._config import DEFAULT_PORT_BASE, LabConfig

    return LabConfig.from_port_base(data_dir, port_base if port_base is not None else DEFAULT_PORT_BASE)


def _run(action: Callable[[], Any]) -> Any:
    """Run ``action``; turn lab errors into one ``error:`` line (one per unhealthy service, then a
    ``hint:`` line) and the error's exit code (2 bad arguments, 1 the lab could not do it)."""
    from ._errors import LabError, LabUnhealthy

    try:
        return action()
    except LabUnhealthy as exc:
        for line in exc.lines():
            typer.echo(f"error: {line}", err=True)
        if exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except LabError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:  # the lab folder's files as the lab did not leave them (a folder, no room, ...)
        typer.echo(f"error: {exc.strerror or exc}: {exc.filename}" if exc.filename else f"error: {exc}", err=True)
        typer.echo("hint: the lab folder must hold the lab's own files, writable (--data-dir)", err=True)
        raise typer.Exit(1) from None


def _print_status(rows: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Stella Ops lab (local stand-in)")
    for column in ("service", "pid", "running", "healthy", "version", "url", "faults"):
        table.add_column(column)
    for name, row in rows.items():
        faults = ", ".join(f"{k.split('.', 1)[1]}={json.dumps(v)}" for k, v in row["faults"].items())
        table.add_row(
            name,
            str(row["pid"] or "-"),
            "yes" if row["running"] else "no",
            "[green]yes[/]" if row["healthy"] else "[red]no[/]",
            row["version"] or "-",
            row["url"],
            faults or "-",
        )
    Console().print(table)


@lab_app.command()
def up(
    data_dir: DataDirOpt = Path(".lab"),
    port_base: PortBaseOpt = None,
    scan_seconds: Annotated[float, typer.Option(help="Default scan duration.")] = 2.0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every /healthz.")] = 30.0,
) -> None:
    """Start every lab service that is not running yet (idempotent); exit 1 if any is not healthy
    (each named with what its /healthz said; the services are left running to inspect)."""
    from . import _control
    from ._errors import LabUnhealthy

    def action() -> Any:
        config = _config(data_dir, port_base)
        config.scan_seconds = scan_seconds
        try:
            return _control.up(config, timeout=timeout)
        except LabUnhealthy as exc:
            _print_status(exc.state)
            raise

    _print_status(_run(action))


@lab_app.command()
def down(data_dir: DataDirOpt = Path(".lab"), port_base: PortBaseOpt = None) -> None:
    """Stop the lab processes started from this data folder (and nothing else)."""
    from . import _control

    stopped = _run(lambda: _control.down(_config(data_dir, port_base)))
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@lab_app.command()
def status(
    data_dir: DataDirOpt = Path(".lab"),
    port_base: PortBaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show pid, health, version and active faults per service."""
    from . import _control

    rows = _run(lambda: _control.status(_config(data_dir, port_base)))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        _print_status(rows)


@lab_app.command()
def standins(data_dir: DataDirOpt = Path(".lab"), port_base: PortBaseOpt = None) -> None:
    """Write the lab's stand-in stellaops-cli and dotnet to DATA_DIR/bin (`lab up` does it too; the
    compose lab, which `lab up` does not start, needs it once: params tools.path names that folder)."""
    from ._standins import install_standins

    written = _run(lambda: install_standins(_config(data_dir, port_base).bin_dir))
    typer.echo("wrote: " + ", ".join(str(p) for p in written))


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@fault_app.command("set")
def fault_set(
    service: Annotated[str, typer.Argument(help="authority, scanner, signer, attestor, notify, web, runtime")],
    fault: Annotated[str, typer.Argument(help="unhealthy, slow, down, wrong_issuer, bad_signature, queue_down, scan_stuck, ingest_error")],
    value: Annotated[str, typer.Argument(help="JSON value (slow: milliseconds).")] = "true",
    data_dir: DataDirOpt = Path(".lab"),
) -> None:
    """Switch a fault on (value false/0 switches it off)."""
    from . import _control

    parsed = _parse_value(value)
    name = _run(lambda: _control.set_fault(_config(data_dir, None), service, fault, parsed))
    typer.echo(f"{name} = {json.dumps(parsed)}")


@fault_app.command("clear")
def fault_clear(
    service: Annotated[Optional[str], typer.Argument(help="Only this service's faults.")] = None,
    data_dir: DataDirOpt = Path(".lab"),
) -> None:
    """Clear every fault, or one service's."""
    from . import _control

    cleared = _run(lambda: _control.clear_faults(_config(data_dir, None), service))
    typer.echo(f"cleared: {', '.join(cleared)}" if cleared else "no faults were set")


@fault_app.command("list")
def fault_list(
    data_dir: DataDirOpt = Path(".lab"),
    all_faults: Annotated[bool, typer.Option("--all", help="List every known fault, set or not.")] = False,
) -> None:
    """List active faults (or, with --all, every fault the lab knows)."""
    from . import _control
    from ._config import FAULTS

    active = _run(lambda: _control.list_faults(_config(data_dir, None)))
    if all_faults:
        for name, text in FAULTS.items():
            mark = f"= {json.dumps(active[name])}" if name in active else ""
            typer.echo(f"{name:26} {text} {mark}".rstrip())
        return
    if not active:
        typer.echo("no faults set")
    for name, value in active.items():
        typer.echo(f"{name} = {json.dumps(value)}")


