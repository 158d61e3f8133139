"""The change page: ``executed/<env>/index.html`` -- every run of the environment's change (the
Section 9 rehearsal log as a page), and Section 2 as a picture: each slot's planned hour against
when its newest run of this release started and how long it took.

Written after each run is sealed, from the run folders' manifests and the ``slot`` record at the
head of each ledger; it is a view, not evidence (each run's own sealed ``html/index.html`` is),
so it is rewritten whole each time.  Inline SVG, no script: it renders offline and prints.
"""

from __future__ import annotations

import html
import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.durations import recorded_time
from ..config.secrets import mask
from .evidence import atomic_write
from .report import _CSS, _badge, _table, not_blocking_text

if TYPE_CHECKING:
    from ..config.models import Environment

__all__ = ["timeline_svg", "write_change_page"]

_SPAN = 60.0  # minutes either side of a slot's hour the picture shows (beyond: an arrow and the figure)
_COLOURS = {"passed": "#1a7f37", "failed": "#cf222e", "planned": "#0969da", "blocked": "#cf222e",
            "rolled-back": "#bc4c00", "rollback-failed": "#cf222e"}


def _slot_record(path: Path) -> dict[str, Any] | None:
    """The ``slot`` record a run starts its ledger with (read from the head only)."""
    try:
        with open(path / "ledger.jsonl", encoding="utf-8") as f:
            for _, line in zip(range(4), f):
                rec = json.loads(line)
                if rec.get("kind") == "slot":
                    return rec
    except (OSError, ValueError):
        return None
    return None


def _runs(folder: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(folder.glob("*T*Z-*"), reverse=True) if folder.is_dir() else []:
        try:
            m = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(m, dict):
            out.append({"path": path, "manifest": m, "slot": _slot_record(path)})
    return out


def _took(m: dict[str, Any]) -> float:
    """Seconds from a run's start to its end, over every attempt (``duration_s`` is the last one's)."""
    start, end = recorded_time(m.get("started")), recorded_time(m.get("ended"))
    return (end - start).total_seconds() if start and end else float(m.get("duration_s") or 0)


def _off(minutes: float) -> str:
    m = abs(minutes)
    size = f"{m / 1440:.0f}d" if m >= 2880 else f"{m / 60:.1f}h" if m >= 120 else f"{m:.0f}m"
    return "on the hour" if m < 0.5 else f"{size} {'early' if minutes < 0 else 'late'}"


def timeline_svg(rows: list[dict[str, Any]], early: timedelta, late: timedelta) -> str:
    """One row per slot: its hour (the line at 0), the on-time band (-early .. +late), and its newest
    run -- a bar from its start to its end, off the hour by the scale in minutes, in the outcome's colour."""
    width, left, right, row_h, top = 800, 120, 170, 26, 26
    plot = width - left - right

    def x(minutes: float) -> float:
        return left + (max(-_SPAN, min(_SPAN, minutes)) + _SPAN) / (2 * _SPAN) * plot

    e = html.escape
    parts = [f"<rect x='{x(-early.total_seconds() / 60):.1f}' y='{top - 6}' "
             f"width='{x(late.total_seconds() / 60) - x(-early.total_seconds() / 60):.1f}' "
             f"height='{len(rows) * row_h + 6}' fill='#dafbe1'/>"]
    for tick in (-60, -30, 0, 30, 60):
        parts.append(f"<line x1='{x(tick):.1f}' y1='{top - 6}' x2='{x(tick):.1f}' y2='{top + len(rows) * row_h}' "
                     f"stroke='{'#1f2328' if tick == 0 else '#d0d7de'}' stroke-width='{1.5 if tick == 0 else 1}'/>"
                     f"<text x='{x(tick):.1f}' y='{top - 10}' font-size='10' text-anchor='middle' fill='#57606a'>"
                     f"{'planned' if tick == 0 else f'{tick:+d}m'}</text>")
    for i, row in enumerate(rows):
        y = top + i * row_h + row_h / 2
        parts.append(f"<text x='4' y='{y + 4:.1f}' font-size='12' font-weight='bold'>{e(row['label'])}</text>"
                     f"<text x='52' y='{y + 4:.1f}' font-size='10' fill='#57606a'>{e(row['planned'])}</text>")
        if row.get("start") is None:
            parts.append(f"<text x='{left + plot + 6}' y='{y + 4:.1f}' font-size='11' fill='#57606a'>not run</text>")
            continue
        x0, x1 = x(row["start"]), x(row["start"] + max(row["duration"], 0.5))
        colour = _COLOURS.get(row["outcome"], "#6e7781")
        parts.append(f"<rect x='{x0:.1f}' y='{y - 7:.1f}' width='{max(x1 - x0, 3):.1f}' height='14' rx='3' "
                     f"fill='{colour}'><title>{e(row['title'])}</title></rect>")
        if abs(row["start"]) > _SPAN:  # off the picture: the arrow says which way
            ax = left if row["start"] < 0 else left + plot
            parts.append(f"<text x='{ax + (4 if row['start'] < 0 else -12):.1f}' y='{y + 4:.1f}' font-size='12' "
                         f"fill='{colour}'>{'◀' if row['start'] < 0 else '▶'}</text>")
        parts.append(f"<text x='{left + plot + 6}' y='{y + 4:.1f}' font-size='11'>{e(row['outcome'])}, "
                     f"{e(_off(row['start']))}</text>")
    height = top + len(rows) * row_h + 8
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='100%' role='img' "
            f"aria-label='Section 2: each slot planned against its newest run' style='max-width:{width}px'>"
            + "".join(parts) + "</svg>")


def write_change_page(root: Path, env: "Environment") -> Path | str:
    """Write ``executed/<env>/index.html`` and return its path -- or, since it is a view and the
    runs' own records are already sealed, one line saying why it could not be written."""
    try:
        return _write(root, env)
    except Exception as exc:  # noqa: BLE001 - a read-only disk, a broken phases.yaml: the run stands
        return f"the change page executed/{env.name}/index.html was not updated ({type(exc).__name__}: {exc})"


def _write(root: Path, env: "Environment") -> Path:
    from ..engine.slots import slot_table

    folder = root / "executed" / env.name
    runs = _runs(folder)
    e = html.escape
    rows, slots = [], slot_table(root, env)
    for slot in slots:
        newest = next((r for r in runs if r["slot"]
                       and slot.label in (r["slot"].get("slot"), *r["slot"].get("covers", []))
                       and r["manifest"].get("release") == env.release and not r["manifest"].get("dry_run")), None)
        row: dict[str, Any] = {"label": slot.label, "planned": f"{slot.planned:%d %H:%M}", "start": None}
        if newest is not None:
            m = newest["manifest"]
            started = recorded_time(m.get("started")) or slot.planned
            row.update(start=(started - slot.planned).total_seconds() / 60, outcome=m.get("outcome", "running"),
                       duration=_took(m) / 60,
                       title=f"{newest['path'].name}: {m.get('outcome')} ({m.get('duration_s', '?')} s) "
                             f"{not_blocking_text(m.get('failed_not_blocking') or [])}".rstrip())
        rows.append(row)
    table = []
    for r in runs:
        m, slot = r["manifest"], r["slot"] or {}
        link = f"<a href='{e(r['path'].name)}/html/index.html'><code>{e(r['path'].name)}</code></a>"
        off = slot.get("off_by_s")
        when = ("" if off is None else _off(off / 60)) + (" · --at-any-time" if slot.get("at_any_time") else "")
        table.append([link, e(str(m.get("phase", ""))), e(str(slot.get("slot") or "")),
                      e(str(slot.get("planned", ""))[:16].replace("T", " ")),
                      e(str(m.get("started", ""))[:19].replace("T", " ")),
                      e(when), f"{_badge(str(m.get('outcome', 'running')))} "  # never a clean pass
                               f"{e(not_blocking_text(m.get('failed_not_blocking') or []))}".rstrip(),
                      e(f"{_took(m):.0f} s" if m.get("ended") else ""),
                      e(str(m.get("release", ""))) + (" (plan)" if m.get("dry_run") else "")])
    doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Change {e(env.change_ticket)} on "
           f"{e(env.name)}</title><style>{_CSS}</style></head><body>"
           f"<h1>Change {e(env.change_ticket)}: release {e(env.release)} on {e(env.name)}</h1>"
           f"<p>T0 {env.t0:%Y-%m-%d %H:%M} UTC. Each run's own record is sealed in its folder "
           f"(<code>cutover verify executed/{e(env.name)}/RUN</code>); this page is a view of them.</p>"
           f"<h2>Section 2: planned vs actual, slot by slot</h2>"
           f"{timeline_svg(rows, env.timeline.early, env.timeline.late)}"
           f"<p class='muted'>Green band: on time ({-env.timeline.early.total_seconds() / 60:+.0f}m .. "
           f"{env.timeline.late.total_seconds() / 60:+.0f}m); a bar is the newest run of release "
           f"{e(env.release)} for the slot, from its start for its duration.</p>"
           f"<h2>Every run (Section 9 rehearsal log)</h2>"
           + _table(["Run", "Phase", "Slot", "Planned (UTC)", "Started (UTC)", "Off the hour", "Outcome", "Took",
                     "Release"], table)
           + "</body></html>")
    out = folder / "index.html"
    atomic_write(out, mask(doc))
    return out
