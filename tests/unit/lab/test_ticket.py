"""The lab's Jira-shaped ticket stand-in (a named stand-in: no Jira runs here) and the cells' way of
talking to it: ``rb.http`` with ``auth=`` (a secret reference sent as a bearer token, never shown)
and ``files=`` (a multipart upload), and the ticket texts built from the run's ledger."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from cutover_lib import ticket
from cutover_lib.errors import StepFailed
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.config.params import load_environment, parse_overrides
from cutover_lib.engine.steps import Runbook
from stellaops_lab import SERVICES, LabConfig
from stellaops_lab._provision import service_env

REPO = Path(__file__).resolve().parents[3]
COMMENT = "POST {ticket.url}/rest/api/2/issue/{change_ticket}/comment"


def runbook(lab: LabConfig, tmp_path: Path, *overrides: str) -> Runbook:
    token = lab.data_dir / "secrets" / "stellaops-ticket" / "api-token"
    pairs = [f"services.{s}={lab.url(s)}" for s in SERVICES] + [
        f"ticket.url={lab.url('notify')}", f"ticket.token=file:{token}", "change_ticket=CHG-TEST-1"]
    env = load_environment("local", REPO / "params", parse_overrides([*pairs, *overrides]))
    return Runbook(env, RunFolder.create(tmp_path / "executed", "local", f"t{time.monotonic_ns()}"),
                   root=REPO, notebook="test.ipynb")


def read_back(lab: LabConfig, key: str) -> dict:
    token = service_env(lab)["LAB_TICKET_TOKEN"]
    with httpx.Client(timeout=5) as http:
        r = http.get(f"{lab.url('notify')}/rest/api/2/issue/{key}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_the_stand_in_answers_like_jira(lab: LabConfig):
    base, token = lab.url("notify"), service_env(lab)["LAB_TICKET_TOKEN"]
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=5) as http:
        assert http.get(f"{base}/rest/api/2/issue/CHG-X-1").status_code == 401  # no token
        assert http.get(f"{base}/rest/api/2/issue/CHG-X-1", headers={"Authorization": "Bearer wrong"}).status_code == 401
        missing = http.get(f"{base}/rest/api/2/issue/OPS-999", headers=auth)
        assert missing.status_code == 404 and "Issue does not exist" in missing.json()["errorMessages"][0]
        assert http.post(f"{base}/rest/api/2/issue/CHG-X-1/comment", headers=auth, json={"body": ""}).status_code == 400
        files = {"file": ("a.txt", b"hello")}
        assert http.post(f"{base}/rest/api/2/issue/CHG-X-1/attachments", headers=auth, files=files).status_code == 403
        ok = http.post(f"{base}/rest/api/2/issue/CHG-X-1/attachments", files=files,
                       headers={**auth, "X-Atlassian-Token": "no-check"})
        assert ok.status_code == 200 and ok.json()[0]["filename"] == "a.txt"
        made = http.post(f"{base}/rest/api/2/issue", headers=auth, json={"fields": {
            "project": {"key": "INCX"}, "issuetype": {"name": "Incident"}, "summary": "s", "description": "d"}})
        assert made.status_code == 201 and made.json()["key"] == "INCX-1"
        assert http.post(f"{base}/rest/api/2/issue/INCX-1/transitions", headers=auth,
                         json={"transition": {"id": "99"}}).status_code == 400
        assert http.post(f"{base}/rest/api/2/issue/INCX-1/transitions", headers=auth,
                         json={"transition": {"id": "31"}}).status_code == 204
    assert read_back(lab, "INCX-1")["fields"]["status"]["name"] == "Done"


def test_results_with_timestamps_and_screenshots_reach_the_change_ticket(clean_lab: LabConfig, tmp_path: Path):
    rb = runbook(clean_lab, tmp_path)
    rb.http("5.api-health", "GET {services.scanner}/healthz", expect={"status": 200})
    shot = rb.step("5.web-ui", "Web UI", owner="o", expect="a page",
                   action=lambda ctx: str(ctx.artifact("5.web-ui.index.png", b"\x89PNG\r\n\x1a\nfake")))
    assert shot["outcome"] == "passed"
    res = rb.http("5.ticket-results", COMMENT, auth="{ticket.token}", mutating=True, expect={"status": 201},
                  json={"body": ticket.results(rb, "Smoke", ["5.api-health", "5.web-ui", "5.signing"])})
    assert res.outcome == "passed"
    rb.http("5.ticket-screenshots", "POST {ticket.url}/rest/api/2/issue/{change_ticket}/attachments",
            auth="{ticket.token}", headers={"X-Atlassian-Token": "no-check"}, mutating=True, expect={"status": 200},
            files={"file": ticket.artifacts_of(rb, step="5.web-ui", pattern="*.png")})
    issue = read_back(clean_lab, "CHG-TEST-1")
    body = issue["fields"]["comment"]["comments"][-1]["body"]
    started = next(r for r in rb.run.read_ledger() if r.get("step_id") == "5.api-health")["started"]
    assert f"|5.api-health|PASSED|{started}|" in body and "|5.signing|not run|" in body
    assert issue["fields"]["attachment"][-1]["filename"] == "5.web-ui.index.png"
    token = service_env(clean_lab)["LAB_TICKET_TOKEN"]
    for path in rb.run.path.rglob("*"):  # the bearer token is nowhere in the evidence
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path


def test_a_wrong_token_fails_in_one_line_and_a_value_is_refused_unshown(clean_lab: LabConfig, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WRONG_TICKET_TOKEN", "not-the-token")
    rb = runbook(clean_lab, tmp_path, "ticket.token=env:WRONG_TICKET_TOKEN")
    with pytest.raises(StepFailed):
        rb.http("8.ticket-plan", COMMENT, auth="{ticket.token}", json={"body": "x"}, expect={"status": 201})
    assert "HTTP 401" in rb.run.read_ledger()[-1]["message"]
    res = rb.http("8.ticket-plan-2", COMMENT, auth="s3cr3t-literal", json={"body": "x"}, required=False)
    assert res.outcome == "failed" and "must be a secret reference" in res.record["message"]
    assert "s3cr3t-literal" not in res.record["message"]


def test_without_a_ticket_system_the_cells_are_not_applicable(clean_lab: LabConfig, tmp_path: Path):
    rb = runbook(clean_lab, tmp_path, "ticket.system=null")
    res = rb.http("8.ticket-plan", COMMENT, auth="{ticket.token}", json={"body": "x"}, when={"ticket.system": "jira"})
    assert res.outcome == "skipped" and "ticket.system" in res.record["observed"]


def test_an_incident_names_the_failed_steps_and_the_decision(clean_lab: LabConfig, tmp_path: Path):
    rb = runbook(clean_lab, tmp_path)
    rb.http("5.runtime-event", "GET {services.runtime}/no-such-route", expect={"status": 202}, required=False)
    rb.record("decision", decision="rollback", reason="5.runtime-event failed", failed=["5.runtime-event"])
    fields = ticket.incident(rb)
    assert fields["summary"].startswith("Rollback: Stella Ops")
    assert "|5.runtime-event|" in fields["description"] and "5.runtime-event failed" in fields["description"]
    assert "Root cause notes" in fields["description"]


def test_the_report_attached_at_t4h_is_the_real_cutovers_never_a_later_plan(tmp_path: Path):
    import json

    for run_id, dry in (("20260101T000000Z-local-cutover", False), ("20260102T000000Z-local-cutover", True)):
        html = tmp_path / "executed" / "local" / run_id / "html"
        html.mkdir(parents=True)
        (html / "index.html").write_text("<html></html>")
        (html.parent / "manifest.json").write_text(json.dumps({"dry_run": dry}))
    rb = Runbook(load_environment("local", REPO / "params"), RunFolder.create(tmp_path / "x", "local", "t"),
                 root=tmp_path, notebook="test.ipynb")
    assert ticket.report_of(rb, phase="cutover") == [
        ("20260101T000000Z-local-cutover.html", str(tmp_path / "executed/local/20260101T000000Z-local-cutover/html/index.html"))]
    assert ticket.report_of(rb, phase="rollback") == []
