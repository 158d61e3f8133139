"""The lab's shared state: one SQLite database under the data folder.

Several lab processes (one per service) and the CLI open the same file, so the database
runs in WAL mode with a busy timeout, autocommit, and one short statement (or one short
``BEGIN IMMEDIATE`` transaction) per operation. Only ``sqlite3`` is imported here so the
CLI can read and set faults without loading the web stack.

Tables
    faults          name -> JSON value; the fault switches every process reads per request
    counters        simple named counters (signatures produced)
    clients         OAuth clients the authority accepts (secret stored as SHA-256)
    tokens          one row per access token issued (the authority audit trail)
    scans           submitted SBOMs, their timing and, once completed, the signed report
    scan_events     submitted / completed events per scan (the scanner audit trail)
    attestations    envelopes stored by the attestor, by uuid
    runtime_events  the lab's stand-in for the Mongo ``runtime_events`` collection
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from ._config import fault_name

__all__ = [
    "DB_NAME",
    "clear_faults",
    "connect",
    "db_path",
    "get_faults",
    "set_fault",
]

DB_NAME = "lab.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS faults (
    name TEXT PRIMARY KEY, value TEXT NOT NULL, set_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, scopes TEXT NOT NULL,
    audience TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    jti TEXT PRIMARY KEY, client_id TEXT NOT NULL, scope TEXT NOT NULL,
    issued_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS scans (
    id TEXT PRIMARY KEY, submitted_at REAL NOT NULL, scan_seconds REAL NOT NULL,
    sbom TEXT NOT NULL, sbom_sha256 TEXT NOT NULL, components INTEGER NOT NULL,
    completed_at REAL, report TEXT);
CREATE TABLE IF NOT EXISTS scan_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, scan_id TEXT NOT NULL, event TEXT NOT NULL,
    at REAL NOT NULL, UNIQUE (scan_id, event));
CREATE TABLE IF NOT EXISTS attestations (
    uuid TEXT PRIMARY KEY, envelope TEXT NOT NULL, payload_sha256 TEXT NOT NULL,
    submitted_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runtime_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, kind TEXT,
    tenant TEXT, node TEXT, received_at TEXT NOT NULL, body TEXT NOT NULL);
"""


def db_path(data_dir: Path) -> Path:
    return Path(data_dir) / DB_NAME


def connect(data_dir: Path, create: bool = True) -> sqlite3.Connection:
    """Open the lab database (creating folder and schema when ``create``).

    Returns an autocommit connection; callers wrap multi-statement writes in
    ``BEGIN IMMEDIATE`` / ``COMMIT`` themselves. Raises ``FileNotFoundError`` when
    ``create`` is false and there is no database yet.
    """
    path = db_path(data_dir)
    if not create and not path.exists():
        raise FileNotFoundError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    if create:
        # Switching to WAL needs a moment of exclusive access; several processes may start
        # together, so retry briefly instead of failing.
        for attempt in range(50):
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if mode.lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
                break
            except sqlite3.OperationalError:
                if attempt == 49:
                    conn.close()
                    raise
                time.sleep(0.05)
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def get_faults(conn: sqlite3.Connection, service: str | None = None) -> dict[str, Any]:
    """Active faults by full name (``scanner.slow``), optionally only one service's."""
    if service is None:
        rows = conn.execute("SELECT name, value FROM faults ORDER BY name").fetchall()
    else:
        rows = conn.execute(
            "SELECT name, value FROM faults WHERE name LIKE ? ORDER BY name", (f"{service}.%",)
        ).fetchall()
    return {row["name"]: json.loads(row["value"]) for row in rows}


def set_fault(conn: sqlite3.Connection, service: str, fault: str, value: Any = True) -> str:
    """Switch a fault on (a false/None/0 value switches it off); returns the full name."""
    name = fault_name(service, fault)
    if value is None or value is False or value == 0:
        conn.execute("DELETE FROM faults WHERE name = ?", (name,))
    else:
        conn.execute(
            "INSERT INTO faults (name, value, set_at) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value, set_at = excluded.set_at",
            (name, json.dumps(value), time.time()),
        )
    return name


def clear_faults(
    conn: sqlite3.Connection, service: str | None = None, fault: str | None = None
) -> list[str]:
    """Remove faults (all, one service's, or one); returns the names removed."""
    if fault is not None and service is not None:
        names = [fault_name(service, fault)]
    else:
        names = list(get_faults(conn, service))
    for name in names:
        conn.execute("DELETE FROM faults WHERE name = ?", (name,))
    return names
