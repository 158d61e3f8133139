"""``cutover schedule``: Section 2's timeline as jobs for an existing scheduler (see
:mod:`cutover_lib.runbook.schedule`); ``cutover bridge``: #launch-bridge kept updated between slots
(see :mod:`cutover_lib.runbook.bridge_loop`).

Kept out of ``app.py`` (which calls :func:`register` right after ``cutover timeline``); like the
commands there it is a thin layer, loading the library inside the command.
"""

# no `from __future__ import annotations`: typer reads the command's annotations, which name the
# options of cli.py imported inside register(), so they must be evaluated where they are written

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime, timedelta

    from ..runbook.schedule import Job

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``timeline``, ``schedule`` and ``bridge`` to ``app`` (the options are those of ``app.py``,
    imported while it loads)."""
    from ..runbook.schedule import DEFAULT_IMAGE
    from .app import EnvOpt, OverrideOpt, RootOpt

    @app.command()
    def timeline(env: EnvOpt, root: RootOpt = None, param: OverrideOpt = None) -> None:
        """Print the Section 2 timeline: the UTC time of every activity, computed from T0, and the slot that runs it."""
        from .app import _fail, _root

        try:
            from rich.console import Console
            from rich.table import Table

            from ..config.params import load_environment, parse_overrides
            from ..engine.slots import slot_table

            base = _root(root)
            environment = load_environment(env, base / "params", parse_overrides(param or []))
            slots = slot_table(base, environment)
        except Exception as exc:  # noqa: BLE001
            raise _fail(exc) from None
        table = Table(title=f"{env}: T0 = {environment.t0:%Y-%m-%d %H:%M} UTC")
        for col in ("When", "UTC", "Activity", "Owner", "Runs as"):
            table.add_column(col, overflow="fold")
        for s in slots:
            table.add_row(s.label, f"{s.planned:%Y-%m-%d %H:%M}", s.activity, s.owner, f"--phase {s.name}")
        Console(width=140).print(table)

    @app.command()
    def schedule(
        env: EnvOpt,
        out: Annotated[Optional[Path], typer.Option("--out", help="Folder to write to (default: schedule/<env> "
                                                    "under the project root).")] = None,
        fmt: Annotated[Optional[list[str]], typer.Option("--format", metavar="<format>", help="systemd | cron | "
                                                         "kubernetes | all (repeatable; default all).")] = None,
        image: Annotated[str, typer.Option("--image", help="The kubernetes CronJobs' container image (it holds "
                                           "the project at /srv/stellaops-cutover).")] = DEFAULT_IMAGE,
        force: Annotated[bool, typer.Option("--force", help="Rewrite files that differ (a changed T0); nothing is "
                                            "deleted.")] = False,
        root: RootOpt = None,
        param: OverrideOpt = None,
    ) -> None:
        """Write the Section 2 timeline as jobs for systemd, cron or kubernetes: each slot runs at T0 + its offset."""
        from .app import _fail, _root

        try:
            from ..config.params import load_environment, parse_overrides
            from ..runbook.schedule import FORMATS, cutover_command, jobs, render_schedule, write_schedule

            base = _root(root)
            environment = load_environment(env, base / "params", parse_overrides(param or []))
            formats = _formats(fmt or ["all"], FORMATS)
            folder = (out or base / "schedule" / env).absolute()
            files = render_schedule(base, environment, cutover_bin=cutover_command(), image=image, formats=formats)
            states = write_schedule(folder, files, force=force)
            table = jobs(base, environment)
        except Exception as exc:  # noqa: BLE001
            raise _fail(exc) from None
        for path, state in states:
            typer.echo(f"{state}: {path}")
        typer.echo(f"{env}: T0 {environment.t0:%Y-%m-%d %H:%M} UTC, change {environment.change_ticket}")
        typer.echo("\n".join(_table(table)))
        for line in _hints(folder, formats, table):
            typer.echo(line)

    _add_bridge(app)


def _formats(given: list[str], known: tuple[str, ...]) -> list[str]:
    from ..errors import UsageError

    names = [f.strip().lower() for item in given for f in item.split(",") if f.strip()]
    bad = [n for n in names if n != "all" and n not in known]
    if bad:
        raise UsageError(f"unknown --format {bad[0]!r}", hint=f"choose {', '.join(known)} or all")
    return list(known) if "all" in names or not names else list(dict.fromkeys(names))


def _table(table: list["Job"]) -> list[str]:
    rows = [("slot", "planned UTC", "command")]
    rows += [(j.label, f"{j.planned:%Y-%m-%d %H:%M}", j.command()) for j in table]
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return [f"{a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in rows]


def _hints(folder: Path, formats: list[str], table: list["Job"]) -> list[str]:
    where = shlex.quote(str(folder))
    lines = []
    if "systemd" in formats:
        calendars = " ".join(dict.fromkeys(shlex.quote(f"{j.planned:%Y-%m-%d %H:%M:%S} UTC") for j in table))
        lines += [f"check:   systemd-analyze calendar {calendars}",
                  f"         systemd-analyze verify {where}/*.timer {where}/*.service",
                  (f"install: cd {where} && sudo cp *.service *.timer /etc/systemd/system && "
                   "sudo systemctl daemon-reload && sudo systemctl enable --now *.timer")]
    if "cron" in formats:
        lines.append(f"install: (crontab -l 2>/dev/null; cat {where}/crontab) | crontab -   (times in UTC: CRON_TZ)")
    if "kubernetes" in formats:
        lines.append(f"install: kubectl apply -n NAMESPACE -f {where}/cronjobs.yaml")
    return lines


def _add_bridge(app: typer.Typer) -> None:
    """Add ``bridge``: the change's status on #launch-bridge every ``bridge.heartbeat`` until it closes."""
    from .app import EnvOpt, OverrideOpt, RootOpt

    @app.command()
    def bridge(
        env: EnvOpt,
        every: Annotated[Optional[str], typer.Option("--every", help="How often to post, e.g. 10m (default: "
                                                     "bridge.heartbeat).")] = None,
        once: Annotated[bool, typer.Option("--once", help="Post the status once and stop.")] = False,
        until: Annotated[Optional[str], typer.Option("--until", help="Stop at this UTC time, e.g. "
                                                     "2025-10-27T18:30:00Z (default: T0 + 4h + timeline.late).")
                         ] = None,
        start_now: Annotated[bool, typer.Option("--now", help="Start posting now, even more than an hour before "
                                                "T-30m (otherwise it waits for T-30m).")] = False,
        root: RootOpt = None,
        param: OverrideOpt = None,
    ) -> None:
        """Keep #launch-bridge updated between slots: post the change's status every bridge.heartbeat until the
        change is closed (T+4h passed, or a rollback finished), --until passes, or Ctrl-C."""
        from .app import _fail, _root

        try:
            from ..config.params import load_environment, parse_overrides
            from ..runbook.bridge_loop import bridge_loop

            interval, stop_at = _every(every), _until(until)
            base = _root(root)
            environment = load_environment(env, base / "params", parse_overrides(param or []))
            code = bridge_loop(base, environment, every=interval, once=once, until=stop_at, start_now=start_now,
                               echo=typer.echo, warn=lambda line: typer.echo(line, err=True))
        except Exception as exc:  # noqa: BLE001
            raise _fail(exc) from None
        raise typer.Exit(code)


def _every(value: Optional[str]) -> "timedelta | None":
    from ..config.durations import parse_duration

    return _option("--every", value, parse_duration, "a duration", "--every 10m, 30s or 1h")


def _until(value: Optional[str]) -> "datetime | None":
    from ..config.durations import _parse_utc

    return _option("--until", value, _parse_utc, "a UTC time", "--until 2025-10-27T18:30:00Z")


def _option(flag: str, value: Optional[str], parse: "Callable[[str], Any]", what: str, example: str) -> Any:
    """A command-line value through the params parser of its kind; one line (exit 2) when it is not one."""
    from ..errors import UsageError

    if value is None:
        return None
    try:
        return parse(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not {what}", hint=f"say e.g. {example}") from None
