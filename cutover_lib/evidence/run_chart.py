"""A run's timeline as a picture for its record (inline SVG, no script): one row per notebook, its
steps as segments coloured by outcome, from the run's start to its end; the slot's planned hour,
T0 and the T+45m smoke deadline as vertical lines where they fall inside the run (and said in words
where they do not)."""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from typing import Any

from ..config.durations import recorded_time, spoken_duration

__all__ = ["run_timeline_svg"]

_COLOURS = {"passed": "#1a7f37", "failed": "#cf222e", "skipped": "#8c959f", "waived": "#9a6700",
            "planned": "#0969da"}


def run_timeline_svg(records: list[dict[str, Any]], marks: list[tuple[str, datetime]]) -> str:
    """``records``: the run's ledger; ``marks``: (label, UTC time) lines to draw -- the slot's planned
    hour, T0, the T+45m deadline.  Empty when the run recorded no step."""
    steps = [r for r in records
             if r.get("kind") == "step" and recorded_time(r.get("started")) and recorded_time(r.get("ended"))]
    if not steps:
        return ""
    start = min(recorded_time(s["started"]) for s in steps)  # type: ignore[type-var]
    end = max(recorded_time(s["ended"]) for s in steps)  # type: ignore[type-var]
    span = max((end - start).total_seconds(), 1.0)
    rows: list[str] = []
    for s in steps:
        name = str(s.get("notebook") or "?")
        if name not in rows:
            rows.append(name)
    width, left, top, row_h = 800, 170, 30, 22

    def x(t: datetime) -> float:
        return left + (t - start).total_seconds() / span * (width - left - 10)

    e = html.escape
    parts, outside = [], []
    for i, name in enumerate(rows):
        y = top + i * row_h
        parts.append(f"<text x='4' y='{y + 14}' font-size='11'>{e(name)}</text>")
        for s in (s for s in steps if str(s.get("notebook") or "?") == name):
            x0, x1 = x(recorded_time(s["started"])), x(recorded_time(s["ended"]))  # type: ignore[arg-type]
            colour = _COLOURS.get(str(s.get("outcome")), "#6e7781")
            parts.append(f"<rect x='{x0:.1f}' y='{y + 3}' width='{max(x1 - x0, 2):.1f}' height='14' fill='{colour}'>"
                         f"<title>{e(str(s['step_id']))} {e(str(s.get('outcome')))} "
                         f"({float(s.get('duration_s') or 0):.1f} s)</title></rect>")
    bottom = top + len(rows) * row_h
    for label, t in marks:
        if start - timedelta(seconds=1) <= t <= end + timedelta(seconds=1):
            parts.append(f"<line x1='{x(t):.1f}' y1='{top - 4}' x2='{x(t):.1f}' y2='{bottom}' stroke='#cf222e' "
                         f"stroke-dasharray='4 3'/><text x='{x(t):.1f}' y='{top - 8}' font-size='10' "
                         f"text-anchor='middle' fill='#cf222e'>{e(label)}</text>")
        else:
            gap = (t - start) if t > end else (start - t)
            outside.append(f"{label} {t:%Y-%m-%d %H:%M} UTC ({spoken_duration(gap)} {'after' if t > end else 'before'} "
                           f"this run)")
    axis = (f"<text x='{left}' y='{bottom + 14}' font-size='10' fill='#57606a'>{start:%H:%M:%S}</text>"
            f"<text x='{width - 10}' y='{bottom + 14}' font-size='10' text-anchor='end' fill='#57606a'>"
            f"{end:%H:%M:%S} UTC ({spoken_duration(end - start)})</text>")
    svg = (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {bottom + 20}' width='100%' role='img' "
           f"aria-label='the run: each notebook and its steps over time' style='max-width:{width}px'>"
           + "".join(parts) + axis + "</svg>")
    return svg + (f"<p class='muted'>Not in this picture: {e('; '.join(outside))}.</p>" if outside else "")
