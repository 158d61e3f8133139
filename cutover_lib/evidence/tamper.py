"""``cutover verify``: every change to a run folder since its seal -- a file changed, added or
missing (dot and temporary names too), a link or a folder that was not sealed, the ledger's chain
broken, its head or record count not what the manifest sealed, the file list not the one the
ledger's ``run-end`` record digested -- and the seal's signature: made by a key trusted for the
environment, over this manifest (every field) and this ledger head."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import EvidenceError
from .evidence import RunFolder, _canonical, _chain_findings, sha256_bytes
from .seal import check_seal, trusted_keys

__all__ = ["verify_report", "verify_run"]


def verify_run(path: Path, keys: list[Path] | None = None, root: Path | None = None) -> list[str]:
    """Every change to a sealed run folder, one finding per line; empty when untouched."""
    return verify_report(path, keys, root)[0]


def verify_report(path: Path, keys: list[Path] | None = None, root: Path | None = None) -> tuple[list[str], str]:
    """:func:`verify_run`'s findings, and who sealed the run (key id, and why that key is trusted)."""
    run = RunFolder.open(path)
    findings = _folder_findings(run)
    trusted, source = trusted_keys(run.path, root, list(keys or []))
    seal, keyid = check_seal(run, trusted, source)
    return findings + seal, f"{keyid} ({source})" if keyid else ""


def _strays(run: RunFolder, sealed_folders: list[str] | None) -> list[str]:
    """Links, special files, and folders the seal did not list."""
    out = []
    for p in sorted(run.path.rglob("*")):
        rel = p.relative_to(run.path).as_posix()
        if p.is_symlink():
            out.append(f"link: {rel} -> {os.readlink(p)} (evidence is never a link)")
        elif not p.is_dir() and not p.is_file():
            out.append(f"added: {rel} (not a regular file)")
    if sealed_folders is not None:
        actual = set(run.folders())
        out += [f"added: {d}/ (a folder)" for d in sorted(actual - set(sealed_folders))]
        out += [f"missing: {d}/ (a folder)" for d in sorted(set(sealed_folders) - actual)]
    return out


def _folder_findings(run: RunFolder) -> list[str]:
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
    folders = manifest.get("folders") if manifest.get("sealed") else None
    findings.extend(_strays(run, folders if isinstance(folders, list) else None))
    if manifest.get("sealed") and not isinstance(folders, list):
        findings.append("manifest.json: no folder list (sealed by an older version, or edited)")
    return findings
