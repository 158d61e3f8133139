"""``rb.invite``: the meeting a cell writes out (Section 7's retrospective) becomes an iCalendar
invite in the evidence, read back here with icalendar's own parser."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar

from cutover_lib.config.params import load_environment
from cutover_lib.engine.steps import Runbook
from cutover_lib.errors import ParamsError, StepFailed
from cutover_lib.evidence.evidence import RunFolder

REPO = Path(__file__).resolve().parents[2]
PEOPLE = ["devops-guild@example.org", "product-owner@example.org"]


def _runbook(tmp_path: Path, **kw: Any) -> Runbook:
    env = load_environment("local", REPO / "params")
    return Runbook(env, RunFolder.create(tmp_path / "executed", "local", "t"), root=REPO, notebook="nb.ipynb", **kw)


def _step(rb: Runbook) -> dict[str, Any]:
    (step,) = [r for r in rb.run.read_ledger() if r.get("kind") == "step"]
    return step


def test_the_invite_holds_the_cells_summary_attendees_and_hour(tmp_path: Path) -> None:
    rb = _runbook(tmp_path)
    before = datetime.now(timezone.utc)
    rb.invite("7.retrospective", "Retrospective: {release} launch ({change_ticket})", attendees=PEOPLE,
              at="24h", within="48h", length="90m", description="Lessons for {name}.", owner="Cutover lead")
    after = datetime.now(timezone.utc)
    step = _step(rb)
    assert step["outcome"] == "passed" and step["mutating"] is False and step["owner"] == "Cutover lead"
    ics = rb.run.path / "artifacts" / "7.retrospective.ics"
    (event,) = Calendar.from_ical(ics.read_bytes()).walk("VEVENT")
    assert str(event["summary"]) == f"Retrospective: {rb.env.release} launch ({rb.env.change_ticket})"
    assert [str(a) for a in event["attendee"]] == [f"MAILTO:{p}" for p in PEOPLE]
    start, end = event.decoded("dtstart"), event.decoded("dtend")
    assert (start.minute, start.second) == (0, 0) and end - start == timedelta(minutes=90)
    assert before + timedelta(hours=24) <= start <= after + timedelta(hours=25)  # the next full hour
    assert "Lessons for local." in str(event["description"]) and rb.run.run_id in str(event["description"])
    assert step["data"]["invite"]["attendees"] == PEOPLE
    assert "to 2 attendee(s): devops-guild@example.org, product-owner@example.org" in step["observed"]


def test_an_invite_later_than_its_window_or_for_nobody_fails(tmp_path: Path) -> None:
    rb = _runbook(tmp_path / "late")
    with pytest.raises(StepFailed, match="later than 48h"):
        rb.invite("7.retrospective", "Retrospective", attendees=PEOPLE, at="3d", within="48h")
    assert _step(rb)["outcome"] == "failed"
    assert (rb.run.path / "artifacts" / "7.retrospective.ics").is_file()  # kept: what was wrong is visible
    nobody = _runbook(tmp_path / "nobody")
    with pytest.raises(StepFailed, match="reach nobody"):
        nobody.invite("7.retrospective", "Retrospective", attendees=[])


def test_a_bad_template_or_duration_fails_the_step_as_a_params_error(tmp_path: Path) -> None:
    rb = _runbook(tmp_path / "key")
    with pytest.raises(ParamsError, match="no_such_key"):
        rb.invite("7.retrospective", "Retrospective {no_such_key}", attendees=PEOPLE)
    assert _step(rb)["outcome"] == "failed"
    rb = _runbook(tmp_path / "dur")
    with pytest.raises(ParamsError, match='rb.invite 7.retrospective: expected a duration like 15m, got "two days"'):
        rb.invite("7.retrospective", "Retrospective", attendees=PEOPLE, within="two days")
    rb = _runbook(tmp_path / "who")
    with pytest.raises(ParamsError, match="attendee 'the product owner' is not an e-mail address"):
        rb.invite("7.retrospective", "Retrospective", attendees=[*PEOPLE, "the product owner"])
    assert _step(rb)["outcome"] == "failed" and not (rb.run.path / "artifacts" / "7.retrospective.ics").exists()


def test_a_secret_reference_never_goes_into_an_invite(tmp_path: Path) -> None:
    rb = _runbook(tmp_path)
    with pytest.raises(ParamsError, match="secret reference; a secret never goes into a command line, URL or message"):
        rb.invite("7.retrospective", "Retrospective", attendees=["{ticket.token}"])
    step = _step(rb)
    assert step["outcome"] == "failed" and not (rb.run.path / "artifacts" / "7.retrospective.ics").exists()
