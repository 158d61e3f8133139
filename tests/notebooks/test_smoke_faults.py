"""Section 4.4 and 5, row by row: passes on a healthy lab, fails under the matching lab fault with
a message naming the expected and the observed result."""

from __future__ import annotations

import pytest

from cutover_lib import checks
from cutover_lib._errors import StepFailed
from cutover_lib._evidence import RunFolder
from cutover_lib._params import load_environment, parse_overrides
from cutover_lib._steps import Runbook
from cutover_lib.lab import set_fault
from nb_helpers import lab_config

pytestmark = pytest.mark.lab

# step function, step id, (service, fault, value), expected text, observed text
ROWS = [
    (checks.smoke_api_health, "5.api-health", ("scanner", "unhealthy", True),
     'expected HTTP 200 with "status":"Healthy"', "observed HTTP 503 with status 'Unhealthy'"),
    (checks.smoke_scan, "5.scan-submit", ("scanner", "scan_stuck", True),
     "expected scan completes < 5s", "still 'running' after"),
    (checks.smoke_runtime_event, "5.runtime-event", ("runtime", "ingest_error", True),
     "expected /runtime/events responds 202 Accepted", "observed /runtime/events answered HTTP 500"),
    (checks.smoke_signing, "5.signing", ("signer", "bad_signature", True),
     "expected returns DSSE with matching SHA256 and signer metadata", "observed signature does not verify"),
    (checks.smoke_attestor_verify, "5.attestor-verify", ("signer", "bad_signature", True),
     "expected verification result ok=true", "observed verification result ok=False"),
    (checks.smoke_web_ui, "5.web-ui", ("web", "slow", 2300),
     "expected UI loads under 2 seconds", "observed / took 2."),
    (checks.oidc_metadata, "4.4.oidc-metadata", ("authority", "wrong_issuer", True),
     "expected issuer equals the authority base URL", "observed issuer 'https://authority.wrong-issuer.invalid'"),
    (checks.scanner_queue, "4.4.scanner-queue", ("scanner", "queue_down", True),
     "expected health queue returns success", "observed HTTP 503, queue 'disconnected'"),
    (checks.notify_legacy, "4.4.notify-legacy", ("notify", "down", True),
     'expected HTTP 200 with "status":"Healthy"', "connection refused"),
    (checks.signer_verify_bundle, "4.4.signer-verify", ("signer", "unhealthy", True), None, None),
]


def runbook(root, tmp_path):
    env = load_environment("local", root / "params", parse_overrides(["slo.scan=5s"]))
    run = RunFolder.create(tmp_path / "executed", "local", "smoke")
    return Runbook(env, run, root=root, notebook="07_smoke.ipynb")


@pytest.mark.parametrize("fn,step_id,fault,expected,observed", ROWS, ids=[r[1] + "-" + r[2][1] for r in ROWS])
def test_row_passes_when_healthy_and_fails_under_its_fault(clean_faults, tmp_path, fn, step_id, fault, expected,
                                                           observed):
    root = clean_faults
    rec = fn(runbook(root, tmp_path))
    assert rec["step_id"] == step_id and rec["outcome"] == "passed", rec
    if expected is None:  # the signer's verify endpoint does not depend on health; nothing to break here
        return
    service, name, value = fault
    set_fault(lab_config(root), service, name, value)
    if name == "down":
        import time

        time.sleep(0.6)  # the service closes its listener and open connections within 0.2 s
    rb = runbook(root, tmp_path)
    try:
        rec = fn(rb)
    except StepFailed:
        rec = rb.run.read_ledger()[-1]
    assert rec["outcome"] == "failed"
    assert expected in rec["message"], rec["message"]
    assert observed in rec["message"], rec["message"]


def test_decision_is_rollback_when_any_smoke_test_failed(clean_faults, tmp_path):
    root = clean_faults
    set_fault(lab_config(root), "runtime", "ingest_error", True)
    rb = runbook(root, tmp_path)
    for fn in (checks.smoke_api_health, checks.smoke_runtime_event):
        fn(rb)
    with pytest.raises(StepFailed, match="smoke tests failed: .*5.runtime-event"):
        checks.decision(rb)
    decision = [r for r in rb.run.read_ledger() if r["kind"] == "decision"][-1]
    assert decision["decision"] == "rollback" and "5.runtime-event" in decision["failed"]
