"""The lab's Prometheus (Debian's real ``prometheus``, not a stand-in) and ``rb.promql`` against it:
Section 7's monitoring and the T-30m "dashboards green" with the default PromQL of params."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from cutover_lib.errors import StepFailed
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.config.params import load_environment, parse_overrides
from cutover_lib.engine.steps import Runbook
from lab_helpers import wait_healthy
from stellaops_lab import LabConfig, SERVICES, clear_faults, set_fault

REPO = Path(__file__).resolve().parents[3]
WATCH = dict(queries={"latency_p95_seconds": "{monitoring.promql.latency_p95_seconds}",
                      "error_rate": "{monitoring.promql.error_rate}",
                      "queue_depth": "{monitoring.promql.queue_depth}"},
             expect={"latency_p95_seconds": "<= {monitoring.limits.latency_p95_seconds}",
                     "error_rate": "<= {monitoring.limits.error_rate}",
                     "queue_depth": "<= {monitoring.limits.queue_depth}"})
GREEN = dict(queries={"targets_down": "{monitoring.promql.targets_down}",
                      "alerts_firing": "{monitoring.promql.alerts_firing}",
                      "targets_up": "{monitoring.promql.targets_up}"},
             expect={"targets_down": "no series", "alerts_firing": "no series", "targets_up": ">= 1"})


def runbook(lab: LabConfig, tmp_path: Path, *overrides: str) -> Runbook:
    pairs = [f"services.{s}={lab.url(s)}" for s in SERVICES] + [f"monitoring.prometheus={lab.prometheus_url}"]
    env = load_environment("local", REPO / "params", parse_overrides([*pairs, *overrides]))
    run = RunFolder.create(tmp_path / "executed", "local", f"t{time.monotonic_ns()}")
    return Runbook(env, run, root=REPO, notebook="test.ipynb")


def test_the_lab_prometheus_scrapes_every_service_with_stella_ops_metric_names(lab: LabConfig):
    with httpx.Client(timeout=5) as http:
        # scraped within the last 10 s: one scrape can miss its 1 s timeout on a loaded machine
        up = http.get(f"{lab.prometheus_url}/api/v1/query",
                      params={"query": "max_over_time(up[10s])"}).json()["data"]["result"]
        assert {s["metric"]["job"]: s["value"][1] for s in up} == {s: "1" for s in SERVICES}
        names = http.get(f"{lab.prometheus_url}/api/v1/label/__name__/values").json()["data"]
    assert {"http_server_request_duration_seconds_bucket", "stellaops_scanner_queue_depth"} <= set(names)
    assert not [n for n in names if n.startswith("lab_http")]


def test_section_7_watch_passes_on_a_healthy_lab_and_keeps_samples_and_chart(clean_lab: LabConfig, tmp_path: Path):
    rb = runbook(clean_lab, tmp_path)
    with httpx.Client(timeout=5) as http:  # traffic for the 15 s rate window (a lab just started has none)
        for service in SERVICES:
            http.get(f"{clean_lab.url(service)}/healthz")
    time.sleep(2.5)  # scraped (every second)
    res = rb.promql("7.monitoring", "{monitoring.prometheus}", **WATCH, every="1s", during="3s")
    rec = res.record
    assert rec["outcome"] == "passed", rec
    assert "latency_p95_seconds" in rec["observed"] and "error_rate 0" in rec["observed"]
    assert rec["command"].startswith(f"GET {clean_lab.prometheus_url}/api/v1/query")
    assert "http_server_request_duration_seconds_bucket[15s]" in rec["command"]  # the PromQL, rendered, on record
    art = rb.run.path / "artifacts"
    rows = (art / "7.monitoring.csv").read_text().splitlines()
    assert rows[0] == "utc,query,series,value" and len(rows) >= 1 + 3 * 3
    assert (art / "7.monitoring.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_5xx_burst_breaches_the_error_rate_and_names_it(clean_lab: LabConfig, tmp_path: Path):
    set_fault(clean_lab, "runtime", "ingest_error")
    with httpx.Client(timeout=5) as http:
        for burst in (2, 60):  # a counter's first scrape is its start: rate() sees what comes after
            for _ in range(burst):
                assert http.post(f"{clean_lab.url('runtime')}/runtime/events", json={"eventId": "x"}).status_code == 500
            time.sleep(2.5)  # two scrapes
    rb = runbook(clean_lab, tmp_path)
    with pytest.raises(StepFailed):
        rb.promql("7.monitoring", "{monitoring.prometheus}", **WATCH, every="1s", during="1s")
    msg = rb.run.read_ledger()[-1]["message"]
    assert "error_rate value = " in msg and "(expected <= 0.05)" in msg, msg


def test_a_metric_the_site_does_not_have_is_no_data_never_zero(clean_lab: LabConfig, tmp_path: Path):
    rb = runbook(clean_lab, tmp_path, "monitoring.promql.error_rate=sum(rate(http_errors_total[1m]))")
    with pytest.raises(StepFailed):
        rb.promql("7.monitoring", "{monitoring.prometheus}", **WATCH)
    msg = rb.run.read_ledger()[-1]["message"]
    assert "no data from error_rate (sum(rate(http_errors_total[1m])))" in msg, msg


def test_bad_promql_and_an_unreachable_prometheus_are_one_clear_line(clean_lab: LabConfig, tmp_path: Path,
                                                                    closed_port: int):
    rb = runbook(clean_lab, tmp_path, "monitoring.promql.queue_depth=sum(")
    with pytest.raises(StepFailed):
        rb.promql("7.monitoring", "{monitoring.prometheus}", **WATCH)
    assert "answered HTTP 400" in rb.run.read_ledger()[-1]["message"]
    rb = runbook(clean_lab, tmp_path, f"monitoring.prometheus=http://127.0.0.1:{closed_port}")
    with pytest.raises(StepFailed):
        rb.promql("7.monitoring", "{monitoring.prometheus}", **WATCH)
    assert "connection refused" in rb.run.read_ledger()[-1]["message"]


def test_dashboards_green_names_each_target_that_is_down(clean_lab: LabConfig, tmp_path: Path):
    rb = runbook(clean_lab, tmp_path)
    assert rb.promql("2.t-30m.dashboards", "{monitoring.prometheus}", **GREEN).outcome == "passed"
    set_fault(clean_lab, "notify", "down")
    try:
        time.sleep(2.5)
        res = rb.promql("2.t-30m.dashboards", "{monitoring.prometheus}", **GREEN, required=False)
        assert res.outcome == "failed"
        assert 'targets_down up{instance="127.0.0.1:%d",job="notify"} = 0' % clean_lab.ports["notify"] \
            in res.record["message"]
    finally:
        clear_faults(clean_lab)
        with httpx.Client(timeout=5) as http:
            wait_healthy(http, clean_lab)


def test_without_a_prometheus_the_dashboards_step_is_not_applicable_and_section_7_is_a_params_error(
        clean_lab: LabConfig, tmp_path: Path):
    rb = runbook(clean_lab, tmp_path, "monitoring.prometheus=null")
    res = rb.promql("2.t-30m.dashboards", "{monitoring.prometheus}", **GREEN, unset_skips=True)
    assert res.outcome == "skipped" and "monitoring.prometheus is not set" in res.record["observed"]
    with pytest.raises(Exception) as info:
        rb.promql("7.monitoring", "{monitoring.prometheus}", **WATCH)
    assert "monitoring.prometheus is not set in params" in str(info.value)


def test_section_7_reviews_the_window_since_t0_from_history_and_names_each_breach_with_its_time(
        clean_lab: LabConfig, tmp_path: Path):
    """At T+4h the 4 hours since T0 are behind: the cell reviews them from Prometheus's history
    (query_range), every point against its limit -- not 4 more hours of watching."""
    from datetime import datetime, timedelta, timezone

    with httpx.Client(timeout=5) as http:  # traffic for the rate window
        for service in SERVICES:
            http.get(f"{clean_lab.url(service)}/healthz")
    time.sleep(2.5)
    t0 = (datetime.now(timezone.utc) - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # (the 4 h reviewed hold this module's earlier fault drills: their 5xx may exceed the error limit)
    rb = runbook(clean_lab, tmp_path, f"t0={t0}", "monitoring.duration=4h", "monitoring.limits.error_rate=1")
    began = time.monotonic()
    res = rb.promql("7.monitoring", "{monitoring.prometheus}", **WATCH, every="1s", during="{monitoring.duration}",
                    since="{t0}")
    assert time.monotonic() - began < 30  # reviewed, not watched for 4 h
    assert res.record["outcome"] == "passed", res.record
    assert res.record["observed"].startswith("reviewed 14400s from Prometheus's history: latency_p95_seconds ")
    assert (rb.run.path / "artifacts" / "7.monitoring.png").read_bytes()[:4] == b"\x89PNG"
    # a limit the lab's queue depth (0) breaks at every point: each named with its time
    strict = runbook(clean_lab, tmp_path, f"t0={t0}", "monitoring.duration=4h", "monitoring.limits.error_rate=1",
                     "monitoring.limits.queue_depth=-1")
    res = strict.promql("7.monitoring", "{monitoring.prometheus}", **WATCH, every="1s", during="{monitoring.duration}",
                        since="{t0}", required=False)
    assert res.record["outcome"] == "failed"
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ queue_depth = 0 \(expected <= -1\.0\)", res.record["message"])
