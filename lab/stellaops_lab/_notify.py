"""Lab notify (legacy): health, the channel list, and a Mattermost incoming-webhook stand-in.

A named stand-in for the legacy Stella Ops Notify service, kept while the Notifier
migration is pending.  ``POST /hooks/<id>`` accepts Mattermost incoming-webhook payloads
(``text``, ``username``, ``channel``, ``attachments``) the way Mattermost does -- 200 with
body ``ok``, 400 when neither text nor attachments is present -- and records them so the
#launch-bridge posts of a run can be read back at ``GET /hooks/<id>/posts``.  It also hosts the
lab's Jira-shaped change / incident ticket stand-in (:mod:`._ticket`, ``/rest/api/2/...``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ._web_base import LabHandler, ServiceContext

__all__ = ["CHANNELS", "handlers"]

CHANNELS: tuple[dict[str, Any], ...] = (
    {"id": "launch-bridge", "type": "mattermost", "name": "#launch-bridge", "enabled": True},
    {"id": "scanner", "type": "mattermost", "name": "#scanner", "enabled": True},
    {"id": "ops-email", "type": "email", "name": "ops@stella-ops.local", "enabled": True},
    {"id": "pager", "type": "webhook", "name": "pager escalation", "enabled": False},
)

_SCHEMA = ("CREATE TABLE IF NOT EXISTS bridge_posts (id INTEGER PRIMARY KEY AUTOINCREMENT, hook TEXT NOT NULL, "
           "received_at REAL NOT NULL, body TEXT NOT NULL)")


class ChannelsHandler(LabHandler):
    def get(self) -> None:
        self.send_json({"channels": list(CHANNELS), "legacy": True})


class HookHandler(LabHandler):
    def post(self, hook: str) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            self.set_status(400)
            self.finish("Unable to parse incoming data")
            return
        if not isinstance(body, dict) or not (body.get("text") or body.get("attachments")):
            self.set_status(400)
            self.finish("No text specified")
            return
        self.ctx.db.execute(_SCHEMA)
        self.ctx.db.execute("INSERT INTO bridge_posts (hook, received_at, body) VALUES (?,?,?)",
                            (hook, time.time(), json.dumps(body)))
        self.set_header("Content-Type", "text/plain")
        self.finish("ok")


class HookPostsHandler(LabHandler):
    def get(self, hook: str) -> None:
        self.ctx.db.execute(_SCHEMA)
        rows = self.ctx.db.execute("SELECT received_at, body FROM bridge_posts WHERE hook = ? ORDER BY id",
                                   (hook,)).fetchall()
        self.send_json({"posts": [{"receivedAt": r[0], **json.loads(r[1])} for r in rows]})


def handlers(ctx: ServiceContext) -> list[tuple[str, type, dict[str, Any]]]:
    from ._ticket import handlers as ticket_handlers

    args = {"ctx": ctx}
    return [(r"/api/v1/notify/channels", ChannelsHandler, args),
            (r"/hooks/([A-Za-z0-9_-]+)", HookHandler, args),
            (r"/hooks/([A-Za-z0-9_-]+)/posts", HookPostsHandler, args)] + ticket_handlers(ctx)
