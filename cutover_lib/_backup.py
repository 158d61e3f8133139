"""Section 4.1 backups and the Section 6 restores, as steps.

Two modes, chosen by ``backup.mode`` in params:

``tools``
    The runbook's own commands: ``mongodump --uri "$MONGO_BACKUP_URI" --out
    /backups/launch-<UTC time>`` and ``mc mirror --overwrite minio/stellaops
    minio-backup/stellaops-<YYYYmmddHHMM>``; restores with ``mongorestore --drop`` and ``mc
    mirror`` back.  The URI is a secret reference, resolved at use and passed in argv; the
    command in the evidence shows ``"$MONGO_BACKUP_URI"`` (and ``***`` wherever the value
    would appear).
``lab``
    A **named stand-in** for where neither Mongo nor MinIO runs: the lab's SQLite database
    (``<deploy.lab.data_dir>/lab.sqlite3``, whose ``runtime_events`` table stands in for the
    Mongo collection) is copied with the SQLite backup API plus a JSON-lines export of
    ``runtime_events``; the object-store folder (``.lab/minio/stellaops``) is copied as a tree.
    Same folder names, same verification, and the step output says it is the stand-in.

A backup only passes once it is verified: the folder exists, holds at least one non-empty data
file (``.bson`` / ``.bson.gz``; the lab's ``.sqlite3`` / ``.jsonl``), and a listing with sizes
is kept as an artifact.  The backup location is stored in the step's ``data`` so the rollback
(this run or a later one) finds it in the ledger.

Restores are conditional, as the runbook says ("if data inconsistency detected", "if
required"): in ``tools`` mode only when the operator asks (``backup.restore_on_rollback``);
in ``lab`` mode after a real consistency check (SQLite ``integrity_check``, row counts, object
digests) or when asked.  Otherwise the step is ``skipped`` with the reason and how to ask.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ._errors import CheckFailed
from ._evidence import RunFolder, utc_now
from ._steps import NotApplicable, Runbook, StepContext

__all__ = ["backup_mongo", "find_backup", "mirror_object_store", "restore_mongo", "restore_object_store"]

OWNER = "Storage"
MONGO_STEP = "4.1.backup-mongo"
MIRROR_STEP = "4.1.mirror-minio"
_BSON = (".bson", ".bson.gz")
_LAB_DATA = (".sqlite3", ".jsonl")
_LAB_DB = "lab.sqlite3"  # cutover_lib.lab._store.DB_NAME (not imported: keep the lab's web stack out)
_STANDIN = "lab mode: named stand-in -- "


# --------------------------------------------------------------------------- helpers (pure)

def iso_stamp(now: datetime) -> str:
    """``date -Iseconds`` in UTC, as a folder-name suffix: ``2025-10-27T14:00:00Z``."""
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def minute_stamp(now: datetime) -> str:
    """``date +%Y%m%d%H%M`` in UTC."""
    return now.strftime("%Y%m%d%H%M")


def _human(n: int) -> str:
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
        lines = [f"# {title}", f"# {self.count} file(s), {self.bytes} bytes ({_human(self.bytes)})"]
        lines += [f"{size:>14}  {rel}" for rel, size in self.files]
        return "\n".join(lines) + "\n"


def list_tree(root: Path) -> Listing:
    """Every regular file under ``root`` with its size."""
    files = [(p.relative_to(root).as_posix(), p.stat().st_size)
             for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    return Listing(sorted(files))


def _digests(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for rel, _ in list_tree(root).files:
        h = hashlib.sha256()
        with open(root / rel, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        out[rel] = h.hexdigest()
    return out


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if base else name


def _uri_shown(rb: Runbook) -> str:
    """How the Mongo URI appears in the command: the variable the runbook names, never the value."""
    ref = rb.env.backup.mongo.uri
    return f'"${ref.ref.split(":", 1)[1]}"' if ref.scheme == "env" else f'"<{ref}>"'


def _lab_db(rb: Runbook) -> Path:
    lab = rb.env.deploy.lab
    return rb.path(lab.data_dir if lab is not None else ".lab") / _LAB_DB


def _restore_requested(rb: Runbook) -> bool:
    return rb.env.backup.restore_on_rollback


# --------------------------------------------------------------------------- ledger search

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


def find_backup(rb: Runbook, step_id: str = MONGO_STEP, key: str = "path") -> FoundBackup | None:
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


# --------------------------------------------------------------------------- verification

def _verify(ctx: StepContext, folder: Path, shown: str, suffixes: tuple[str, ...]) -> Listing:
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


# --------------------------------------------------------------------------- 4.1 Mongo snapshot

def _lab_snapshot(ctx: StepContext, live: Path, target: Path) -> int:
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


def backup_mongo(rb: Runbook) -> dict[str, Any]:
    """4.1 Mongo snapshot, verified to exist and be non-empty; ``data.path`` is where it is."""
    cfg = rb.env.backup
    location = _join(cfg.mongo.out_dir, f"launch-{iso_stamp(utc_now())}")
    n = 1
    while rb.path(location).exists():  # a second snapshot within the same second: never write into one
        n += 1
        location = f"{location.rsplit('Z', 1)[0]}Z-{n}"
    lab = cfg.mode == "lab"
    if lab:
        command = (f"lab stand-in for mongodump: SQLite backup API copy of {_lab_db(rb)} to {location}/{_LAB_DB} "
                   f"+ runtime_events export to {location}/stellaops/runtime_events.jsonl")
    else:
        command = f"mongodump --uri {_uri_shown(rb)} --out {shlex.quote(location)}"

    def act(ctx: StepContext) -> str:
        target = rb.path(location)
        ctx.data.update({"path": location, "mode": cfg.mode})
        ctx.check(not target.exists(), f"{location} already exists; a snapshot never writes into another one")
        if lab:
            ctx.log(_STANDIN + "the lab's SQLite database stands in for Mongo and its runtime_events table "
                    "for the runtime_events collection")
            ctx.data["runtime_events"] = _lab_snapshot(ctx, _lab_db(rb), target)
            suffixes = _LAB_DATA
        else:
            uri = cfg.mongo.uri.resolve()  # registered for masking before it reaches argv
            ctx.sh(["mongodump", "--uri", uri, "--out", str(target)])
            suffixes = _BSON
        listing = _verify(ctx, target, location, suffixes)
        extra = f", {ctx.data['runtime_events']} runtime_events" if lab else ""
        return (f"snapshot at {location}: {listing.count} file(s), {_human(listing.bytes)}, "
                f"{ctx.data['data_files']} {'/'.join(suffixes)} file(s){extra}")

    return rb.step(MONGO_STEP, "Mongo snapshot" + (" (lab stand-in: SQLite copy)" if lab else " (mongodump)"),
                   owner=OWNER, mutating=True, command=command, action=act,
                   expect="a snapshot folder with at least one non-empty data file; listing kept")


# --------------------------------------------------------------------------- 4.1 object-store mirror

def _mc_list(ctx: StepContext, target: str, tag: str) -> Listing:
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


def mirror_object_store(rb: Runbook) -> dict[str, Any]:
    """4.1 MinIO mirror, verified: the target exists, is non-empty and holds every source object."""
    cfg = rb.env.backup
    source = cfg.object_store.source
    target = f"{cfg.object_store.target_prefix}{minute_stamp(utc_now())}"
    lab = cfg.mode == "lab"
    command = (f"lab stand-in for mc mirror: copy folder {source} to {target}" if lab
               else f"mc mirror --overwrite {shlex.quote(source)} {shlex.quote(target)}")

    def act(ctx: StepContext) -> str:
        ctx.data.update({"target": target, "source": source, "mode": cfg.mode})
        if lab:
            ctx.log(_STANDIN + f"the folder {source} stands in for the minio/stellaops bucket")
            src = rb.path(source)
            if not src.is_dir():
                raise CheckFailed(f"the lab object store {source} does not exist (start the lab: cutover lab up)")
            before = list_tree(src)
            dst = rb.path(target)
            dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copytree(src, dst, dirs_exist_ok=True)
            after = list_tree(dst)
        else:
            before = _mc_list(ctx, source, "source")
            ctx.sh(["mc", "mirror", "--overwrite", source, target])
            after = _mc_list(ctx, target, "target")
        ctx.artifact(f"{MIRROR_STEP}.listing.txt", after.text(f"{target} ({MIRROR_STEP})"))
        ctx.data.update({"files": after.count, "bytes": after.bytes, "source_files": before.count,
                         "source_bytes": before.bytes})
        ctx.check(after.count > 0 and after.bytes > 0,
                  f"the mirror {target} is empty ({after.count} object(s), {after.bytes} bytes)")
        have = dict(after.files)
        # tools: presence only (an object may change between the listing and the copy); lab: sizes too
        missing = [rel for rel, size in before.files if rel not in have or (lab and have[rel] != size)]
        ctx.check(not missing, f"{len(missing)} of {before.count} source object(s) missing from {target}: "
                               f"{', '.join(missing[:5])}")
        if lab:
            ctx.check(after.count == before.count and after.bytes == before.bytes,
                      f"{target} holds {after.count} file(s)/{after.bytes} bytes, source {before.count}/"
                      f"{before.bytes}")
        return (f"mirror at {target}: {after.count} object(s), {_human(after.bytes)} "
                f"(source {before.count} object(s), {_human(before.bytes)})")

    return rb.step(MIRROR_STEP, "MinIO mirror" + (" (lab stand-in: folder copy)" if lab else " (mc mirror)"),
                   owner=OWNER, mutating=True, command=command, action=act,
                   expect="the mirror exists, is non-empty and holds every source object; listing kept")


# --------------------------------------------------------------------------- 6 restores

_HOW = "to restore anyway, rerun this step with -p backup.restore_on_rollback=true"


def _lab_mongo_state(live: Path, expected_events: int | None) -> tuple[bool, str]:
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


def _lab_restore_db(snapshot: Path, live: Path) -> None:
    """Put the snapshot back with the backup API; a live file that is no database is kept aside."""
    try:
        with closing(sqlite3.connect(snapshot, timeout=10)) as src, closing(sqlite3.connect(live, timeout=10)) as dst:
            src.backup(dst)
        return
    except sqlite3.DatabaseError:
        pass
    aside = iso_stamp(utc_now()).replace(":", "")
    for suffix in ("", "-wal", "-shm"):
        p = live.with_name(live.name + suffix)
        if p.exists():
            os.replace(p, p.with_name(f"{p.name}.corrupt-{aside}"))
    with closing(sqlite3.connect(snapshot, timeout=10)) as src, closing(sqlite3.connect(live, timeout=10)) as dst:
        src.backup(dst)


def restore_mongo(rb: Runbook) -> dict[str, Any]:
    """6 Restore the Mongo snapshot -- only if data inconsistency is detected (lab) or requested."""
    cfg = rb.env.backup
    found = find_backup(rb, MONGO_STEP, "path")
    location = found.location if found else _join(cfg.mongo.out_dir, "launch-<timestamp>")
    lab = cfg.mode == "lab"
    command = (f"lab stand-in for mongorestore --drop: SQLite backup API copy of {location}/{_LAB_DB} "
               f"onto {_lab_db(rb)}" if lab
               else f"mongorestore --uri {_uri_shown(rb)} --drop {shlex.quote(location) if found else location}")

    def act(ctx: StepContext) -> str:
        requested = _restore_requested(rb)
        ctx.data.update({"path": found.location if found else None, "source_run": found.run_id if found else None,
                         "requested": requested, "restored": False})
        if lab:
            ctx.log(_STANDIN + "the lab's SQLite database stands in for Mongo")
            expected = (found.record.get("data") or {}).get("runtime_events") if found else None
            consistent, why = _lab_mongo_state(_lab_db(rb), expected)
            ctx.log(f"consistency check: {why}")
            ctx.data["consistent"] = consistent
            if consistent and not requested:
                raise NotApplicable(f"no data inconsistency detected ({why}); {_HOW}")
        elif not requested:
            raise NotApplicable("no data inconsistency reported; the snapshot "
                                f"{location} stays available; {_HOW}")
        if found is None:
            raise CheckFailed(f"no passed {MONGO_STEP} step in this run or in executed/{rb.env.name}/; "
                              "there is no snapshot to restore (restore by hand from the backup store)")
        folder = rb.path(found.location)
        ctx.check(folder.is_dir(), f"the snapshot folder {found.location} (from run {found.run_id}) is gone")
        if lab:
            _lab_restore_db(folder / _LAB_DB, _lab_db(rb))
            consistent, why = _lab_mongo_state(_lab_db(rb), expected)
            ctx.check(consistent, f"after the restore: {why}")
        else:
            uri = cfg.mongo.uri.resolve()
            res = ctx.sh(["mongorestore", "--uri", uri, "--drop", str(folder)])
            m = re.search(r"(\d+) document\(s\) restored successfully\. (\d+) document\(s\) failed", res.output)
            if m:
                ctx.check(m.group(2) == "0", f"mongorestore: {m.group(2)} document(s) failed to restore")
            why = f"{m.group(1)} document(s) restored" if m else "mongorestore exited 0"
        ctx.data["restored"] = True
        return f"restored {found.location} (from run {found.run_id}): {why}"

    return rb.step("6.restore-mongo", "Restore Mongo snapshot if data inconsistency detected", owner=OWNER,
                   mutating=True, command=command, action=act,
                   expect="restored only on detected inconsistency or request; the restored data verified")


def restore_object_store(rb: Runbook) -> dict[str, Any]:
    """6 Restore the MinIO mirror -- only if required (lab: objects missing or changed; or requested)."""
    cfg = rb.env.backup
    found = find_backup(rb, MIRROR_STEP, "target")
    mirror = found.location if found else f"{cfg.object_store.target_prefix}<timestamp>"
    source = cfg.object_store.source
    lab = cfg.mode == "lab"
    command = (f"lab stand-in for mc mirror: copy folder {mirror} onto {source}" if lab
               else f"mc mirror {shlex.quote(mirror) if found else mirror} {shlex.quote(source)}")

    def diff() -> list[str]:
        assert found is not None
        live = _digests(rb.path(source)) if rb.path(source).is_dir() else {}
        return [rel for rel, digest in _digests(rb.path(found.location)).items() if live.get(rel) != digest]

    def act(ctx: StepContext) -> str:
        requested = _restore_requested(rb)
        ctx.data.update({"target": found.location if found else None,
                         "source_run": found.run_id if found else None, "requested": requested, "restored": False})
        if lab:
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
        elif not requested:
            raise NotApplicable(f"no object-store restore required; the mirror {mirror} stays available; {_HOW}")
        if found is None:
            raise CheckFailed(f"no passed {MIRROR_STEP} step in this run or in executed/{rb.env.name}/; "
                              "there is no mirror to restore (restore by hand from minio-backup)")
        if lab:
            ctx.check(rb.path(found.location).is_dir(), f"the mirror folder {found.location} is gone")
            shutil.copytree(rb.path(found.location), rb.path(source), dirs_exist_ok=True)
            left = diff()
            ctx.check(not left, f"after the restore {len(left)} object(s) still differ: {', '.join(left[:5])}")
            n = list_tree(rb.path(found.location)).count
        else:
            saved = _mc_list(ctx, found.location, "mirror")
            ctx.check(saved.count > 0, f"the mirror {found.location} is empty or gone")
            ctx.sh(["mc", "mirror", found.location, source])
            have = {rel for rel, _ in _mc_list(ctx, source, "restored").files}
            left = [rel for rel, _ in saved.files if rel not in have]
            ctx.check(not left, f"after the restore {len(left)} object(s) are missing: {', '.join(left[:5])}")
            n = saved.count
        ctx.data["restored"] = True
        return f"restored {found.location} (from run {found.run_id}) onto {source}: {n} object(s)"

    return rb.step("6.restore-minio", "Restore MinIO mirror if required", owner=OWNER, mutating=True,
                   command=command, action=act,
                   expect="restored only when objects are missing/changed or on request; the restore verified")
