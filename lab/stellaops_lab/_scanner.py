"""Lab scanner: CycloneDX intake, timed scans, signed reports, queue health.

A named stand-in for the Stella Ops Scanner WebService. A scan is ``queued`` for the first
tenth of its duration, ``running`` until the duration has passed since submission, then
``completed`` (no background worker: the state follows from the submission time, so it
survives restarts). The duration comes from ``?scan_seconds=`` on submit, else the
process default (``--scan-seconds`` / ``LAB_SCAN_SECONDS``). Under ``scanner.scan_stuck``
no scan gets past ``running``.

The report's findings are a deterministic function of the components: a few real
advisories matched by package name and version, plus ``LAB-`` findings derived from a
hash of each purl, so the same SBOM always gives the same report. The report body (all
fields except ``dsse`` and ``signer``, as canonical JSON: sorted keys, no whitespace) is
signed by the lab signer over HTTP; its ``payloadType`` is
``application/vnd.stellaops.scan-report+json``.

``GET /api/v1/queue/health`` is the lab's answer to
``dotnet StellaOps.Scanner.WebService.dll health queue``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ._web_base import LabHandler, ServiceContext, utc_now

__all__ = ["REPORT_PAYLOAD_TYPE", "canonical_json", "findings_for", "handlers", "validate_sbom"]

REPORT_PAYLOAD_TYPE = "application/vnd.stellaops.scan-report+json"

#: (package name, vulnerable versions, advisory id, severity, title)
_ADVISORIES: tuple[tuple[str, frozenset[str], str, str, str], ...] = (
    ("log4j-core", frozenset({"2.14.0", "2.14.1"}), "CVE-2021-44228", "critical", "Log4Shell JNDI lookup RCE"),
    ("lodash", frozenset({"4.17.19", "4.17.20"}), "CVE-2021-23337", "high", "Command injection via template"),
    ("openssl", frozenset({"3.0.6", "3.0.7"}), "CVE-2023-0286", "high", "X.400 address type confusion"),
    ("jackson-databind", frozenset({"2.13.2"}), "CVE-2022-42003", "high", "Deep wrapper array nesting DoS"),
    ("requests", frozenset({"2.31.0"}), "CVE-2024-35195", "medium", "Session verify=False persists"),
)
_SEVERITIES = ("low", "medium", "high", "critical")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def validate_sbom(doc: Any) -> str | None:
    """Return why ``doc`` is not an acceptable CycloneDX SBOM, or None if it is."""
    if not isinstance(doc, dict):
        return "SBOM must be a JSON object"
    if doc.get("bomFormat") != "CycloneDX":
        return 'bomFormat must be "CycloneDX"'
    if not isinstance(doc.get("specVersion"), str) or not doc["specVersion"]:
        return "specVersion is required"
    components = doc.get("components")
    if not isinstance(components, list):
        return "components must be a list"
    for index, comp in enumerate(components):
        if not isinstance(comp, dict) or not isinstance(comp.get("name"), str):
            return f"components[{index}] needs a name"
    return None


def findings_for(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deterministic findings for a component list (see the module docstring)."""
    findings: list[dict[str, Any]] = []
    for comp in components:
        name = comp["name"]
        version = str(comp.get("version", ""))
        purl = comp.get("purl") or f"pkg:generic/{name}@{version}"
        for pkg, versions, advisory, severity, title in _ADVISORIES:
            if name == pkg and version in versions:
                findings.append(
                    {"id": advisory, "severity": severity, "title": title, "purl": purl,
                     "component": name, "version": version, "source": "lab-advisories"}
                )
        digest = hashlib.sha256(purl.encode()).digest()
        if digest[0] < 48:  # about one component in five gets a lab finding
            findings.append(
                {"id": f"LAB-{digest[1:4].hex().upper()}", "severity": _SEVERITIES[digest[4] % 4],
                 "title": f"Lab synthetic finding for {name}", "purl": purl,
                 "component": name, "version": version, "source": "lab-synthetic"}
            )
    findings.sort(key=lambda f: (_SEVERITIES.index(f["severity"]) * -1, f["id"], f["purl"]))
    return findings


def _state(ctx: ServiceContext, row: Any, now: float) -> str:
    if row["report"] is not None:
        return "completed"
    elapsed = now - row["submitted_at"]
    duration = row["scan_seconds"]
    if elapsed < duration * 0.1:
        return "queued"
    if elapsed < duration or ctx.fault("scan_stuck"):
        return "running"
    return "completed"


def _record_event(ctx: ServiceContext, scan_id: str, event: str) -> None:
    ctx.db.execute(
        "INSERT OR IGNORE INTO scan_events (scan_id, event, at) VALUES (?,?,?)",
        (scan_id, event, time.time()),
    )


class ScanSubmitHandler(LabHandler):
    def post(self) -> None:
        if self.ctx.fault("queue_down"):
            self.send_json({"error": "queue_unavailable", "reason": "scan queue disconnected"}, 503)
            return
        doc = self.json_body()
        problem = validate_sbom(doc)
        if problem:
            self.send_json({"error": "invalid_sbom", "reason": problem}, 400)
            return
        try:
            seconds = float(self.get_query_argument("scan_seconds", str(self.ctx.scan_seconds)))
        except ValueError:
            self.send_json({"error": "invalid_request", "reason": "scan_seconds must be a number"}, 400)
            return
        scan_id = str(uuid.uuid4())
        now = time.time()
        self.ctx.db.execute(
            "INSERT INTO scans (id, submitted_at, scan_seconds, sbom, sbom_sha256, components) "
            "VALUES (?,?,?,?,?,?)",
            (scan_id, now, max(seconds, 0.0), self.request.body.decode("utf-8"),
             hashlib.sha256(self.request.body).hexdigest(), len(doc["components"])),
        )
        _record_event(self.ctx, scan_id, "submitted")
        self.set_header("Location", f"/api/v1/scans/{scan_id}")
        self.send_json({"id": scan_id, "status": "queued"}, 202)


def _load(ctx: ServiceContext, scan_id: str) -> Any:
    return ctx.db.execute("SELECT * FROM scans WHERE id = ?", (scan_id,)).fetchone()


class ScanStatusHandler(LabHandler):
    def get(self, scan_id: str) -> None:
        row = _load(self.ctx, scan_id)
        if row is None:
            self.send_json({"error": "not_found", "id": scan_id}, 404)
            return
        state = _state(self.ctx, row, time.time())
        body = {
            "id": scan_id,
            "status": state,
            "components": row["components"],
            "sbomSha256": row["sbom_sha256"],
            "submittedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["submitted_at"])),
            "scanSeconds": row["scan_seconds"],
        }
        if state == "completed":
            body["report"] = f"/api/v1/scans/{scan_id}/report"
        self.send_json(body)


async def _sign_report(ctx: ServiceContext, payload: bytes) -> dict[str, Any]:
    request_body = json.dumps(
        {"payloadType": REPORT_PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode()}
    )
    response = await AsyncHTTPClient().fetch(
        f"{ctx.signer_url}/api/v1/signer/sign",
        method="POST",
        body=request_body,
        headers={"Content-Type": "application/json"},
        connect_timeout=2.0,
        request_timeout=10.0,
    )
    signed: dict[str, Any] = json.loads(response.body)
    return signed


class ScanReportHandler(LabHandler):
    async def get(self, scan_id: str) -> None:
        row = _load(self.ctx, scan_id)
        if row is None:
            self.send_json({"error": "not_found", "id": scan_id}, 404)
            return
        if row["report"] is None:
            state = _state(self.ctx, row, time.time())
            if state != "completed":
                self.send_json({"error": "not_ready", "id": scan_id, "status": state}, 409)
                return
            locks: dict[str, asyncio.Lock] = self.ctx.cache.setdefault("report_locks", {})
            async with locks.setdefault(scan_id, asyncio.Lock()):
                row = _load(self.ctx, scan_id)
                if row["report"] is None:
                    try:
                        await self._build(row)
                    except (HTTPClientError, OSError, ValueError) as exc:
                        self.send_json(
                            {"error": "signer_unavailable", "id": scan_id, "reason": str(exc)}, 502
                        )
                        return
                    row = _load(self.ctx, scan_id)
        self.send_json(json.loads(row["report"]))

    async def _build(self, row: Any) -> None:
        sbom = json.loads(row["sbom"])
        findings = findings_for(sbom["components"])
        summary = {s: sum(1 for f in findings if f["severity"] == s) for s in _SEVERITIES}
        body = {
            "id": row["id"],
            "status": "completed",
            "sbomSha256": row["sbom_sha256"],
            "components": len(sbom["components"]),
            "findings": findings,
            "summary": summary,
            "completedAt": utc_now(),
        }
        payload = canonical_json(body)
        signed = await _sign_report(self.ctx, payload)
        report = dict(body, dsse=signed["envelope"], signer=signed["signer"])
        self.ctx.db.execute(
            "UPDATE scans SET report = ?, completed_at = ? WHERE id = ? AND report IS NULL",
            (json.dumps(report), time.time(), row["id"]),
        )
        _record_event(self.ctx, row["id"], "completed")


def _depth(ctx: ServiceContext) -> int:
    rows = ctx.db.execute("SELECT * FROM scans WHERE report IS NULL").fetchall()
    now = time.time()
    return sum(1 for r in rows if _state(ctx, r, now) != "completed")


class QueueHealthHandler(LabHandler):
    def get(self) -> None:
        if self.ctx.fault("queue_down"):
            self.send_json({"status": "Unhealthy", "queue": "disconnected"}, 503)
            return
        self.send_json({"status": "Healthy", "queue": "connected", "depth": _depth(self.ctx)})


def _scan_events(ctx: ServiceContext) -> int:
    return int(ctx.db.execute("SELECT COUNT(*) FROM scan_events").fetchone()[0])


class AuditHandler(LabHandler):
    def get(self) -> None:
        scans = int(self.ctx.db.execute("SELECT COUNT(*) FROM scans").fetchone()[0])
        self.send_json({"scan_events": _scan_events(self.ctx), "scans": scans})


def handlers(ctx: ServiceContext) -> list[tuple[str, type, dict[str, Any]]]:
    ctx.counters["lab_scanner_scan_events_total"] = (
        "Scan events recorded (submitted, completed).",
        lambda: _scan_events(ctx),
    )
    ctx.counters["stellaops_scanner_queue_depth"] = ("Scans queued or running (not yet completed).", lambda: _depth(ctx))
    args = {"ctx": ctx}
    return [
        (r"/api/v1/scans", ScanSubmitHandler, args),
        (r"/api/v1/scans/([^/]+)", ScanStatusHandler, args),
        (r"/api/v1/scans/([^/]+)/report", ScanReportHandler, args),
        (r"/api/v1/queue/health", QueueHealthHandler, args),
        (r"/-/audit", AuditHandler, args),
    ]
