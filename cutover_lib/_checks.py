"""Sections 3 (health), 4.4 (configuration validation) and 5 (smoke tests) as steps.

Each function is one runbook line: it makes the request, compares what it sees with the
runbook's expected result, and records both.  A failed check names the expected and the
observed result.  Smoke tests are not required individually -- all six run, then
:func:`decision` records *go* or *rollback* and fails the notebook on rollback.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path
from typing import Any

from ._dsse import key_id, payload_sha256, verify_envelope
from ._errors import CheckFailed
from ._params import format_duration
from ._http import wait_until
from ._stella import OIDC_REQUIRED, StellaApi, fresh_event
from ._steps import Runbook, StepContext

__all__ = [
    "decision", "notify_legacy", "oidc_metadata", "scanner_queue", "service_health", "signer_verify_bundle",
    "smoke_api_health", "smoke_attestor_verify", "smoke_runtime_event", "smoke_scan", "smoke_signing",
    "smoke_web_ui",
]

SMOKE_IDS = ("5.api-health", "5.scan-submit", "5.runtime-event", "5.signing", "5.attestor-verify", "5.web-ui")


def _api(rb: Runbook) -> StellaApi:
    api = getattr(rb, "_stella_api", None)
    if api is None:
        api = StellaApi.for_env(rb.env)
        rb._stella_api = api  # type: ignore[attr-defined]
        weakref.finalize(rb, api.close)  # one keep-alive client per run view, closed with it
    return api


def _state(rb: Runbook) -> dict[str, Any]:
    st = getattr(rb, "_smoke_state", None)
    if st is None:
        st = {}
        rb._smoke_state = st  # type: ignore[attr-defined]
    return st


def _read_sample(rb: Runbook, key: str) -> bytes:
    rel = rb.env.samples[key]
    path = rb.path(rel)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckFailed(f"sample file {rel} is missing", hint="restore it: git checkout -- samples/") from None


def _healthy(ctx: StepContext, api: StellaApi, service: str) -> str:
    r = api.http.get(api.url(service, "/healthz"))
    body = r.json() if r.status == 200 or r.text.strip().startswith("{") else {}
    status = body.get("status") if isinstance(body, dict) else None
    ctx.check(r.status == 200 and status == "Healthy",
              f"HTTP {r.status} with status {status!r} from {r.request_line}")
    version = body.get("version")
    return f"HTTP 200, status Healthy{f', version {version}' if version else ''}"


# ----------------------------------------------------------------------------- Section 3 / generic

def service_health(rb: Runbook, service: str, step_id: str, *, wait: bool = True) -> dict[str, Any]:
    """``curl https://<service>/healthz`` -> HTTP 200 and status Healthy (waits up to timeouts.health)."""
    api = _api(rb)
    url = api.url(service, "/healthz")

    def act(ctx: StepContext) -> str:
        if not wait:
            return _healthy(ctx, api, service)
        return wait_until(lambda: _healthy(ctx, api, service), deadline_s=rb.env.timeouts.health.total_seconds(),
                          what=f"{service} health")

    return rb.step(step_id, f"{service.capitalize()} health endpoint", owner="DevOps engineer",
                   expect='HTTP 200 with "status":"Healthy"', command=f"curl {url}", action=act)


# ----------------------------------------------------------------------------- Section 4.4

def oidc_metadata(rb: Runbook) -> dict[str, Any]:
    """4.4: issuer equals the authority base URL, required fields present, jwks reachable with keys."""
    api = _api(rb)
    base = rb.env.services.authority

    def act(ctx: StepContext) -> str:
        r, doc = api.discovery()
        ctx.artifact("4.4.openid-configuration.json", json.dumps(doc, indent=2))
        missing = [f for f in OIDC_REQUIRED if f not in doc]
        ctx.check(not missing, f"discovery lacks {', '.join(missing)}")
        ctx.check(doc["issuer"].rstrip("/") == base, f"issuer {doc['issuer']!r} but the base URL is {base!r}")
        jwks = api.jwks(doc["jwks_uri"])
        kids = [k.get("kid", "?") for k in jwks["keys"]]
        return f"issuer = {base}; {len(OIDC_REQUIRED)} required fields present; jwks has {len(kids)} key(s) " \
               f"({', '.join(kids)[:60]})"

    return rb.step("4.4.oidc-metadata", "Authority issuer metadata", owner="Authority stack",
                   expect="issuer equals the authority base URL; jwks_uri reachable with keys; required fields present",
                   command=f"curl {base}/.well-known/openid-configuration", action=act)


def signer_verify_bundle(rb: Runbook) -> dict[str, Any]:
    """4.4: the signer's DSSE verify endpoint accepts samples/dsse/demo.json."""
    api = _api(rb)

    def act(ctx: StepContext) -> str:
        bundle = json.loads(_read_sample(rb, "dsse"))
        res = api.signer_verify(bundle)
        ctx.check(res.get("ok") is True, f"signer verify answered ok={res.get('ok')!r} ({res.get('reason', '')})")
        return f"ok=true, key {str(res.get('keyid', ''))[:16]}"

    return rb.step("4.4.signer-verify", "Signer DSSE endpoint verifies the demo bundle", owner="Authority stack",
                   expect="verification ok=true for samples/dsse/demo.json",
                   command=f"stellaops-cli signer verify --base-url {rb.env.services.signer} "
                           f"--bundle {rb.env.samples['dsse']}  (POST /api/v1/signer/verify)", action=act)


def scanner_queue(rb: Runbook) -> dict[str, Any]:
    """4.4: scanner queue connectivity (``dotnet StellaOps.Scanner.WebService.dll health queue``)."""
    api = _api(rb)

    def act(ctx: StepContext) -> str:
        r = api.queue_health()
        body = r.json()
        ctx.check(r.status == 200 and body.get("status") == "Healthy",
                  f"HTTP {r.status}, queue {body.get('queue', body.get('status'))!r}")
        return f"queue {body.get('queue', 'connected')}, depth {body.get('depth', '?')}"

    return rb.step("4.4.scanner-queue", "Scanner queue connectivity", owner="Scanner / Queue",
                   expect="health queue returns success",
                   command="docker exec stellaops-scanner-web dotnet StellaOps.Scanner.WebService.dll health queue  "
                           f"(GET {rb.env.services.scanner}/api/v1/queue/health)", action=act)


def notify_legacy(rb: Runbook) -> dict[str, Any]:
    """4.4: Notify (legacy) still reachable while the Notifier migration is pending."""
    api = _api(rb)
    return rb.step("4.4.notify-legacy", "Notify (legacy) still accessible", owner="DevOps engineer",
                   expect='HTTP 200 with "status":"Healthy"', command=f"curl {rb.env.services.notify}/healthz",
                   action=lambda ctx: _healthy(ctx, api, "notify"))


# ----------------------------------------------------------------------------- Section 5

def smoke_api_health(rb: Runbook) -> dict[str, Any]:
    api = _api(rb)
    return rb.step("5.api-health", "Smoke: API health", owner="Scanner / Queue",
                   expect='HTTP 200 with "status":"Healthy"', command=f"curl {rb.env.services.scanner}/healthz",
                   action=lambda ctx: _healthy(ctx, api, "scanner"), required=False)


def _signer_keys(api: StellaApi) -> dict[str, str]:
    key = api.signer_key()
    pem = key["publicKeyPem"]
    return {key.get("keyid") or key_id(pem): pem}


def smoke_scan(rb: Runbook, step_id: str = "5.scan-submit") -> dict[str, Any]:
    api = _api(rb)
    slo = rb.env.slo.scan.total_seconds()

    def act(ctx: StepContext) -> str:
        sbom = _read_sample(rb, "sbom")
        token = None
        ref = rb.env.credentials.get("authority_client_secret")
        if ref is not None:
            token = api.token("stellaops-cutover", ref.resolve())
            ctx.log("obtained a client-credentials token from the authority")
        scan_id = api.submit_scan(sbom, token)
        ctx.log(f"scan {scan_id} submitted")
        status, took = api.wait_scan(scan_id, deadline_s=slo)
        ctx.data.update({"scan_id": scan_id, "scan_seconds": round(took, 2)})
        ctx.check(status == "completed", f"scan {scan_id} still {status!r} after {took:.1f}s (SLO {slo:g}s)")
        report = api.scan_report(scan_id)
        ctx.artifact("5.scan-report.json", json.dumps(report, indent=2))
        env = report.get("dsse")
        ctx.check(isinstance(env, dict), "report carries no DSSE envelope")
        res = verify_envelope(env, _signer_keys(api))
        ctx.check(res.ok, f"report DSSE does not verify against the signer key: {res.reason}")
        return f"scan {scan_id} completed in {took:.1f}s (< {slo:g}s); {report.get('components', '?')} components; " \
               f"report DSSE verified"

    return rb.step(step_id, "Smoke: scan submit", owner="Scanner / Queue",
                   expect=f"scan completes < {format_duration(rb.env.slo.scan)}; report accessible with signed DSSE",
                   command=f"stellaops-cli scan submit --profile {rb.env.tier} --sbom {rb.env.samples['sbom']}  "
                           f"(POST {rb.env.services.scanner}/api/v1/scans)", action=act,
                   required=not step_id.startswith("5."))


def smoke_runtime_event(rb: Runbook) -> dict[str, Any]:
    api = _api(rb)

    def act(ctx: StepContext) -> str:
        event = fresh_event(rb.path(rb.env.samples["runtime_event"]))
        r = api.post_runtime_event(event)
        ctx.check(r.status == 202, f"/runtime/events answered HTTP {r.status}: {r.text[:120]}")
        found = api.find_runtime_event(event["eventId"])
        ctx.check(bool(found), f"event {event['eventId']} accepted but not visible in runtime_events")
        return f"202 Accepted; event {event['eventId']} visible in runtime_events"

    return rb.step("5.runtime-event", "Smoke: runtime event ingest", owner="Scanner / Queue",
                   expect="/runtime/events responds 202 Accepted; record visible in runtime_events",
                   command=f"POST {rb.env.services.runtime}/runtime/events  ({rb.env.samples['runtime_event']})",
                   action=act, required=False)


def smoke_signing(rb: Runbook) -> dict[str, Any]:
    api = _api(rb)

    def act(ctx: StepContext) -> str:
        raw = _read_sample(rb, "dsse")
        try:
            expected = payload_sha256(json.loads(raw))
        except (ValueError, KeyError):
            expected = hashlib.sha256(raw).hexdigest()
        res = api.sign(raw)
        envelope, meta = res.get("envelope"), res.get("signer") or {}
        ctx.check(isinstance(envelope, dict), "no DSSE envelope in the answer")
        ctx.artifact("5.signing-envelope.json", json.dumps(res, indent=2))
        got = payload_sha256(envelope)
        ctx.check(got == expected, f"payload SHA256 {got[:16]}… but the bundle's is {expected[:16]}…")
        missing = [k for k in ("keyid", "algorithm", "signedAt") if not meta.get(k)]
        ctx.check(not missing, f"signer metadata lacks {', '.join(missing)}")
        verified = verify_envelope(envelope, _signer_keys(api))
        ctx.check(verified.ok, f"signature does not verify against the signer's public key: {verified.reason}")
        _state(rb)["envelope"] = envelope
        return f"DSSE payload SHA256 {got[:16]}… matches; signer {meta['keyid'][:12]}… {meta['algorithm']} " \
               f"at {meta['signedAt']}"

    return rb.step("5.signing", "Smoke: signing", owner="Authority stack",
                   expect="returns DSSE with matching SHA256 and signer metadata",
                   command=f"stellaops-cli signer sign --bundle {rb.env.samples['dsse']}  "
                           f"(POST {rb.env.services.signer}/api/v1/signer/sign)", action=act, required=False)


def smoke_attestor_verify(rb: Runbook) -> dict[str, Any]:
    api = _api(rb)

    def act(ctx: StepContext) -> str:
        envelope = _state(rb).get("envelope")
        if envelope is None:
            ctx.log("signing smoke produced no envelope; signing the demo bundle for the attestor")
            envelope = api.sign(_read_sample(rb, "dsse")).get("envelope")
        att = api.attest(envelope)
        res = api.attestor_verify(att)
        ctx.data["uuid"] = att
        ctx.check(res.get("ok") is True, f"verification result ok={res.get('ok')!r} for uuid {att} "
                                         f"({res.get('reason', '')})")
        return f"uuid {att}: ok=true"

    return rb.step("5.attestor-verify", "Smoke: attestor verify", owner="Authority stack",
                   expect="verification result ok=true",
                   command=f"stellaops-cli attestor verify --uuid <uuid>  "
                           f"(POST {rb.env.services.attestor}/api/v1/attestations/<uuid>/verify)",
                   action=act, required=False)


def smoke_web_ui(rb: Runbook) -> dict[str, Any]:
    api = _api(rb)
    budget = rb.env.slo.ui.total_seconds()

    def act(ctx: StepContext) -> str:
        seen = []
        for path, marker in (("/", 'id="dashboard"'), ("/policy", 'id="policy-view"')):
            r = api.http.expect_status(api.http.get(api.url("web", path)), 200)
            ctx.check(r.elapsed_s < budget, f"{path} took {r.elapsed_s:.2f}s (budget {budget:g}s)")
            ctx.check(marker in r.text, f"{path} rendered without {marker}")
            seen.append(f"{path} {r.elapsed_s:.2f}s")
        shot = _screenshot(rb, ctx)
        return f"{', '.join(seen)} (< {budget:g}s); dashboard and policy view present{shot}"

    return rb.step("5.web-ui", "Smoke: web UI", owner="Observability",
                   expect=f"UI loads under {budget:g} seconds; dashboard and policy view render",
                   command=f"GET {rb.env.services.web}/ and /policy", action=act, required=False)


def _screenshot(rb: Runbook, ctx: StepContext) -> str:
    """A headless Chromium screenshot of the dashboard, where Chromium is installed."""
    import shutil
    import subprocess
    import tempfile

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        return ""
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/dashboard.png"
        try:
            subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp}/profile",
                            f"--screenshot={out}", "--window-size=1280,800", rb.env.services.web + "/"],
                           capture_output=True, timeout=60, check=False)
            data = Path(out).read_bytes()
        except (OSError, subprocess.SubprocessError):
            return ""
    ctx.artifact("5.web-ui-dashboard.png", data)
    return "; screenshot kept"


# ----------------------------------------------------------------------------- decision

def decision(rb: Runbook) -> dict[str, Any]:
    """After Section 5: *go* when every smoke test passed, otherwise *rollback* (Section 6)."""
    latest: dict[str, str] = {}
    for rec in rb.run.read_ledger():
        if rec.get("kind") == "step" and rec.get("step_id") in SMOKE_IDS:
            latest[rec["step_id"]] = rec["outcome"]
    failed = [s for s in SMOKE_IDS if latest.get(s) not in ("passed", "skipped", "planned", "waived")]
    verdict = "rollback" if failed else "go"
    reason = ("smoke tests failed: " + ", ".join(failed)) if failed else "all six smoke tests passed"
    rb.record("decision", decision=verdict, reason=reason, failed=failed)

    def act(ctx: StepContext) -> str:
        ctx.check(not failed, reason + " -> trigger rollback (Section 6)")
        return "GO: " + reason

    return rb.step("5.decision", "Go / rollback decision", owner="Cutover lead",
                   expect="every smoke test passed (announce success) — otherwise roll back", action=act)

