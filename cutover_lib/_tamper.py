"""``cutover verify``: every change to a run folder since its seal -- a file changed, added or
missing, the ledger's chain broken, its head or record count not what the manifest sealed, the
file list not the one the ledger's ``run-end`` record digested."""

from __future__ import annotations

from pathlib import Path

from ._errors import EvidenceError
from ._evidence import RunFolder, _canonical, _chain_findings, sha256_bytes

__all__ = ["verify_run"]


def verify_run(path: Path) -> list[str]:
    """Every change to a sealed run folder, one finding per line; empty when untouched."""
    run = RunFolder.open(path)
    findings: list[str] = []
    try:
        manifest = run.read_manifest()
    except EvidenceError:
        findings.append("changed: manifest.json (no longer valid JSON)")
        manifest = {"sealed": True, "files": {}}
    if not manifest:
        findings.append("missing: manifest.json")
    elif not manifest.get("sealed"):
        findings.append("manifest.json: run was never sealed (still running, or crashed: resume it)")
    expected: dict[str, str] = manifest.get("files", {}) if manifest else {}
    actual = run.file_hashes()
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            findings.append(f"missing: {name}")
        elif name not in expected:
            if manifest.get("sealed"):
                findings.append(f"added: {name}")
        elif expected[name] != actual[name]:
            findings.append(f"changed: {name}")
    chain, records, head = _chain_findings(run.ledger_path)
    findings.extend(chain)
    if manifest.get("sealed"):
        if manifest.get("ledger_head") != head:
            findings.append("ledger.jsonl: head does not match manifest.json (lines changed, dropped or appended)")
        if manifest.get("ledger_records") != len(records):
            findings.append(f"ledger.jsonl: {len(records)} records where manifest.json says "
                            f"{manifest.get('ledger_records')}")
        ends = [r for r in records if r.get("kind") == "run-end"]
        if ends:
            others = {k: v for k, v in expected.items() if k != "ledger.jsonl"}
            if ends[-1].get("files_digest") != sha256_bytes(_canonical(others).encode()):
                findings.append("manifest.json: file list does not match the digest sealed in the ledger")
        else:
            findings.append("ledger.jsonl: no run-end record")
    return findings
