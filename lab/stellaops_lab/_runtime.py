"""Lab runtime ingest: accept Zastava observer events and keep them queryable.

A named stand-in for the Stella Ops runtime event ingest. Events are stored in the SQLite
table ``runtime_events``, the lab's stand-in for the Mongo ``runtime_events`` collection.
``POST /api/v1/runtime/events`` and ``POST /runtime/events`` accept one event, a list of
events, or ``{"events": [...]}`` (an item may wrap its event as ``{"event": {...}}``) and
answer 202. Ingest is idempotent by ``eventId``. ``GET`` with ``?eventId=`` (or
``/api/v1/runtime/events/<eventId>``) returns the stored records.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ._web_base import LabHandler, ServiceContext, utc_now

__all__ = ["handlers"]


def _events_of(doc: Any) -> list[dict[str, Any]] | None:
    if isinstance(doc, dict) and isinstance(doc.get("events"), list):
        items = doc["events"]
    elif isinstance(doc, list):
        items = doc
    elif isinstance(doc, dict):
        items = [doc]
    else:
        return None
    events = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("event"), dict) and "eventId" not in item:
            item = item["event"]
        if not isinstance(item, dict):
            return None
        events.append(item)
    return events


def _record(row: Any) -> dict[str, Any]:
    return {
        "eventId": row["event_id"],
        "kind": row["kind"],
        "tenant": row["tenant"],
        "node": row["node"],
        "receivedAt": row["received_at"],
        "event": json.loads(row["body"]),
    }


class EventsHandler(LabHandler):
    def post(self) -> None:
        if self.ctx.fault("ingest_error"):
            self.send_json({"error": "ingest_failed", "reason": "runtime event store unavailable"}, 500)
            return
        events = _events_of(self.json_body())
        if not events:
            self.send_json({"error": "invalid_request", "reason": "expected an event object or a list"}, 400)
            return
        received = utc_now()
        ids: list[str] = []
        duplicates = 0
        self.ctx.db.execute("BEGIN IMMEDIATE")
        try:
            for event in events:
                event_id = str(event.get("eventId") or uuid.uuid4())
                cursor = self.ctx.db.execute(
                    "INSERT OR IGNORE INTO runtime_events "
                    "(event_id, kind, tenant, node, received_at, body) VALUES (?,?,?,?,?,?)",
                    (event_id, event.get("kind"), event.get("tenant"), event.get("node"),
                     received, json.dumps(event)),
                )
                duplicates += cursor.rowcount == 0
                ids.append(event_id)
            self.ctx.db.execute("COMMIT")
        except BaseException:
            self.ctx.db.execute("ROLLBACK")
            raise
        self.send_json(
            {"accepted": len(ids) - duplicates, "duplicates": duplicates, "eventIds": ids,
             "receivedAt": received},
            202,
        )

    def get(self) -> None:
        event_ids = self.get_query_arguments("eventId")
        if event_ids:
            marks = ",".join("?" * len(event_ids))
            rows = self.ctx.db.execute(
                f"SELECT * FROM runtime_events WHERE event_id IN ({marks}) ORDER BY id", event_ids
            ).fetchall()
        else:
            limit = min(int(self.get_query_argument("limit", "50") or 50), 500)
            rows = self.ctx.db.execute(
                "SELECT * FROM runtime_events ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        self.send_json({"events": [_record(r) for r in rows], "count": len(rows)})


class EventHandler(LabHandler):
    def get(self, event_id: str) -> None:
        row = self.ctx.db.execute(
            "SELECT * FROM runtime_events WHERE event_id = ?", (event_id,)
        ).fetchone()
        if row is None:
            self.send_json({"error": "not_found", "eventId": event_id}, 404)
            return
        self.send_json(_record(row))


def _count(ctx: ServiceContext) -> int:
    return int(ctx.db.execute("SELECT COUNT(*) FROM runtime_events").fetchone()[0])


class AuditHandler(LabHandler):
    def get(self) -> None:
        self.send_json({"runtime_events": _count(self.ctx)})


def handlers(ctx: ServiceContext) -> list[tuple[str, type, dict[str, Any]]]:
    ctx.counters["lab_runtime_events_stored_total"] = ("Runtime events stored.", lambda: _count(ctx))
    args = {"ctx": ctx}
    return [
        (r"/api/v1/runtime/events", EventsHandler, args),
        (r"/runtime/events", EventsHandler, args),
        (r"/api/v1/runtime/events/([^/]+)", EventHandler, args),
        (r"/-/audit", AuditHandler, args),
    ]
