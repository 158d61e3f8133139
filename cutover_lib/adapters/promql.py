"""``rb.promql``: the runbook's monitoring questions asked of Prometheus's HTTP API.

The cell names the Prometheus, each series' PromQL and what each must read::

    rb.promql("7.monitoring", "{monitoring.prometheus}",
              queries={"error_rate": "{monitoring.promql.error_rate}", ...},
              expect={"error_rate": "< {monitoring.limits.error_rate}", ...},
              every="{monitoring.interval}", during="{monitoring.duration}")

Each query runs as ``GET <prometheus>/api/v1/query`` (every ``every`` for ``during``, or once);
with ``since`` (``"{t0}"``) the window is ``since`` .. ``since + during``: what of it lies ahead is
watched live, and then the whole window (or, when it ended long ago, the last ``during``) is
reviewed from Prometheus's history (``query_range``), every point against its expectation --
Section 7's "heightened monitoring for 4 hours post cutover", reviewed at T+4h;
each series it returns must meet its expectation: ``"no series"`` (a query that lists what is
red: targets down, alerts firing) or a comparison (``"<= 0.05"``, ``">= 1"``) against every
value.  A query that never returns data fails (a metric name that is not the site's reads as
"no data", never as 0 %).  A watch keeps ``<step>.csv`` (every sample) and ``<step>.png`` (the
series as Prometheus recorded them, ``query_range`` over the watch) and shows the chart.
"""

from __future__ import annotations

import csv
import io
import math
import operator
import re
import time
from collections.abc import Mapping
from datetime import UTC
from typing import TYPE_CHECKING, Any

from ..config.template import lookup, render_text
from ..engine.cellmech import CellMechanics
from ..engine.result import _WHOLE, Result, _title
from ..errors import CheckFailed, ParamsError
from ..evidence.evidence import utc_now

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.steps import StepContext

__all__ = ["PromqlVerbs", "query"]

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}
_EXPECT = re.compile(r"^\s*(<=|<|>=|>|==)\s*([-+0-9.eE]+)\s*$")
Series = list[tuple[dict[str, str], float]]
_MAX_POINTS = 10_000  # per series of one query_range (Prometheus refuses more than 11,000)


def _api(http: Any, base: str, path: str, params: Mapping[str, Any]) -> Any:
    r = http.get(f"{base}{path}", params=dict(params))
    body = r.json() if r.text.strip().startswith("{") else {}
    if r.status != 200 or body.get("status") != "success":
        error = body.get("error") or r.text[:160].replace("\n", " ")
        raise CheckFailed(f"Prometheus {r.request_line} answered HTTP {r.status}: {error}",
                          hint="check the PromQL in params (monitoring.promql) and monitoring.prometheus")
    return body["data"]


def query(http: Any, base: str, promql: str, at: float | None = None) -> Series:
    """An instant query: each series' labels and value (NaN dropped: 0/0 is no data)."""
    data = _api(http, base, "/api/v1/query", {"query": promql, **({"time": at} if at else {})})
    if data.get("resultType") == "scalar":
        return [({}, float(data["result"][1]))]
    out = [(s.get("metric", {}), float(s["value"][1])) for s in data.get("result", [])]
    return [(labels, v) for labels, v in out if not math.isnan(v)]


def query_range(http: Any, base: str, promql: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
    """The series of a range query, summed per timestamp (what the chart draws)."""
    data = _api(http, base, "/api/v1/query_range", {"query": promql, "start": start, "end": end, "step": step})
    points: dict[float, float] = {}
    for s in data.get("result", []):
        for t, v in s.get("values", []):
            if not math.isnan(float(v)):
                points[float(t)] = points.get(float(t), 0.0) + float(v)
    return sorted(points.items())


def _utc(text: str) -> float:
    """A UTC time from params (``{t0}`` renders as ISO 8601) as a POSIX timestamp."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ParamsError([f"since {text!r} is not a UTC time like 2025-10-27T14:00:00Z"]) from None


def _series_name(labels: Mapping[str, str]) -> str:
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    name = labels.get("__name__", "")
    return name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(shown.items())) + "}" if shown else "") or "value"


class PromqlVerbs(CellMechanics):
    """Mixed into :class:`~cutover_lib.Runbook`: the cell-level verb ``promql``."""

    def promql(self, step_id: str, prometheus: str, *, queries: Mapping[str, str], expect: Mapping[str, str],
               every: str | None = None, during: str | None = None, since: str | None = None,
               title: str | None = None, owner: str | None = None, required: bool = True,
               unset_skips: bool = False) -> Result:
        """Ask Prometheus (``prometheus``: a template, ``"{monitoring.prometheus}"``) each query of
        ``queries`` (name -> PromQL or a ``{params.key}`` holding it) and compare with ``expect``
        (name -> ``"no series"`` or ``"<= X"``, X a number or template).  ``during`` and ``every``
        (durations) make it a watch; ``unset_skips`` records the step not applicable when the
        Prometheus is not set in params (instead of failing)."""
        result = Result(step_id)
        ref = _WHOLE.match(prometheus.strip())
        try:
            unset = ref is not None and lookup(self.env, ref.group(1)) is None
        except KeyError:
            unset = True
        try:
            base = "" if unset else render_text(prometheus, self.env).rstrip("/")
            promqls = {name: render_text(q, self.env) for name, q in queries.items()}
            wants = {name: render_text(w, self.env) for name, w in expect.items()}
            for name, want in wants.items():
                if name not in promqls or not (want == "no series" or _EXPECT.match(want)):
                    raise ParamsError([f"expect[{name!r}] = {want!r}: give a query of that name and "
                                       f"'no series' or a comparison like '<= 0.05'"])
            window = self._duration(during, {}) or 0.0
            step = max(self._duration(every, {}) or 60.0, 0.5)
            anchor = _utc(render_text(since, self.env)) if since else None
            review = window if anchor is not None else 0.0  # the length of the window reviewed afterwards
            if anchor is not None:  # watched live: only what of since .. since + during lies ahead
                window = min(window, max(0.0, anchor + window - time.time()))
        except (ParamsError, CheckFailed) as exc:
            return self._failed_step(step_id, title, owner, {"series": dict(expect)}, prometheus, exc,
                                     False, required, result)
        shown = "; ".join(f"{n}: {q}  [{wants.get(n, 'recorded')}]" for n, q in promqls.items())
        spec = ", ".join(f"{n} {w}" for n, w in wants.items()) + (
            f", from {since} for {during} (live while ahead, then reviewed)" if since and during else
            f", every {every} for {during}" if during else "")

        def act(ctx: StepContext) -> str:
            if unset:
                from ..engine.steps import NotApplicable

                msg = f"{prometheus.strip('{}')} is not set in params"
                if unset_skips:
                    raise NotApplicable(msg)
                raise ParamsError([f"{msg}: this step queries Prometheus (set its base URL)"])
            http = self._http_client()
            started, end = time.time(), time.monotonic() + window
            rows: list[dict[str, Any]] = []
            breaches: list[str] = []
            seen: dict[str, bool] = {n: False for n in promqls}
            while True:
                utc = utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")
                for name, q in promqls.items():
                    try:
                        series = query(http, base, q)
                    except CheckFailed as exc:
                        if not window:  # a single question: its failure is the answer
                            raise
                        series, found = [], [f"{utc} {name}: {exc.message}"]  # a watch goes on
                    else:
                        found = [f"{utc} {name} {_series_name(lab)} = {v:g} (expected {wants[name]})"
                                 for lab, v in _breaching(series, wants.get(name))]
                    seen[name] = seen[name] or bool(series)
                    rows += [{"utc": utc, "query": name, "series": _series_name(lab), "value": v} for lab, v in series]
                    breaches += found
                    if window:
                        for line in found:  # as it happens: the bridge and the person at the notebook see it
                            print(f"[{step_id}] {line}", flush=True)
                if time.monotonic() + step > end:
                    break
                time.sleep(step)
            limits = {n: float(m.group(2)) for n, w in wants.items() if (m := _EXPECT.match(w))}
            if review:  # the whole window from Prometheus's history, each point against its limit
                started = time.time() - review  # (the chart shows that window too)
                for name, q in promqls.items():
                    points = query_range(http, base, q, started, time.time(), max(step, review / _MAX_POINTS))
                    seen[name] = seen[name] or bool(points)
                    breaches += [f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t))} {name} = {v:g} "
                                 f"(expected {wants[name]})" for t, v in points
                                 if name in limits and not _OPS[_EXPECT.match(wants[name]).group(1)](v, limits[name])]
            self._keep_watch(ctx, step_id, rows, promqls, base, http, started, max(window, review), step, limits)
            result.json = {"breaches": breaches, "samples": len(rows)}
            silent = [n for n, w in wants.items() if w != "no series" and not seen[n]]
            ctx.check(not silent, "no data from " + ", ".join(f"{n} ({promqls[n]})" for n in silent)
                      + ": the query names no series this Prometheus has")
            more = f" (+{len(breaches) - 5} more)" if len(breaches) > 5 else ""
            ctx.check(not breaches, "; ".join(breaches[:5]) + more)
            worst = {n: max((float(r["value"]) for r in rows if r["query"] == n), default=None) for n in promqls}
            said = f"reviewed {format(review, 'g')}s from Prometheus's history: " if review else \
                f"watched {format(window, 'g')}s: " if window else ""
            return said + ", ".join(
                f"{n} {'none' if v is None else format(v, '.4g')}" for n, v in worst.items()) + " (max)"

        result.record = self.step(step_id, title or _title(step_id), owner=owner or self.owner,
                                  expect=spec, command=f"GET {base or prometheus}/api/v1/query  {shown}", action=act,
                                  required=required)
        return result

    def _keep_watch(self, ctx: "StepContext", step_id: str, rows: list[dict[str, Any]], promqls: Mapping[str, str],
                    base: str, http: Any, started: float, window: float, step: float,
                    limits: Mapping[str, float]) -> None:
        """The samples as CSV; for a watch, the series as Prometheus recorded them, as a chart."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["utc", "query", "series", "value"])
        w.writeheader()
        w.writerows(rows)
        ctx.artifact(f"{step_id}.csv", buf.getvalue())
        if not window:
            return
        resolution = max(1.0, min(step, window / 200), window / _MAX_POINTS)
        curves = {n: query_range(http, base, q, started, time.time(), resolution) for n, q in promqls.items()}
        png = _chart(step_id, curves, limits)
        if png:
            ctx.artifact(f"{step_id}.png", png)
            if getattr(self, "_display", False):
                from IPython.display import Image, display

                display(Image(data=png))


def _breaching(series: Series, want: str | None) -> Series:
    if want is None:
        return []
    if want == "no series":
        return series
    m = _EXPECT.match(want)
    assert m is not None
    op, limit = _OPS[m.group(1)], float(m.group(2))
    return [(lab, v) for lab, v in series if not op(v, limit)]


def _chart(title: str, curves: Mapping[str, list[tuple[float, float]]], limits: Mapping[str, float]) -> bytes | None:
    """One panel per query, its limit as a dashed line, UTC times on the shared axis."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from datetime import datetime

    fig, axes = plt.subplots(len(curves), 1, figsize=(7, 1.6 * len(curves) + 0.8), sharex=True, squeeze=False)
    for ax, (name, points) in zip(axes[:, 0], curves.items()):
        ax.plot([datetime.fromtimestamp(t, UTC) for t, _ in points], [v for _, v in points], marker=".")
        if name in limits:
            ax.axhline(limits[name], color="#cf222e", linestyle="--", linewidth=1, label=f"limit {limits[name]:g}")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_ylabel(name, fontsize=8)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=UTC))
    axes[-1, 0].set_xlabel("UTC")
    fig.suptitle(f"{title}: the series as Prometheus recorded them")
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()
