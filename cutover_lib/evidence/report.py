"""HTML for the evidence record: nbconvert exports of the executed notebooks and the run's
``html/index.html`` (outcome, timeline planned vs actual, approvals, every step).

Everything renders offline: no script, style or font is loaded from a URL.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..config.secrets import mask
from .evidence import RunFolder, atomic_write

__all__ = ["HtmlExports", "export_notebook_html", "failed_not_blocking", "latest_steps", "not_blocking_text",
           "render_notebook_html", "root_failure", "write_index"]

_TEMPLATES = Path(__file__).parent / "templates"
#: cells the HTML of an executed notebook leaves out (mechanics, not the runbook)
HIDDEN_TAGS = ("parameters", "injected-parameters", "setup")


@lru_cache(maxsize=1)
def _exporter() -> Any:
    """One exporter per process (building one loads nbconvert; its compiled templates are
    kept in the user's cache folder, see :func:`_template_cache`)."""
    from nbconvert import HTMLExporter
    from nbconvert.exporters.templateexporter import TemplateExporter
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

    class OfflineExporter(HTMLExporter):  # type: ignore[misc]
        """nbconvert's HTML exporter without its closing BeautifulSoup pass, which parsed every
        export again (the inlined JupyterLab CSS included) only to add ``tabindex`` to the cell
        wrappers and ``alt`` to images: about half of an export's time.  Those attributes are
        added here on the template's own markup (:func:`_accessible`)."""

        def from_notebook_node(self, nb: Any, resources: Any = None, **kw: Any) -> Any:
            lang = nb.metadata.get("language_info", {})
            lexer = lang.get("pygments_lexer", lang.get("name", None))
            self.register_filter("highlight_code",
                                 self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self)))
            resources = self._init_resources(resources)
            self.register_filter("filter_data_type", WidgetsDataTypeFilter(
                notebook_metadata=self._nb_metadata, parent=self, resources=resources))
            body, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
            return _accessible(body), resources

    from traitlets.config import Config

    # the record reads as the runbook: the parameters (the run's manifest and ledger hold them), the
    # injected parameters and the setup / close cells (tag "setup") are left out of the HTML
    hidden = Config({"TagRemovePreprocessor": {"enabled": True, "remove_cell_tags": list(HIDDEN_TAGS)}})
    exporter = OfflineExporter(template_name="cutover_offline", extra_template_basedirs=[str(_TEMPLATES)],
                               config=hidden)
    cache = _template_cache()
    if cache is not None:
        exporter.environment.bytecode_cache = cache
    return exporter


_IMG_WITHOUT_ALT = re.compile(r"<img\b(?![^>]*\balt=)")
_OUTPUT_DIV = re.compile(r'(<div class="[^"]*\bjp-OutputArea-output\b[^"]*")')


def _accessible(body: str) -> str:
    """What nbconvert's HTML exporter adds after rendering: focusable inputs and outputs, and
    a text for every image that has none."""
    body = body.replace('<div class="jp-Cell-inputWrapper">', '<div class="jp-Cell-inputWrapper" tabindex="0">')
    body = _OUTPUT_DIV.sub(r'\1 tabindex="0"', body)
    return _IMG_WITHOUT_ALT.sub('<img alt="No description has been provided for this image"', body)


def _template_cache() -> Any:
    """Jinja's compiled nbconvert templates, kept between runs in
    ``$XDG_CACHE_HOME/stellaops-cutover/jinja`` (about 0.1 s a process); none when that
    folder cannot be made (a read-only home): the templates are then compiled each time."""
    import os

    from jinja2 import FileSystemBytecodeCache

    class Cache(FileSystemBytecodeCache):  # type: ignore[misc]
        def dump_bytecode(self, bucket: Any) -> None:
            try:
                super().dump_bytecode(bucket)
            except OSError:  # a full or read-only cache folder costs time, never the record
                pass

    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stellaops-cutover" / "jinja"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return Cache(str(folder))


def warm_exporter() -> None:
    """Load nbconvert and compile the templates now (the export thread starts with this)."""
    _exporter()


def render_notebook_html(ipynb: str) -> str:
    """nbconvert's HTML of one executed notebook (JupyterLab look, offline template), unmasked."""
    import nbformat

    nb = nbformat.read(ipynb, as_version=4)
    body, _ = _exporter().from_notebook_node(nb)
    return str(body)


def export_notebook_html(ipynb: Path, out: Path) -> Path:
    """Write the HTML of one executed notebook to ``out`` (masked, atomically)."""
    atomic_write(out, mask(render_notebook_html(str(ipynb))))
    return out


class HtmlExports:
    """The run's notebook exports, each made in a background thread while the next notebook runs.

    :meth:`warm` loads nbconvert and compiles its templates (about half a second) in that
    thread; the runner calls it once papermill is loaded and the kernel has booted, so the
    three do not compete for the interpreter lock and the cores at start.  (A worker process
    was measured too: spawning a second interpreter that loads nbconvert from scratch made a
    lab plan about 0.6 s slower on 2 cores.)  ``wait()`` before the index and the seal.
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._threads = ThreadPoolExecutor(1, "cutover-html")
        self._pending: list[Any] = []

    def __enter__(self) -> "HtmlExports":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def warm(self) -> None:
        self._pending.append(self._threads.submit(warm_exporter))

    def submit(self, ipynb: Path, out: Path, on_error: Any) -> None:
        def job() -> None:
            try:
                export_notebook_html(ipynb, out)
            except Exception as exc:  # noqa: BLE001 - a failed export must not lose the run
                on_error(exc)

        self._pending.append(self._threads.submit(job))

    def wait(self) -> None:
        from concurrent.futures import wait

        wait(self._pending)
        self._pending.clear()

    def close(self) -> None:
        self.wait()
        self._threads.shutdown()


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1f2328;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:28px}
.pictures{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}.pictures figure{margin:0;max-width:100%}
.pictures img{max-width:560px;width:100%;border:1px solid #d0d7de}figcaption{font-size:12px;color:#57606a}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border:1px solid #d0d7de;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}.o{font-weight:bold;border-radius:4px;padding:1px 6px;color:#fff}
.passed{background:#1a7f37}.failed{background:#cf222e}.skipped{background:#6e7781}.planned{background:#0969da}
.waived{background:#9a6700}.blocked{background:#cf222e}.rolled-back{background:#bc4c00}.running{background:#6e7781}
.rollback-pending{background:#9a6700}.rollback-failed{background:#cf222e}.interrupted{background:#6e7781}
.breach{color:#cf222e;font-weight:bold}code{font-size:12px;white-space:pre-wrap}.muted{color:#57606a}
td{overflow-wrap:anywhere}.o,th,.pictures img{-webkit-print-color-adjust:exact;print-color-adjust:exact}
@page{size:A4;margin:12mm}
@media print{body{margin:0;max-width:none;font-size:11px}table{font-size:9px}code{font-size:9px}
h2{break-before:page}h2:first-of-type{break-before:auto}tr,figure,h3{break-inside:avoid}h3{break-after:avoid}
.pictures img{max-width:100%}a{color:inherit;text-decoration:none}}
"""


def latest_steps(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each step's last record (a resumed attempt's word wins), in the order steps first ran."""
    return {r["step_id"]: r for r in records if r.get("kind") == "step"}


def failed_not_blocking(records: list[dict[str, Any]], besides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The steps whose last record failed without stopping the run (``required=False``), other than
    ``besides`` (a root failure, named on its own): a run that passed with one of these must not
    read as a clean pass."""
    skip = besides["step_id"] if besides else None
    return [r for r in latest_steps(records).values()
            if r["outcome"] == "failed" and r.get("required") is False and r["step_id"] != skip]


def not_blocking_text(ids: list[str]) -> str:
    """``1 failed, not blocking: 6.notify`` -- how the change page and the bridge name them."""
    return f"{len(ids)} failed, not blocking: {', '.join(ids)}" if ids else ""


def root_failure(steps: list[dict[str, Any]], outcome: str) -> dict[str, Any] | None:
    """The first step that failed -- what went wrong -- unless the run passed (or was a plan) and
    every step that failed was ``required=False``: then nothing stopped it."""
    failed = [r for r in steps if r["outcome"] == "failed"]
    stopped = outcome not in ("passed", "planned") or any(r.get("required") is not False for r in failed)
    return failed[0] if failed and stopped else None


def _badge(outcome: str) -> str:
    return f'<span class="o {html.escape(outcome)}">{html.escape(outcome.upper())}</span>'


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{f'<tr>{head}</tr>' if any(headers) else ''}{body}</table>"


def _anchors(steps: list[dict[str, Any]]) -> dict[Any, str]:
    """Ledger seq -> the row's anchor, unique in the page (``step-<id>``, then ``step-<id>-2`` ...)."""
    seen: dict[str, int] = {}
    out: dict[Any, str] = {}
    for s in steps:
        n = seen[s["step_id"]] = seen.get(s["step_id"], 0) + 1
        out[s.get("seq")] = f"step-{s['step_id']}" + (f"-{n}" if n > 1 else "")
    return out


def _sections(run: RunFolder, by_section: dict[str, list[dict[str, Any]]], anchors: dict[Any, str]) -> list[str]:
    """Each section's table of steps (and its pictures), in the order the run reached it."""
    e = html.escape
    out = []
    for sec, mine in by_section.items():
        rows = []
        for s in mine:
            detail = s.get("message") or s.get("observed") or ""
            rows.append([
                f"<code id=\"{e(anchors.get(s.get('seq'), 'step-' + s['step_id']))}\">{e(s['step_id'])}</code>",
                e(s["title"]), e(str(s.get("owner", ""))), _badge(s["outcome"]),
                e(s.get("started", "")[11:19]), f"{s.get('duration_s', 0):.2f}s",
                f"<code>{e(s.get('command') or '')}</code>", e(str(s.get("expect", ""))), e(detail),
                " ".join(f'<a href="../{e(a)}">{e(Path(a).name)}</a>' for a in s.get("artifacts", [])),
            ])
        out.append(f"<h3>Section {e(sec)}</h3>" + _table(
            ["Step", "Title", "Owner", "Outcome", "Start", "Took", "Command / request", "Expected",
             "Observed", "Artifacts"], rows) + _pictures(run, mine))
    return out


def write_index(run: RunFolder, manifest: dict[str, Any], extra_sections: list[tuple[str, str]] | None = None) -> Path:
    """Write ``html/index.html``: the run summary, extra sections (timeline, approvals,
    rehearsal log; already-escaped HTML) and the table of every step by section."""
    e = html.escape
    records = run.read_ledger()
    steps = [r for r in records if r.get("kind") == "step"]
    outcome = manifest.get("outcome", "running")
    counts: dict[str, int] = {}
    for s in steps:
        counts[s["outcome"]] = counts.get(s["outcome"], 0) + 1
    anchors = _anchors(steps)  # step-<id>; a step again in a later attempt: step-<id>-<n>

    def link(r: dict[str, Any]) -> str:
        return (f'<a href="#{e(anchors.get(r.get("seq"), "step-" + r["step_id"]))}">'
                f'<code>{e(r["step_id"])}</code></a>')

    root = root_failure(steps, outcome)
    not_blocking = failed_not_blocking(records, besides=root)
    not_run = [r for r in steps if r["outcome"] in ("skipped", "waived")]  # each with its reason, up front
    summary = _table(["", ""], [
        ["Run", f"<code>{e(run.run_id)}</code>"],
        ["Environment / phase", f"{e(str(manifest.get('env')))} / {e(str(manifest.get('phase')))}"],
        ["Outcome", _badge(outcome) + (f" {e(manifest.get('reason', ''))}" if manifest.get("reason") else "")],
        *([["Root failure", f'{link(root)} '
                            f'{e(root["title"])}: {e(root.get("message") or "")}']] if root else []),
        *([["Failed, not blocking", "<br>".join(
            f'{_badge("failed")} {link(r)} {e(r["title"])}: {e(r.get("message") or "")}'
            for r in not_blocking)]] if not_blocking else []),
        *([["Skipped / waived", "<br>".join(
            f'{_badge(r["outcome"])} {link(r)} '
            f'{e(str(r.get("observed") or ""))}' for r in not_run)]] if not_run else []),
        ["Release", e(str(manifest.get("release", "")))],
        ["Operator", e(str(manifest.get("operator", "")))],
        ["Started / ended (UTC)", f"{e(str(manifest.get('started', '')))} / {e(str(manifest.get('ended', '')))}"],
        ["Steps", ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"],
        ["Dry run", "yes (plan)" if manifest.get("dry_run") else "no"],
        ["Runbook commit / params sha256", f"<code>{e(str(manifest.get('git_commit')))}</code> / "
                                           f"<code>{e(str(manifest.get('params_sha256', ''))[:16])}…</code>"],
        ["Notebooks", " · ".join(f'<a href="{e(Path(n).stem)}.html">{e(Path(n).name)}</a>'
                                 for n in manifest.get("notebooks", []))],
    ])
    # sections in the order the run reached them; a resumed run's attempts one after another
    attempts: list[tuple[str, list[dict[str, Any]]]] = [("", [])]
    for r in records:
        if r.get("kind") == "run-resume":
            attempts.append((f"Attempt {len(attempts) + 1}: resumed {str(r.get('ts', ''))[:19]}Z", []))
        elif r.get("kind") == "step":
            attempts[-1][1].append(r)
    step_html = []
    for heading, mine in attempts if len(attempts) > 1 else attempts[:1]:
        if len(attempts) > 1:
            step_html.append(f"<h3 class='attempt'>{e(heading or 'Attempt 1')}</h3>")
        by_section: dict[str, list[dict[str, Any]]] = {}
        for s in mine:
            by_section.setdefault(str(s.get("section", "?")), []).append(s)
        step_html += _sections(run, by_section, anchors)
    extra = "".join(f"<h2>{e(title)}</h2>{body}" for title, body in (extra_sections or []))
    doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
           f"<title>Cutover run {e(run.run_id)}</title><style>{_CSS}</style></head><body>"
           f"<h1>Stella Ops launch cutover — {e(run.run_id)}</h1>{summary}{extra}"
           f"<h2>Steps</h2>{''.join(step_html) or '<p class=muted>No steps recorded.</p>'}"
           f"<p class='muted'>Evidence folder: {e(str(run.path))}. Check it with "
           f"<code>cutover verify {e(str(run.path))}</code>.</p></body></html>")
    out = run.path / "html" / "index.html"
    atomic_write(out, mask(doc))
    return out


_PICTURE_MAX = 2_000_000  # bytes: a larger picture stays a link (the record opens fast, prints whole)


def _pictures(run: RunFolder, steps: list[dict[str, Any]]) -> str:
    """The PNG artifacts of these steps (web UI screenshots, monitoring charts) on the page itself,
    as data URIs: the record is one offline file set, and a printed report keeps them."""
    import base64

    figures = []
    for s in steps:
        for a in s.get("artifacts", []):
            path = run.path / a
            if not a.endswith(".png") or not path.is_file() or path.stat().st_size > _PICTURE_MAX:
                continue
            data = base64.b64encode(path.read_bytes()).decode()
            figures.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(Path(a).name)}'>"
                           f"<figcaption><code>{html.escape(s['step_id'])}</code> {html.escape(Path(a).name)}"
                           f"</figcaption></figure>")
    return f"<div class='pictures'>{''.join(figures)}</div>" if figures else ""


def index_sections(run: RunFolder, env: Any, root: Path) -> list[tuple[str, str]]:
    """The extra sections of ``index.html``: timeline planned vs actual, approvals, decisions."""
    from datetime import datetime

    from .run_chart import run_timeline_svg
    from .timeline import actual_times, schedule

    e = html.escape
    records = run.read_ledger()
    steps = [r for r in records if r.get("kind") == "step"]
    slot = next((r for r in records if r.get("kind") == "slot"), None)
    actual = actual_times(steps, env.slo.smoke_deadline, planned=bool(run.read_manifest().get("dry_run")), t0=env.t0,
                          slot=slot)
    rows = []
    for item in schedule(env.t0):
        act = actual.get(item["label"])
        shown = act["actual"].strftime("%Y-%m-%d %H:%M:%SZ") if act else "—"
        note = act["note"] if act else ""
        cls = " class='breach'" if act and act["breach"] else ""
        rows.append([e(item["label"]), e(item["planned"].strftime("%Y-%m-%d %H:%M Z")), e(shown),
                     f"<span{cls}>{e(note)}</span>", e(item["activity"]), e(item["owner"])])
    marks: dict[datetime, str] = {}  # the lines of the picture: the slot's hour; T0 and the deadline at T0
    if slot and slot.get("planned"):
        marks[datetime.fromisoformat(slot["planned"])] = f"planned ({slot['slot']})"
    if slot and slot.get("slot") in ("T0", "T+45m"):
        marks.setdefault(env.t0, "T0")
        marks[env.t0 + env.slo.smoke_deadline] = f"T+{int(env.slo.smoke_deadline.total_seconds() // 60)}m deadline"
    sections = [("Timeline (Section 2): planned vs actual",
                 _table(["When", "Planned (UTC)", "Actual (UTC)", "Deadline", "Activity", "Owner"], rows)
                 + run_timeline_svg(records, [(label, t) for t, label in marks.items()]))]
    approvals = [r for r in records if r.get("kind") in ("approval", "waiver", "gate")]
    if approvals:
        sections.append(("Approvals relied on (Section 8)", _table(
            ["Gate", "Kind", "Role", "Name", "When (UTC)", "Record", "Comment"],
            [[e(str(a.get("gate"))), e(a["kind"]), e(str(a.get("role", ""))), e(str(a.get("name", ""))),
              e(str(a.get("at", a.get("ts", "")))), e(str(a.get("record", ""))), e(str(a.get("comment", "")))]
             for a in approvals])))
    decisions = [r for r in records if r.get("kind") == "decision"]
    if decisions:
        sections.append(("Go / rollback decision", _table(
            ["When", "Decision", "Why"],
            [[e(d["ts"]), _badge({"go": "passed", "rollback": "failed"}.get(d.get("decision", ""), "planned"))
              + " " + e(d["decision"]),
              e(str(d.get("reason", "")))] for d in decisions])))
    return sections
