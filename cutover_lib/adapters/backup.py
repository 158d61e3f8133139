"""Section 4.1 backups and the Section 6 restores: the checks behind the cells, and backup modes.

The runbook's commands are cells of ``04_preflight`` and ``08_rollback`` (``backup.mode: tools``)::

    mongodump --config {mongo_config} --out {backup.mongo.out_dir}/launch-{now}
    mc mirror --overwrite {backup.object_store.source} {backup.object_store.target_prefix}{now_minute}
    mongorestore --config {mongo_config} --drop {snapshot}
    mc mirror {mirror} {backup.object_store.source}

(the Mongo URI reaches the tools in a 0600 config file, never in argv).  This module gives the
cells their checks, named as the runbook says them: a backup only passes once it is verified --
:func:`snapshot_holds` (the folder holds non-empty ``.bson`` files; a listing is kept) and
:func:`mirror_holds_source` (``mc ls`` of both sides: every source object is in the mirror) --
and the restores find the backup with :func:`last_backup` (this run's ledger, else the newest
earlier run of the environment).  Restores are conditional, as the runbook says ("if data
inconsistency detected", "if required"): the cells run only with ``backup.restore_on_rollback``.

Another ``backup.mode`` (the lab's stand-in for Mongo and MinIO) is a plug-in:
:func:`register_backup_mode`; its steps run from the notebooks' :func:`by_plugin` cell.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.template import Missing, render_text
from ..engine.result import NamedCheck as _Check
from ..errors import CheckFailed
from ..evidence.evidence import RunFolder

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.steps import Runbook, StepContext

__all__ = ["Listing", "by_plugin", "find_backup", "last_backup", "list_tree", "mirror_holds_source",
           "objects_present", "register_backup_mode", "restored_without_failures", "snapshot_holds"]

_BSON = (".bson", ".bson.gz")
# backup.mode -> "module:Class" registered in this process; other modes are plug-ins found by entry
# point (group stellaops_cutover.backup_modes); "tools" is the cells themselves
_MODES: dict[str, str] = {}


def register_backup_mode(mode: str, target: str) -> None:
    """Plug in a backup mode in this process: ``target`` is ``"package.module:ClassName"`` with
    ``backup(rb)`` and ``restore(rb)``."""
    _MODES[mode] = target


def by_plugin(rb: "Runbook", action: str) -> None:
    """The cell for a plug-in backup mode: ``backup`` (4.1) or ``restore`` (6); nothing in ``tools`` mode."""
    mode = rb.env.backup.mode
    if mode == "tools":
        rb.show_html("<p>backup mode <b>tools</b>: the cells above are this environment's path.</p>",
                     "backup mode tools: the cells above are this environment's path")
        return
    if mode in _MODES:
        module_name, attr = _MODES[mode].split(":")
        plugin = getattr(importlib.import_module(module_name), attr)
    else:
        from .plugins import load

        plugin = load("backup", mode)
    getattr(plugin(), action)(rb)


# --------------------------------------------------------------------------- listings

def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


@dataclass
class Listing:
    """Files of a backup: ``(relative path, size)`` sorted by path."""

    files: list[tuple[str, int]]

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.files)

    def data(self, suffixes: tuple[str, ...]) -> list[tuple[str, int]]:
        return [f for f in self.files if f[0].endswith(suffixes)]

    def text(self, title: str) -> str:
        lines = [f"# {title}", f"# {self.count} file(s), {self.bytes} bytes ({human(self.bytes)})"]
        lines += [f"{size:>14}  {rel}" for rel, size in self.files]
        return "\n".join(lines) + "\n"


def list_tree(root: Path) -> Listing:
    """Every regular file under ``root`` with its size."""
    files = [(p.relative_to(root).as_posix(), p.stat().st_size)
             for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    return Listing(sorted(files))


def verify_folder(ctx: "StepContext", folder: Path, shown: str, suffixes: tuple[str, ...]) -> Listing:
    """The backup folder exists and holds non-empty data files; the listing becomes an artifact."""
    ctx.check(folder.is_dir(), f"no backup folder at {shown}")
    listing = list_tree(folder)
    ctx.artifact(f"{ctx.step_id}.listing.txt", listing.text(f"{shown} ({ctx.step_id})"))
    data = listing.data(suffixes)
    kinds = " / ".join(suffixes)
    ctx.check(bool(data), f"no {kinds} file in {shown} ({listing.count} file(s), {listing.bytes} bytes)")
    data_bytes = sum(size for _, size in data)
    ctx.check(data_bytes > 0, f"every {kinds} file in {shown} is empty ({len(data)} file(s), 0 bytes)")
    ctx.data.update({"files": listing.count, "bytes": listing.bytes, "data_files": len(data),
                     "data_bytes": data_bytes})
    return listing


# --------------------------------------------------------------------------- finding a backup

@dataclass
class FoundBackup:
    step_id: str
    run_id: str
    location: str
    record: dict[str, Any]


def _latest_passed(records: list[dict[str, Any]], step_id: str, key: str) -> dict[str, Any] | None:
    for rec in reversed(records):
        if (rec.get("kind") == "step" and rec.get("step_id") == step_id and rec.get("outcome") == "passed"
                and (rec.get("data") or {}).get(key)):
            return rec
    return None


def find_backup(rb: "Runbook", step_id: str, key: str = "path") -> FoundBackup | None:
    """The latest passed backup step: in this run's ledger, else in ``executed/<env>/*/`` newest first."""
    rec = _latest_passed(rb.run.read_ledger(), step_id, key)
    if rec is not None:
        return FoundBackup(step_id, rb.run.run_id, str(rec["data"][key]), rec)
    here = rb.run.path.resolve()
    folders = sorted((p.parent for p in (rb.root / "executed" / rb.env.name).glob("*/ledger.jsonl")),
                     key=lambda p: p.name, reverse=True)
    for folder in folders:
        if folder.resolve() == here:
            continue
        try:
            records = RunFolder(folder).read_ledger()
        except (OSError, ValueError):
            continue  # an unreadable ledger is `cutover verify`'s business, not the restore's
        rec = _latest_passed(records, step_id, key)
        if rec is not None:
            return FoundBackup(step_id, folder.name, str(rec["data"][key]), rec)
    return None


def last_backup(rb: "Runbook", step_id: str, key: str = "path") -> Any:
    """Where the latest passed ``step_id`` put its backup (for a restore cell's ``vars``), or a
    :class:`Missing` that fails the restore naming what is missing."""
    found = find_backup(rb, step_id, key)
    if found is None:
        return Missing(f"no passed {step_id} step in this run or in executed/{rb.env.name}/: there is no "
                       f"backup to restore (restore by hand from the backup store)")
    return found.location


# --------------------------------------------------------------------------- checks for the cells

def snapshot_holds(folder: str, suffixes: tuple[str, ...] = _BSON) -> _Check:
    """``folder`` (a template, as in the command) holds at least one non-empty data file; the listing
    is kept, and ``data.path`` says where the snapshot is (the restore finds it there)."""
    def check(ctx: "StepContext", result: Any) -> str:
        location = render_text(folder, ctx.rb.env, result.vars)
        ctx.data["path"] = location
        listing = verify_folder(ctx, ctx.rb.path(location), location, suffixes)
        return (f"snapshot at {location}: {listing.count} file(s), {human(listing.bytes)}, "
                f"{ctx.data['data_files']} {'/'.join(suffixes)} file(s)")

    return _Check("a snapshot folder with at least one non-empty data file; listing kept", check)


def _mc_list(ctx: "StepContext", target: str, tag: str) -> Listing:
    """``mc ls --recursive --json TARGET`` parsed (one JSON object per entry, possibly indented)."""
    res = ctx.sh(["mc", "ls", "--recursive", "--json", target], log_name=f"{ctx.step_id}.mc-ls-{tag}.log",
                 check=False)
    text = res.log_path.read_text(encoding="utf-8") if res.log_path else res.output
    body = "\n".join(line for line in text.splitlines() if not line.startswith(("$ ", "# exit ")))
    files: list[tuple[str, int]] = []
    decoder, pos = json.JSONDecoder(), 0
    while True:
        m = re.compile(r"\S").search(body, pos)
        if not m:
            break
        try:
            obj, pos = decoder.raw_decode(body, m.start())
        except json.JSONDecodeError:
            pos = body.find("\n", m.start()) + 1 or len(body)
            continue
        if isinstance(obj, dict) and obj.get("status") == "error":
            raise CheckFailed(f"mc ls {target}: {obj.get('error', {}).get('message', obj)}")
        if isinstance(obj, dict) and obj.get("type", "file") == "file" and "key" in obj:
            files.append((str(obj["key"]), int(obj.get("size", 0))))
    if not res.ok:
        raise CheckFailed(f"`{res.command}` exited {res.returncode}{' (timed out)' if res.timed_out else ''}: "
                          f"{' | '.join(res.tail[-2:]) or 'no output'}")
    return Listing(sorted(files))


def mirror_holds_source(source: str, target: str) -> _Check:
    """After ``mc mirror``: the mirror ``target`` is non-empty and holds every object of ``source``
    (``mc ls --recursive --json`` of both; presence only, an object may change meanwhile);
    ``data.target`` says where the mirror is."""
    def check(ctx: "StepContext", result: Any) -> str:
        src = render_text(source, ctx.rb.env, result.vars)
        dst = render_text(target, ctx.rb.env, result.vars)
        ctx.data.update({"target": dst, "source": src})
        before = _mc_list(ctx, src, "source")
        after = _mc_list(ctx, dst, "target")
        ctx.artifact(f"{ctx.step_id}.listing.txt", after.text(f"{dst} ({ctx.step_id})"))
        ctx.data.update({"files": after.count, "bytes": after.bytes, "source_files": before.count,
                         "source_bytes": before.bytes})
        ctx.check(after.count > 0 and after.bytes > 0, f"the mirror {dst} is empty ({after.count} object(s), "
                                                       f"{after.bytes} bytes)")
        have = {rel for rel, _ in after.files}
        missing = [rel for rel, _ in before.files if rel not in have]
        ctx.check(not missing, f"{len(missing)} of {before.count} source object(s) missing from {dst}: "
                               f"{', '.join(missing[:5])}")
        return (f"mirror at {dst}: {after.count} object(s), {human(after.bytes)} "
                f"(source {before.count} object(s), {human(before.bytes)})")

    return _Check("the mirror is non-empty and holds every source object; listing kept", check)


def restored_without_failures() -> _Check:
    """``mongorestore`` reports no failed document (``N document(s) restored successfully. M ... failed``)."""
    def check(ctx: "StepContext", result: Any) -> str:
        log = ctx.rb.run.path / "artifacts" / f"{ctx.step_id}.log"
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        m = re.search(r"(\d+) document\(s\) restored successfully\. (\d+) document\(s\) failed", text)
        if m:
            ctx.check(m.group(2) == "0", f"mongorestore: {m.group(2)} document(s) failed to restore")
            return f"{m.group(1)} document(s) restored, 0 failed"
        return "mongorestore exited 0"

    return _Check("no document failed to restore", check)


def objects_present(mirror: str, target: str) -> _Check:
    """After restoring a mirror: every object of ``mirror`` is in ``target`` again (``mc ls`` of both)."""
    def check(ctx: "StepContext", result: Any) -> str:
        src = render_text(mirror, ctx.rb.env, result.vars)
        dst = render_text(target, ctx.rb.env, result.vars)
        saved = _mc_list(ctx, src, "mirror")
        ctx.check(saved.count > 0, f"the mirror {src} is empty or gone")
        have = {rel for rel, _ in _mc_list(ctx, dst, "restored").files}
        left = [rel for rel, _ in saved.files if rel not in have]
        ctx.check(not left, f"after the restore {len(left)} object(s) are missing: {', '.join(left[:5])}")
        return f"restored {src} onto {dst}: {saved.count} object(s)"

    return _Check("every object of the mirror is back", check)
