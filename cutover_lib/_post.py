"""Section 7: post-cutover monitoring, audit trails, the retrospective invite, docs follow-up."""

from __future__ import annotations

import csv
import io
import re
import time
import uuid
from datetime import timedelta
from typing import Any

from ._stella import api_for as _api
from ._errors import CheckFailed
from ._evidence import utc_now
from ._steps import Runbook, StepContext

__all__ = ["docs_follow_up", "monitor", "retrospective_invite"]

_SERVICES = ("authority", "scanner", "signer", "attestor", "notify", "web", "runtime")


def _metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+([0-9.eE+-]+)", line)
            if m:
                total += float(m.group(2))
    return total


def _sample(rb: Runbook) -> dict[str, Any]:
    """One sample: max /healthz latency, the request and error counters summed over every service's
    metrics (names from params), the queue depth from the queue query."""
    from ._template import render_text

    api = _api(rb)
    mon = rb.env.monitoring
    row: dict[str, Any] = {"utc": utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")}
    latencies, requests, errors = [], 0.0, 0.0
    for s in _SERVICES:
        try:
            r = api.http.get(api.url(s, "/healthz"))
            latencies.append(r.elapsed_s)
            m = api.http.get(api.url(s, mon.metrics_path))
            if m.status == 200:
                requests += _metric_sum(m.text, mon.requests_metric)
                errors += _metric_sum(m.text, mon.errors_metric)
        except CheckFailed:
            errors += 1
            requests += 1
    row["queue_depth"] = -1  # (not sampled: monitoring.queue_query unset, or no answer)
    if mon.queue_query:
        try:
            method, _, url = render_text(mon.queue_query, rb.env).partition(" ")
            q = api.http.request(method, url).json()
            row["queue_depth"] = q.get(mon.queue_depth_field, -1) if isinstance(q, dict) else -1
        except CheckFailed:
            pass
    row["latency_ms_max"] = round(max(latencies) * 1000, 1) if latencies else -1
    row["requests"] = requests
    row["errors"] = errors
    return row


def monitor(rb: Runbook, *, sleep: Any = time.sleep) -> dict[str, Any]:
    """7.monitoring: heightened monitoring for ``monitoring.duration`` (4 h in prod): latency, error
    rate and queue depth sampled every ``monitoring.interval`` into a CSV and a plot."""
    dur = rb.env.monitoring.duration.total_seconds()
    every = max(rb.env.monitoring.interval.total_seconds(), 0.5)

    def act(ctx: StepContext) -> str:
        samples = []
        end = time.monotonic() + dur
        while True:
            samples.append(_sample(rb))
            if time.monotonic() + every > end:
                break
            sleep(every)
        prev = None
        for s in samples:
            d_req = s["requests"] - (prev["requests"] if prev else 0)
            d_err = s["errors"] - (prev["errors"] if prev else 0)
            s["error_rate"] = round(d_err / d_req, 4) if prev and d_req > 0 else 0.0
            prev = s
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["utc", "latency_ms_max", "error_rate", "queue_depth", "requests", "errors"])
        w.writeheader()
        w.writerows(samples)
        ctx.artifact("7.monitoring.csv", buf.getvalue())
        png = _plot(samples)
        if png:
            ctx.artifact("7.monitoring.png", png)
            _show_png(rb, png)
        worst = max(s["latency_ms_max"] for s in samples)
        worst_err = max(s["error_rate"] for s in samples)
        ctx.check(all(s["latency_ms_max"] >= 0 for s in samples), "a service stopped answering during monitoring")
        ctx.check(worst_err < 0.05, f"error rate reached {worst_err:.1%}")
        return f"{len(samples)} samples over {dur:g}s: max latency {worst:.0f} ms, max error rate {worst_err:.1%}, " \
               f"queue depth ≤ {max(s['queue_depth'] for s in samples)}"

    return rb.step("7.monitoring", "Heightened monitoring: latency, error rate, queue depth", owner="Observability",
                   expect=f"services answer for {rb.env.monitoring.duration}; error rate below 5%", action=act)


def _plot(samples: list[dict[str, Any]]) -> bytes | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    x = list(range(len(samples)))
    fig, axes = plt.subplots(3, 1, figsize=(7, 5), sharex=True)
    for ax, key, label in zip(axes, ("latency_ms_max", "error_rate", "queue_depth"),
                              ("max latency (ms)", "error rate", "queue depth")):
        ax.plot(x, [s[key] for s in samples], marker="o")
        ax.set_ylabel(label, fontsize=8)
    axes[-1].set_xlabel("sample")
    fig.suptitle("Post-cutover monitoring (Section 7)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _show_png(rb: Runbook, png: bytes) -> None:
    if rb._display:
        from IPython.display import Image, display

        display(Image(data=png))


def retrospective_invite(rb: Runbook) -> dict[str, Any]:
    """7.retrospective: an .ics invite within 48 h for DevOps, module guilds and the product owner."""
    def act(ctx: StepContext) -> str:
        from icalendar import Calendar, Event, vCalAddress

        start = (utc_now() + timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
        cal = Calendar()
        cal.add("prodid", "-//stellaops-cutover//retrospective//EN")
        cal.add("version", "2.0")
        ev = Event()
        ev.add("uid", f"{uuid.uuid4()}@stellaops-cutover")
        ev.add("summary", f"Retrospective: Stella Ops {rb.env.release} launch ({rb.env.change_ticket})")
        ev.add("dtstart", start)
        ev.add("dtend", start + timedelta(hours=1))
        ev.add("dtstamp", utc_now())
        ev.add("description", f"Launch cutover retrospective within 48 hours (runbook Section 7). Evidence: "
                              f"{rb.run.run_id}. Attendees: DevOps, module guilds, product owner.")
        for who in ("devops-guild", "authority-guild", "scanner-guild", "runtime-guild", "telemetry-guild",
                    "product-owner"):
            ev.add("attendee", vCalAddress(f"MAILTO:{who}@stella-ops.internal"))
        cal.add_component(ev)
        data = cal.to_ical()
        ctx.artifact("7.retrospective.ics", data)
        hours = (start - utc_now()).total_seconds() / 3600
        ctx.check(hours <= 48, f"scheduled {hours:.0f} h out")
        return f"invite for {start:%Y-%m-%d %H:%M} UTC ({hours:.0f} h from now) with 6 attendee groups"

    return rb.step("7.retrospective", "Schedule the retrospective within 48 hours", owner="Cutover lead",
                   expect="an .ics invite within 48 h including DevOps, module guilds and product owner", action=act)


def docs_follow_up(rb: Runbook) -> dict[str, Any]:
    """7.docs: gaps and follow-ups for docs/ops/launch-readiness.md, from every run's deviations."""
    def act(ctx: StepContext) -> str:
        from ._rehearsal import rehearsal_log_rows

        rows = rehearsal_log_rows(rb.root / "executed")
        gaps = [r for r in rows if r["outcome"] != "passed"]
        lines = ["# Follow-ups for docs/ops/launch-readiness.md", "",
                 f"Release {rb.env.release}, change {rb.env.change_ticket}. Update the runbook with actual timings "
                 "and lessons learned (Section 8).", ""]
        lines += [f"- {r['date']} {r['exercised']}: {r['outcome']} — {r['follow_up']}" for r in gaps] or \
                 ["- no new gaps found in the recorded runs"]
        ctx.artifact("7.launch-readiness-followups.md", "\n".join(lines) + "\n")
        return f"{len(gaps)} run(s) with gaps listed for docs/ops/launch-readiness.md"

    return rb.step("7.docs", "Docs follow-up reminder (docs/ops/launch-readiness.md)", owner="DevOps Guild",
                   expect="new gaps and follow-ups listed for the readiness doc", action=act, required=False)
