"""The notebook HTML export (cutover_lib.evidence.report): what nbconvert's exporter would give, offline,
without its BeautifulSoup pass (whose two attributes are added on the template's own markup)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
import pytest

from cutover_lib.evidence import report as _report

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")).decode()


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("rb.sh('5.api-health', 'curl {services.scanner}/healthz')  # <b>not bold</b>")
    code.outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": PNG}),
        nbformat.v4.new_output("display_data", data={
            "text/html": '<div class="card">step <img src="x.png"></div>'}),
        nbformat.v4.new_output("stream", name="stdout", text="plain output\n"),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("## 5 Smoke tests"), code]
    nbformat.write(nb, path)
    return path


@pytest.fixture(autouse=True)
def fresh_exporter(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _report._exporter.cache_clear()
    yield
    _report._exporter.cache_clear()


def test_export_is_accessible_offline_and_escapes_code(tmp_path):
    body = _report.render_notebook_html(str(_notebook(tmp_path / "nb.ipynb")))
    # every image has a text, every input wrapper and output is focusable (as nbconvert's own pass did)
    imgs = re.findall(r"<img\b[^>]*>", body)
    assert len(imgs) == 2 and all(" alt=" in i for i in imgs)
    assert body.count('<div class="jp-Cell-inputWrapper" tabindex="0">') == 2  # markdown + code
    outputs = re.findall(r'<div class="[^"]*\bjp-OutputArea-output\b[^"]*"[^>]*>', body)
    assert len(outputs) == 3 and all('tabindex="0"' in o for o in outputs)
    # the code cell's source is highlighted and escaped (outputs are exported as the notebook holds
    # them: step cards escape what commands printed, tests/unit/test_steps.py)
    assert "&lt;b&gt;not bold&lt;/b&gt;" in body and "<b>not bold</b>" not in body
    # offline: nothing is loaded from a URL
    assert not re.search(r'<(script|link)\b[^>]*(src|href)="https?://', body)


def test_compiled_templates_are_cached_and_reused(tmp_path):
    _report.render_notebook_html(str(_notebook(tmp_path / "nb.ipynb")))
    cached = list((tmp_path / "cache" / "stellaops-cutover" / "jinja").iterdir())
    assert cached, "no compiled template was kept"
    _report._exporter.cache_clear()
    before = {p: p.stat().st_mtime_ns for p in cached}
    _report.render_notebook_html(str(tmp_path / "nb.ipynb"))
    assert {p: p.stat().st_mtime_ns for p in cached} == before  # read, not written again


def test_an_unwritable_cache_costs_time_never_the_export(tmp_path, monkeypatch):
    blocked = tmp_path / "ro"
    blocked.mkdir()
    (blocked / "stellaops-cutover").write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    out = _report.export_notebook_html(_notebook(tmp_path / "nb.ipynb"), tmp_path / "nb.html")
    assert "plain output" in out.read_text()

    (blocked / "stellaops-cutover").unlink()
    (blocked / "stellaops-cutover" / "jinja").mkdir(parents=True)
    (blocked / "stellaops-cutover" / "jinja").chmod(0o500)
    _report._exporter.cache_clear()
    try:
        out = _report.export_notebook_html(tmp_path / "nb.ipynb", tmp_path / "nb2.html")
    finally:
        (blocked / "stellaops-cutover" / "jinja").chmod(0o700)
    assert "plain output" in out.read_text()


def test_the_record_leaves_out_parameters_injected_parameters_and_setup_cells(tmp_path):
    """Issue 14, item 5: an executed notebook's HTML reads as the runbook -- the cells tagged
    parameters, injected-parameters and setup (Runbook.open, rb.close) are not in it."""
    nb = nbformat.v4.new_notebook()
    cells = [("parameters", 'env = "local"  # PARAMS-CELL'), ("injected-parameters", 'env = "prod"  # INJECTED-CELL'),
             ("setup", "rb = Runbook.open(env)  # SETUP-CELL"), (None, 'rb.sh("5.api-health", "GET x")  # STEP-CELL'),
             ("setup", "rb.close()  # CLOSE-CELL")]
    for tag, src in cells:
        cell = nbformat.v4.new_code_cell(src)
        if tag:
            cell.metadata["tags"] = [tag]
        nb.cells.append(cell)
    nbformat.write(nb, tmp_path / "nb.ipynb")
    body = _report.render_notebook_html(str(tmp_path / "nb.ipynb"))
    assert "STEP-CELL" in body
    for hidden in ("PARAMS-CELL", "INJECTED-CELL", "SETUP-CELL", "CLOSE-CELL"):
        assert hidden not in body, hidden


def test_every_committed_notebook_tags_its_setup_and_close_cells():
    """What the record hides is tagged in the notebooks themselves (JupyterLab shows the tags)."""
    for path in sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        setup = [c for c in nb.cells if c.cell_type == "code" and "setup" in c.metadata.get("tags", [])]
        assert len(setup) == 2 and "Runbook.open(" in setup[0].source and setup[1].source.startswith("rb.close()"), \
            path.name


def test_a_step_cells_value_shows_nothing_beside_its_card():
    """Issue 14, item 5: no raw record dict after a step card: a step's record and a Result show
    nothing as a cell's last value (IPython calls _ipython_display_ instead of printing them)."""
    from cutover_lib.engine.result import Result, StepRecord

    rec = StepRecord({"step_id": "5.decision", "outcome": "passed"})
    assert rec["outcome"] == "passed" and isinstance(rec, dict)
    assert rec._ipython_display_() is None and Result("5.api-health")._ipython_display_() is None


def _step(seq: int, sid: str, section: str, outcome: str, started: str, notebook: str = "04_preflight.ipynb"):
    return {"seq": seq, "kind": "step", "step_id": sid, "section": section, "title": sid, "outcome": outcome,
            "started": f"2026-03-02T12:{started}Z", "ended": f"2026-03-02T12:{started}Z", "duration_s": 1.0,
            "notebook": notebook, "message": "boom" if outcome == "failed" else "", "observed": "ok"}


def test_sections_in_run_order_and_a_resumed_runs_attempts_one_after_another(tmp_path):
    """Issue 14, item 1: the gates of Section 8 that T0 runs first come first (not sorted after 4 and
    5); a resume starts a new attempt, and a step in both attempts has a row (and an anchor) in each."""
    from cutover_lib.evidence.evidence import RunFolder

    run = RunFolder.create(tmp_path / "executed", "local", "cutover")
    for rec in (_step(1, "8.gate-plan", "8", "passed", "00:01"), _step(2, "4.1.backup", "4.1", "failed", "00:02"),
                {"kind": "run-resume"}, _step(4, "8.gate-plan", "8", "skipped", "05:01"),
                _step(5, "4.1.backup", "4.1", "passed", "05:02"), _step(6, "5.api-health", "5", "passed", "05:03")):
        run.append(rec)
    body = _report.write_index(run, {"env": "local", "phase": "cutover", "outcome": "passed"}).read_text()
    headings = re.findall(r"<h3[^>]*>([^<]+)</h3>", body)
    assert headings[0] == "Attempt 1" and headings[1:3] == ["Section 8", "Section 4.1"]
    assert headings[3].startswith("Attempt 2: resumed ") and headings[4:] == ["Section 8", "Section 4.1", "Section 5"]
    assert body.count('id="step-4.1.backup"') == 1 and 'id="step-4.1.backup-2"' in body
    assert '<a href="#step-4.1.backup"><code>4.1.backup</code></a>' in body  # the root failure: attempt 1's row


def test_a_failure_that_stopped_the_run_is_its_root_and_the_others_are_named_as_not_blocking(tmp_path):
    """T-30m's shape: a service's health check (``required=False``) fails, then the go/no-go verdict
    over it stops the run -- the check is the root failure, named once on the terminal.  In a run
    that passed, a failed ``required=False`` step is no root failure: it is listed as not blocking."""
    from cutover_lib.engine.progress import closing_summary, note_not_blocking
    from cutover_lib.evidence.evidence import RunFolder

    health = {**_step(1, "2.t-30m.health-web", "2", "failed", "00:01"), "required": False}
    verdict = _step(2, "2.t-30m.go-no-go", "2", "failed", "00:02")
    stopped = closing_summary([health, verdict], {"outcome": "failed"}, None, False)
    assert stopped[1:] == ["failed:   2.t-30m.health-web (2.t-30m.health-web): boom"]
    notify = {**_step(3, "6.notify", "6", "failed", "00:03"), "required": False}
    stopped = closing_summary([health, verdict, notify], {"outcome": "failed"}, None, False)
    assert stopped[1:] == ["failed:   2.t-30m.health-web (2.t-30m.health-web): boom",
                           "failed, not blocking (required=False): 6.notify (6.notify): boom"]
    passed = [_step(1, "6.assess", "6", "passed", "00:01"), notify]
    assert closing_summary(passed, {"outcome": "passed"}, None, False)[1:] == [
        "failed, not blocking (required=False): 6.notify (6.notify): boom"]
    # a run that stopped for another reason (a cell crashed) still names its first failure
    assert closing_summary(passed, {"outcome": "failed"}, None, False)[1:] == ["failed:   6.notify (6.notify): boom"]
    manifest: dict = {}
    assert note_not_blocking(passed, manifest, "rolled back") == \
        "rolled back; 1 step(s) failed without stopping the run: 6.notify"
    assert manifest == {"failed_not_blocking": ["6.notify"]}
    assert note_not_blocking(passed[:1], manifest := {}, "") == "" and manifest == {}

    run = RunFolder.create(tmp_path / "executed", "local", "rollback")
    for rec in passed:
        run.append(rec)
    body = _report.write_index(run, {"env": "local", "phase": "rollback", "outcome": "passed"}).read_text()
    assert "Root failure" not in body
    assert '<td>Failed, not blocking</td><td><span class="o failed">FAILED</span> ' \
           '<a href="#step-6.notify"><code>6.notify</code></a> 6.notify: boom</td>' in body

    run = RunFolder.create(tmp_path / "executed", "local", "t-30m")
    for rec in (health, verdict, notify):
        run.append(rec)
    body = _report.write_index(run, {"env": "local", "phase": "t-30m", "outcome": "failed"}).read_text()
    assert '<td>Root failure</td><td><a href="#step-2.t-30m.health-web">' in body
    not_blocking = body.split("<td>Failed, not blocking</td>")[1].split("</tr>")[0]
    assert "6.notify" in not_blocking and "health-web" not in not_blocking


def test_the_run_picture_draws_notebooks_steps_and_the_t0_deadline_lines():
    from datetime import datetime, timezone

    from cutover_lib.evidence.run_chart import run_timeline_svg

    records = [_step(1, "4.1.backup", "4.1", "passed", "00:01"),
               _step(2, "5.api-health", "5", "failed", "50:00", notebook="07_smoke.ipynb")]
    t0 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
    svg = run_timeline_svg(records, [("T0", t0), ("T+45m deadline", t0.replace(minute=45)),
                                     ("planned (T-30m)", t0.replace(hour=11, minute=30))])
    assert svg.count("<text x='4'") == 2 and ">04_preflight.ipynb<" in svg and ">07_smoke.ipynb<" in svg
    assert "fill='#cf222e'><title>5.api-health failed" in svg
    assert ">T+45m deadline</text>" in svg and ">T0</text>" in svg  # inside the run: lines
    assert "Not in this picture: planned (T-30m) 2026-03-02 11:30 UTC (30m 01s before this run)." in svg
    assert run_timeline_svg([], []) == ""
