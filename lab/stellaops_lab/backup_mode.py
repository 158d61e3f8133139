"""Backup mode ``lab``: a **named stand-in** for Mongo and MinIO where neither runs (the lab).

Registered as a plug-in backup mode (:func:`cutover_lib.adapters.backup.register_backup_mode`); the
notebooks reach it through their ``backup.by_plugin(rb, ...)`` cell, after the runbook's own
``mongodump`` / ``mc mirror`` cells, which are not applicable in this mode.

* ``4.1.lab-backup-mongo``: the lab's SQLite database (``<deploy.lab.data_dir>/lab.sqlite3``, whose
  ``runtime_events`` table stands in for the Mongo collection) copied with the SQLite backup API,
  plus a JSON-lines export of ``runtime_events``, into ``backup.mongo.out_dir/launch-<time>``.
* ``4.1.lab-mirror-minio``: the object-store folder (``backup.object_store.source``) copied as a tree.
* ``6.lab-restore-mongo`` / ``6.lab-restore-minio``: restored after a real consistency check
  (SQLite ``integrity_check``, row counts, object digests) or on request
  (``backup.restore_on_rollback``); otherwise skipped with the reason.

This module moves to the lab's own package with the rest of the lab.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from cutover_lib.adapters.backup import find_backup, human, list_tree, verify_folder
from cutover_lib.engine.steps import NotApplicable, Runbook, StepContext
from cutover_lib.errors import CheckFailed
from cutover_lib.evidence.evidence import utc_now

from .settings import lab_settings

__all__ = ["LabBackup"]

OWNER = "Storage"
MONGO_STEP, MIRROR_STEP = "4.1.lab-backup-mongo", "4.1.lab-mirror-minio"
_LAB_DATA = (".sqlite3", ".jsonl")
_LAB_DB = "lab.sqlite3"
_STANDIN = "lab mode: named stand-in -- "
_HOW = "to restore anyway, rerun this step with -p backup.restore_on_rollback=true"


def _stamp() -> str:
    return utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if base else name


def _lab_db(rb: Runbook) -> Path:
    return rb.path(lab_settings(rb.env).data_dir) / _LAB_DB


def _digests(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for rel, _ in list_tree(root).files:
        h = hashlib.sha256()
        with open(root / rel, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        out[rel] = h.hexdigest()
    return out


def _sqlite_integrity(path: Path) -> str:
    """``ok`` or the first problem ``PRAGMA integrity_check`` reports (or why it cannot run)."""
    try:
        with closing(sqlite3.connect(path, timeout=10)) as db:
            rows = db.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return f"cannot check: {exc}"
    first = str(rows[0][0]) if rows else "no result"
    return "ok" if first == "ok" and len(rows) == 1 else first


def _count_events(path: Path) -> int | None:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            return int(db.execute("SELECT COUNT(*) FROM runtime_events").fetchone()[0])
    except sqlite3.DatabaseError:
        return None


def _snapshot(ctx: StepContext, live: Path, target: Path) -> int:
    """Copy the lab database with the backup API (consistent while the lab writes) and export
    ``runtime_events`` as JSON lines; returns the number of events."""
    if not live.exists():
        raise CheckFailed(f"the lab database {live} does not exist (start the lab: cutover lab up)")
    target.mkdir(parents=True, mode=0o700)
    copy = target / _LAB_DB
    with closing(sqlite3.connect(live, timeout=10)) as src, closing(sqlite3.connect(copy)) as dst:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = DELETE")  # a self-contained file, no -wal beside it
    os.chmod(copy, 0o600)
    export = target / "stellaops" / "runtime_events.jsonl"
    export.parent.mkdir(mode=0o700)
    count = 0
    with closing(sqlite3.connect(copy)) as db, open(export, "w", encoding="utf-8") as out:
        db.row_factory = sqlite3.Row
        for row in db.execute("SELECT * FROM runtime_events ORDER BY id"):
            doc = dict(row)
            try:
                doc["body"] = json.loads(doc["body"])
            except (TypeError, ValueError):
                pass
            out.write(json.dumps(doc, sort_keys=True) + "\n")
            count += 1
    os.chmod(export, 0o600)
    integrity = _sqlite_integrity(copy)
    ctx.check(integrity == "ok", f"the copied database fails integrity_check: {integrity}")
    return count


def _mongo_state(live: Path, expected_events: int | None) -> tuple[bool, str]:
    """(consistent, why) of the live lab database against the snapshot's row count."""
    if not live.exists():
        return False, f"the lab database {live} is missing"
    integrity = _sqlite_integrity(live)
    if integrity != "ok":
        return False, f"integrity_check: {integrity}"
    count = _count_events(live)
    if count is None:
        return False, "runtime_events cannot be read"
    if expected_events is not None and count < expected_events:
        return False, f"runtime_events has {count} row(s), fewer than the {expected_events} in the snapshot"
    return True, f"integrity ok, runtime_events {count} row(s)" + (
        f" (snapshot {expected_events})" if expected_events is not None else "")


def _restore_db(snapshot: Path, live: Path) -> None:
    """Put the snapshot back with the backup API; a live file that is no database is kept aside."""
    try:
        with closing(sqlite3.connect(snapshot, timeout=10)) as src, closing(sqlite3.connect(live, timeout=10)) as dst:
            src.backup(dst)
        return
    except sqlite3.DatabaseError:
        pass
    aside = _stamp().replace(":", "")
    for suffix in ("", "-wal", "-shm"):
        p = live.with_name(live.name + suffix)
        if p.exists():
            os.replace(p, p.with_name(f"{p.name}.corrupt-{aside}"))
    with closing(sqlite3.connect(snapshot, timeout=10)) as src, closing(sqlite3.connect(live, timeout=10)) as dst:
        src.backup(dst)


class LabBackup:
    """The ``lab`` backup mode's steps (4.1 and 6)."""

    def backup(self, rb: Runbook) -> None:
        self.snapshot(rb)
        self.mirror(rb)

    def restore(self, rb: Runbook) -> None:
        self.restore_mongo(rb)
        self.restore_object_store(rb)

    # ------------------------------------------------------------------ 4.1
    def snapshot(self, rb: Runbook) -> dict[str, Any]:
        cfg = rb.env.backup
        location = _join(cfg.mongo.out_dir, f"launch-{_stamp()}")
        n = 1
        while rb.path(location).exists():  # a second snapshot within the same second: never write into one
            n += 1
            location = f"{location.rsplit('Z', 1)[0]}Z-{n}"
        command = (f"lab stand-in for mongodump: SQLite backup API copy of {_lab_db(rb)} to {location}/{_LAB_DB} "
                   f"+ runtime_events export to {location}/stellaops/runtime_events.jsonl")

        def act(ctx: StepContext) -> str:
            target = rb.path(location)
            ctx.data.update({"path": location, "mode": cfg.mode})
            ctx.check(not target.exists(), f"{location} already exists; a snapshot never writes into another one")
            ctx.log(_STANDIN + "the lab's SQLite database stands in for Mongo and its runtime_events table "
                    "for the runtime_events collection")
            ctx.data["runtime_events"] = _snapshot(ctx, _lab_db(rb), target)
            listing = verify_folder(ctx, target, location, _LAB_DATA)
            return (f"snapshot at {location}: {listing.count} file(s), {human(listing.bytes)}, "
                    f"{ctx.data['data_files']} {'/'.join(_LAB_DATA)} file(s), "
                    f"{ctx.data['runtime_events']} runtime_events")

        return rb.step(MONGO_STEP, "Mongo snapshot (lab stand-in: SQLite copy)", owner=OWNER, mutating=True,
                       command=command, action=act,
                       expect="a snapshot folder with at least one non-empty data file; listing kept")

    def mirror(self, rb: Runbook) -> dict[str, Any]:
        cfg = rb.env.backup
        source = cfg.object_store.source
        target = f"{cfg.object_store.target_prefix}{utc_now().strftime('%Y%m%d%H%M')}"

        def act(ctx: StepContext) -> str:
            ctx.data.update({"target": target, "source": source, "mode": cfg.mode})
            ctx.log(_STANDIN + f"the folder {source} stands in for the minio/stellaops bucket")
            src = rb.path(source)
            if not src.is_dir():
                raise CheckFailed(f"the lab object store {source} does not exist (start the lab: cutover lab up)")
            before = list_tree(src)
            dst = rb.path(target)
            dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copytree(src, dst, dirs_exist_ok=True)
            after = list_tree(dst)
            ctx.artifact(f"{MIRROR_STEP}.listing.txt", after.text(f"{target} ({MIRROR_STEP})"))
            ctx.data.update({"files": after.count, "bytes": after.bytes, "source_files": before.count,
                             "source_bytes": before.bytes})
            ctx.check(after.count > 0 and after.bytes > 0,
                      f"the mirror {target} is empty ({after.count} object(s), {after.bytes} bytes)")
            have = dict(after.files)
            missing = [rel for rel, size in before.files if rel not in have or have[rel] != size]
            ctx.check(not missing, f"{len(missing)} of {before.count} source object(s) missing from {target}: "
                                   f"{', '.join(missing[:5])}")
            return (f"mirror at {target}: {after.count} object(s), {human(after.bytes)} "
                    f"(source {before.count} object(s), {human(before.bytes)})")

        return rb.step(MIRROR_STEP, "MinIO mirror (lab stand-in: folder copy)", owner=OWNER, mutating=True,
                       command=f"lab stand-in for mc mirror: copy folder {source} to {target}", action=act,
                       expect="the mirror exists, is non-empty and holds every source object; listing kept")

    # ------------------------------------------------------------------ 6
    def restore_mongo(self, rb: Runbook) -> dict[str, Any]:
        found = find_backup(rb, MONGO_STEP, "path")
        location = found.location if found else _join(rb.env.backup.mongo.out_dir, "launch-<timestamp>")

        def act(ctx: StepContext) -> str:
            requested = rb.env.backup.restore_on_rollback
            ctx.data.update({"path": found.location if found else None, "source_run": found.run_id if found else None,
                             "requested": requested, "restored": False})
            ctx.log(_STANDIN + "the lab's SQLite database stands in for Mongo")
            expected = (found.record.get("data") or {}).get("runtime_events") if found else None
            consistent, why = _mongo_state(_lab_db(rb), expected)
            ctx.log(f"consistency check: {why}")
            ctx.data["consistent"] = consistent
            if consistent and not requested:
                raise NotApplicable(f"no data inconsistency detected ({why}); {_HOW}")
            if found is None:
                raise CheckFailed(f"no passed {MONGO_STEP} step in this run or in executed/{rb.env.name}/; "
                                  "there is no snapshot to restore (restore by hand from the backup store)")
            folder = rb.path(found.location)
            ctx.check(folder.is_dir(), f"the snapshot folder {found.location} (from run {found.run_id}) is gone")
            _restore_db(folder / _LAB_DB, _lab_db(rb))
            consistent, why = _mongo_state(_lab_db(rb), expected)
            ctx.check(consistent, f"after the restore: {why}")
            ctx.data["restored"] = True
            return f"restored {found.location} (from run {found.run_id}): {why}"

        return rb.step("6.lab-restore-mongo", "Restore Mongo snapshot if data inconsistency detected (lab stand-in)",
                       owner=OWNER, mutating=True, action=act,
                       command=f"lab stand-in for mongorestore --drop: SQLite backup API copy of "
                               f"{location}/{_LAB_DB} onto {_lab_db(rb)}",
                       expect="restored only on detected inconsistency or request; the restored data verified")

    def restore_object_store(self, rb: Runbook) -> dict[str, Any]:
        found = find_backup(rb, MIRROR_STEP, "target")
        source = rb.env.backup.object_store.source
        mirror = found.location if found else f"{rb.env.backup.object_store.target_prefix}<timestamp>"

        def diff() -> list[str]:
            assert found is not None
            live = _digests(rb.path(source)) if rb.path(source).is_dir() else {}
            return [rel for rel, digest in _digests(rb.path(found.location)).items() if live.get(rel) != digest]

        def act(ctx: StepContext) -> str:
            requested = rb.env.backup.restore_on_rollback
            ctx.data.update({"target": found.location if found else None,
                             "source_run": found.run_id if found else None, "requested": requested, "restored": False})
            ctx.log(_STANDIN + f"the folder {source} stands in for the minio/stellaops bucket")
            if found is None or not rb.path(found.location).is_dir():
                if not requested:
                    what = f"the mirror folder {found.location} is gone" if found else f"no mirror of {source} recorded"
                    raise NotApplicable(f"nothing to compare with ({what}); {_HOW}")
            else:
                changed = diff()
                ctx.data["changed"] = changed
                if not changed and not requested:
                    raise NotApplicable(f"every object of the mirror {found.location} is present and unchanged "
                                        f"in {source}; {_HOW}")
                ctx.log(f"{len(changed)} object(s) missing or changed: {', '.join(changed[:10])}")
            if found is None:
                raise CheckFailed(f"no passed {MIRROR_STEP} step in this run or in executed/{rb.env.name}/; "
                                  "there is no mirror to restore (restore by hand from minio-backup)")
            ctx.check(rb.path(found.location).is_dir(), f"the mirror folder {found.location} is gone")
            shutil.copytree(rb.path(found.location), rb.path(source), dirs_exist_ok=True)
            left = diff()
            ctx.check(not left, f"after the restore {len(left)} object(s) still differ: {', '.join(left[:5])}")
            ctx.data["restored"] = True
            n = list_tree(rb.path(found.location)).count
            return f"restored {found.location} (from run {found.run_id}) onto {source}: {n} object(s)"

        return rb.step("6.lab-restore-minio", "Restore MinIO mirror if required (lab stand-in)", owner=OWNER,
                       mutating=True, command=f"lab stand-in for mc mirror: copy folder {mirror} onto {source}",
                       action=act,
                       expect="restored only when objects are missing/changed or on request; the restore verified")
