"""The evidence record: one folder per run, a hash-chained ledger, a manifest, verification.

Layout (DESIGN.md)::

    executed/<env>/<run-id>/
      manifest.json   env, phase, operator, git commit, params sha256, versions, outcome, files
      ledger.jsonl    one JSON record per line; each carries ``prev``, the sha256 of the line before
      notebooks/ html/ artifacts/

Every file is written atomically (temporary file in the same folder, fsync, rename) with
mode 0600, folders 0700.  A run folder is created exclusively, so a run never writes into
another run's folder; inside a run, :func:`write_new` refuses to replace a file.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config.secrets import mask_obj
from ..errors import EvidenceError, UsageError

__all__ = [
    "HashChain",
    "RunFolder",
    "atomic_write",
    "new_run_id",
    "utc_now",
    "write_new",
]

GENESIS = "0" * 64
SUBDIRS = ("notebooks", "html", "artifacts")
#: the manifest and its signature: everything else in a run folder is hashed into the manifest
_SEAL_FILES = ("manifest.json", "seal.dsse.json")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id(env: str, phase: str, now: datetime | None = None) -> str:
    return f"{(now or utc_now()).strftime('%Y%m%dT%H%M%SZ')}-{env}-{phase}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _disk_error(path: Path, exc: OSError) -> EvidenceError:
    if exc.errno == errno.ENOSPC:
        return EvidenceError(f"disk full while writing evidence {path}",
                             hint="free space on that filesystem; nothing already written was touched")
    if exc.errno == errno.EROFS:
        return EvidenceError(f"cannot write evidence {path}: the filesystem is read-only",
                             hint="run from a checkout whose executed/ folder is writable")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return EvidenceError(f"cannot write evidence {path}: {exc.strerror}",
                             hint="check the permissions of the executed/ folder")
    return EvidenceError(f"cannot write evidence {path}: {exc.strerror or exc}")


def atomic_write(path: Path, data: bytes | str, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename; 0600."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise _disk_error(path, exc) from exc


def write_new(path: Path, data: bytes | str) -> Path:
    """Like :func:`atomic_write` but never replaces an existing file: picks ``name.2.ext`` etc."""
    path = Path(path)
    candidate = path
    n = 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
    atomic_write(candidate, data)
    return candidate


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass
class RunFolder:
    """A run's evidence folder."""

    path: Path
    #: after :meth:`seal`: what the signature in ``seal.dsse.json`` covers, and the key id
    signed: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, root: Path, env: str, phase: str, *, run_id: str | None = None) -> "RunFolder":
        run_id = run_id or new_run_id(env, phase)
        parent = Path(root) / env
        try:
            parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = parent / run_id
            n = 1
            while True:
                try:
                    path.mkdir(mode=0o700)
                    break
                except FileExistsError:
                    n += 1
                    path = parent / f"{run_id}.{n}"
            for sub in SUBDIRS:
                (path / sub).mkdir(mode=0o700)
        except OSError as exc:
            raise _disk_error(parent, exc) from exc
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> "RunFolder":
        path = Path(path)
        hint = "pass the run folder that `cutover run` printed, e.g. executed/local/<run-id>"
        if not path.is_dir():  # a typo, not evidence that went missing: a usage error
            raise UsageError(f"{path}: {'not a folder' if path.exists() else 'no such folder'}", hint=hint)
        if not (path / "ledger.jsonl").exists() and not (path / "manifest.json").exists():
            raise EvidenceError(f"{path} is not a run folder (no manifest.json or ledger.jsonl)", hint=hint)
        return cls(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def ledger_path(self) -> Path:
        return self.path / "ledger.jsonl"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    # ------------------------------------------------------------------ ledger
    @property
    def ledger(self) -> "HashChain":
        return HashChain(self.ledger_path)

    def read_ledger(self) -> list[dict[str, Any]]:
        return self.ledger.read()

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append one record (masked) to the run's ledger chain."""
        return self.ledger.append(record)

    def ledger_head(self) -> str:
        return self.ledger.head()

    # ------------------------------------------------------------------ manifest
    def read_manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise EvidenceError(f"{self.manifest_path} is not valid JSON ({exc.msg})",
                                hint="the evidence was edited; restore it from the archive") from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write(self.manifest_path, json.dumps(mask_obj(manifest), indent=2, sort_keys=True) + "\n")

    def file_hashes(self) -> dict[str, str]:
        """sha256 of every regular file but the manifest and its signature -- dot and temporary
        names included; a link is never followed (``cutover verify`` reports it)."""
        out: dict[str, str] = {}
        for p in sorted(self.path.rglob("*")):
            rel = p.relative_to(self.path).as_posix()
            if rel not in _SEAL_FILES and not p.is_symlink() and p.is_file():
                out[rel] = sha256_file(p)
        return out

    def folders(self) -> list[str]:
        """Every folder of the run (empty ones too), relative."""
        return sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*")
                      if p.is_dir() and not p.is_symlink())

    def seal(self, manifest_update: dict[str, Any]) -> dict[str, Any]:
        """Close the run: a ``run-end`` ledger record naming the digest of every other file, then
        the manifest with every file's sha256 and the ledger head."""
        others = {k: v for k, v in self.file_hashes().items() if k != "ledger.jsonl"}
        files_digest = sha256_bytes(_canonical(others).encode())
        self.append({"kind": "run-end", "outcome": manifest_update.get("outcome"),
                     "files_digest": files_digest, "files": len(others)})
        manifest = {**self.read_manifest(), **manifest_update}
        manifest["files"] = self.file_hashes()
        manifest["folders"] = self.folders()
        manifest["ledger_head"] = self.ledger_head()
        manifest["ledger_records"] = len(self.read_ledger())
        manifest["sealed"] = True
        self.write_manifest(manifest)
        from .seal import sign_seal  # (the signature over it: seal.dsse.json)

        self.signed = sign_seal(self)
        return manifest


class HashChain:
    """An append-only JSON-lines file where each record carries ``prev``, the sha256 of the line
    before it (the first: 64 zeros), and ``seq``, its line number.

    Appends are serialized with ``flock`` on the folder (the runner and the kernel both write)
    and cost the same at the millionth record as at the first: the last line is read from the
    end of the file, and the new one is added with a single ``O_APPEND`` write and ``fsync``.
    A line torn by a crash mid-write is kept (it is evidence of the crash); the next record
    starts on a new line and chains to it, and ``cutover verify`` names it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self.path.parent, os.O_RDONLY)
        except FileNotFoundError:
            raise EvidenceError(f"the evidence folder {self.path.parent} is gone (moved or deleted while in use)",
                                hint="nothing more can be recorded there: restore it from a backup, or start "
                                     "a new run") from None
        except OSError as exc:
            raise _disk_error(self.path.parent, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        return self.read_from(0)[0]

    def read_verified(self, label: str, hint: str) -> list[dict[str, Any]]:
        """Every record, after checking the whole chain (no file: none); a line written or edited
        by hand, removed or reordered raises :class:`EvidenceError` (exit 1) naming ``label`` and
        the line."""
        if not self.path.exists():
            return []
        findings, records, _ = _chain_findings(self.path, label)
        if findings:
            more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
            raise EvidenceError(f"{findings[0]}{more}: the file was changed outside cutover", hint=hint)
        return records

    def read_from(self, offset: int) -> tuple[list[dict[str, Any]], int]:
        """The complete records after byte ``offset``, and the offset after the last of them
        (a line still being written is left for the next call; a line torn by a crash is not a
        record and is skipped here, ``cutover verify`` reports it)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n") + 1
        records = []
        for line in data[:end].splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records, offset + end

    def _tail(self) -> tuple[bytes, bool, int]:
        """The last line (without its newline), whether the file ends with a newline, and the
        file's size; reads backwards from the end, a block at a time."""
        with open(self.path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return b"", True, 0
            f.seek(size - 1)
            complete = f.read(1) == b"\n"
            pos, buf = size - 1 if complete else size, b""  # buf: the bytes [pos, end of last line)
            while pos > 0:
                step = min(65536, pos)
                pos -= step
                f.seek(pos)
                buf = f.read(step) + buf
                cut = buf.rfind(b"\n")
                if cut >= 0:
                    return buf[cut + 1:], complete, size
            return buf, complete, size

    def _next_seq(self, last: bytes) -> int:
        try:
            seq = json.loads(last)["seq"]
            if isinstance(seq, int):
                return seq + 1
        except (ValueError, KeyError, TypeError):
            pass
        with open(self.path, "rb") as f:  # a torn or foreign last line: count (rare, after a crash)
            return sum(1 for line in f if line.strip()) + 1

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        with self._locked():
            try:
                last, complete, size = self._tail()
            except FileNotFoundError:
                last, complete, size = b"", True, 0
            prev = sha256_bytes(last) if size else GENESIS
            seq = self._next_seq(last) if size else 1
            full = {"seq": seq, "ts": iso(utc_now()), **mask_obj(record), "prev": prev}
            line = _canonical(full).encode("utf-8")
            data = (b"" if complete else b"\n") + line + b"\n"
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise _disk_error(self.path, exc) from exc
            full["sha256"] = sha256_bytes(line)
            return full

    def head(self) -> str:
        try:
            last, _, size = self._tail()
        except FileNotFoundError:
            return GENESIS
        return sha256_bytes(last) if size else GENESIS


def _chain_findings(path: Path, label: str = "ledger.jsonl") -> tuple[list[str], list[dict[str, Any]], str]:
    """What is wrong with a hash chain file (named ``label`` in the findings), its records and head."""
    findings: list[str] = []
    records: list[dict[str, Any]] = []
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return [f"missing: {label}"], [], GENESIS
    prev = GENESIS
    for i, line in enumerate(lines, start=1):
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            findings.append(f"{label} line {i}: not valid JSON")
            prev = sha256_bytes(line)
            continue
        if not isinstance(rec, dict):
            findings.append(f"{label} line {i}: not a record")
            prev = sha256_bytes(line)
            continue
        if rec.get("prev") != prev:
            findings.append(f"{label} line {i}: broken chain link (prev does not match line {i - 1})")
        if rec.get("seq") != i:
            findings.append(f"{label} line {i}: sequence number {rec.get('seq')} where {i} was expected "
                            "(a line was removed, added or reordered)")
        records.append(rec)
        prev = sha256_bytes(line)
    return findings, records, prev

