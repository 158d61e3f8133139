"""Interactive step-through in a real kernel: the gate cell shows the ipywidgets form and returns
at once; the next step refuses until the form's callbacks have recorded the approvals; then it
runs.  The decision is shown as plain HTML (no JavaScript needed in the HTML export)."""

from __future__ import annotations

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.notebooks


def run(kc, code: str) -> tuple[str, list[dict]]:
    outputs: list[dict] = []
    reply = kc.execute_interactive(code, timeout=60, output_hook=outputs.append)
    text = "".join(o["content"].get("text", "") for o in outputs if o["msg_type"] == "stream")
    errors = [o["content"] for o in outputs if o["msg_type"] == "error"]
    return (text if reply["content"]["status"] == "ok" else "ERROR " + str(errors)), outputs


def test_widget_callbacks_record_and_the_next_step_runs(project):
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(project))
    try:
        out, _ = run(kc, f"""
from cutover_lib import Runbook, approvals
rb = Runbook.open("stage", "", root={str(project)!r}, notebook="04_preflight.ipynb")
""")
        # the gate cell as JupyterLab runs it (its value is the cell's result): the form shows once,
        # holding the gate's status table; nothing else is shown beside it
        _, outputs = run(kc, 'approvals.gate(rb, "t0")')
        shown = [o for o in outputs if o["msg_type"] in ("display_data", "execute_result")]
        assert [o["msg_type"] for o in shown] == ["display_data"], shown
        assert "application/vnd.jupyter.widget-view+json" in shown[0]["content"]["data"]
        out, _ = run(kc, """
form = approvals.gate(rb, "t0")
print(type(form).__name__, rb.interactive, form.status.value.count("<b>missing</b>"))
""")
        assert out.strip() == "GateForm True 2", out
        out, _ = run(kc, """
try:
    approvals.require(rb, "t0")
except Exception as exc:
    print(type(exc).__name__, exc.hint)
""")
        assert out.startswith("GateNotApproved record it with the approval form in the cell above"), out
        out, _ = run(kc, """
for role, name in (("devops-lead", "Grace Hopper"), ("module-reps", "Linus Scanner")):
    form.fields["name"].value = name
    form.fields["role"].value = role
    form.fields["record"].value = "#launch-bridge"
    form.approve_button.click()
    print(form.status.value.count("<b>approved</b>"))
rec = approvals.require(rb, "t0")
print(rec["outcome"])
""")
        assert out.split() == ["1", "2", "passed"], out  # the table refreshed after each click
        _, outputs = run(kc, "rb.close()")
        html = [o["content"]["data"].get("text/html", "") for o in outputs if o["msg_type"] == "display_data"]
        assert any("Interactive run sealed" in h for h in html)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    runs = list((project / "executed" / "stage").glob("*-stage-interactive"))
    assert len(runs) == 1
    ledger = (runs[0] / "ledger.jsonl").read_text()
    assert '"via":"notebook"' in ledger and '"outcome":"passed"' in ledger
