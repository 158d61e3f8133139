"""Lab change / incident tickets: a named stand-in for a Jira-shaped REST API (v2), hosted by the
lab's notify service next to its Mattermost webhook stand-in.

The shape is Jira's, so the runbook's cells are the requests a site sends to its Jira:

- ``GET  /rest/api/2/issue/<key>`` -- the issue with ``fields.status.name``, ``fields.comment``
  and ``fields.attachment`` (how tests read a ticket back);
- ``POST /rest/api/2/issue/<key>/comment`` ``{"body": ...}`` -- 201 with the comment;
- ``POST /rest/api/2/issue/<key>/attachments`` -- multipart ``file`` parts; like Jira, refused
  (403) without ``X-Atlassian-Token: no-check``; 200 with the attachments;
- ``POST /rest/api/2/issue`` ``{"fields": {"project": {"key"}, "issuetype": {"name"}, "summary",
  "description"}}`` -- 201 ``{"id", "key", "self"}`` (the incident ticket of a rollback);
- ``GET|POST /rest/api/2/issue/<key>/transitions`` -- the workflow: ``Done`` (id 31) closes.

Every request needs ``Authorization: Bearer <token>`` (the lab's ``stellaops-ticket/api-token``
secret, handed to the service as ``LAB_TICKET_TOKEN``): 401 otherwise.  A change ticket
(``CHG-...``) exists once the change board opened it: here, at its first use; any other unknown
key is 404 with Jira's error body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from typing import Any

from ._web_base import LabHandler, ServiceContext

__all__ = ["TRANSITIONS", "handlers"]

#: the lab workflow's transitions (Jira: id and name)
TRANSITIONS = ({"id": "21", "name": "In Progress", "to": "In Progress"}, {"id": "31", "name": "Done", "to": "Done"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT UNIQUE NOT NULL,
    type TEXT NOT NULL, summary TEXT NOT NULL, description TEXT NOT NULL, status TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ticket_comments (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL,
    body TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ticket_attachments (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL,
    filename TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, created TEXT NOT NULL);
"""
_NO_ISSUE = {"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime())


class TicketHandler(LabHandler):
    """Bearer-token auth and the tables, for every ticket route."""

    async def prepare(self) -> None:
        await super().prepare()
        if self._finished:
            return
        want = os.environ.get("LAB_TICKET_TOKEN", "lab-ticket-token").encode()
        given = self.request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, want):
            self.send_json({"errorMessages": ["You are not authenticated. Authentication required."]}, 401)
            return
        self.ctx.db.executescript(_SCHEMA)

    def issue(self, key: str) -> dict[str, Any] | None:
        row = self.ctx.db.execute("SELECT id, key, type, summary, description, status, created FROM tickets "
                                  "WHERE key = ?", (key,)).fetchone()
        if row is None and key.startswith("CHG-"):  # the change board opened it before the cutover
            self.ctx.db.execute("INSERT INTO tickets (key, type, summary, description, status, created) "
                                "VALUES (?,?,?,?,?,?)", (key, "Change", f"Change {key}", "", "Approved", _now()))
            return self.issue(key)
        if row is None:
            self.send_json(_NO_ISSUE, 404)
            return None
        return dict(zip(("id", "key", "type", "summary", "description", "status", "created"), row))


class IssueHandler(TicketHandler):
    def get(self, key: str) -> None:
        issue = self.issue(key)
        if issue is None:
            return
        comments = [{"id": str(r[0]), "body": r[1], "created": r[2]} for r in self.ctx.db.execute(
            "SELECT id, body, created FROM ticket_comments WHERE key = ? ORDER BY id", (key,))]
        files = [{"id": str(r[0]), "filename": r[1], "size": r[2], "sha256": r[3], "created": r[4]}
                 for r in self.ctx.db.execute("SELECT id, filename, size, sha256, created FROM ticket_attachments "
                                              "WHERE key = ? ORDER BY id", (key,))]
        self.send_json({"id": str(issue["id"]), "key": key, "fields": {
            "summary": issue["summary"], "description": issue["description"], "created": issue["created"],
            "issuetype": {"name": issue["type"]}, "status": {"name": issue["status"]},
            "comment": {"comments": comments, "total": len(comments)}, "attachment": files}})


class CreateHandler(TicketHandler):
    def post(self) -> None:
        try:
            fields = json.loads(self.request.body or b"{}")["fields"]
            project, kind = fields["project"]["key"], fields["issuetype"]["name"]
            summary, description = str(fields["summary"]), str(fields.get("description", ""))
        except (ValueError, KeyError, TypeError):
            self.send_json({"errorMessages": [], "errors": {"fields": "project.key, issuetype.name and summary "
                                                                      "are required"}}, 400)
            return
        n = self.ctx.db.execute("SELECT COUNT(*) FROM tickets WHERE key LIKE ?", (f"{project}-%",)).fetchone()[0]
        key = f"{project}-{n + 1}"
        cur = self.ctx.db.execute("INSERT INTO tickets (key, type, summary, description, status, created) "
                                  "VALUES (?,?,?,?,?,?)", (key, kind, summary, description, "Open", _now()))
        self.send_json({"id": str(cur.lastrowid), "key": key, "self": f"{self.ctx.public_url}/rest/api/2/issue/{key}"},
                       201)


class CommentHandler(TicketHandler):
    def post(self, key: str) -> None:
        if self.issue(key) is None:
            return
        try:
            body = json.loads(self.request.body or b"{}")["body"]
            assert isinstance(body, str) and body.strip()
        except (ValueError, KeyError, TypeError, AssertionError):
            self.send_json({"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}}, 400)
            return
        created = _now()
        cur = self.ctx.db.execute("INSERT INTO ticket_comments (key, body, created) VALUES (?,?,?)",
                                  (key, body, created))
        self.send_json({"id": str(cur.lastrowid), "body": body, "created": created}, 201)


class AttachmentsHandler(TicketHandler):
    def post(self, key: str) -> None:
        if self.request.headers.get("X-Atlassian-Token") != "no-check":
            self.send_json({"errorMessages": ["XSRF check failed"]}, 403)
            return
        if self.issue(key) is None:
            return
        files = self.request.files.get("file", [])
        if not files:
            self.send_json({"errorMessages": ["no file part named 'file'"]}, 400)
            return
        out = []
        for f in files:
            digest = hashlib.sha256(f["body"]).hexdigest()
            cur = self.ctx.db.execute("INSERT INTO ticket_attachments (key, filename, size, sha256, created) "
                                      "VALUES (?,?,?,?,?)", (key, f["filename"], len(f["body"]), digest, _now()))
            out.append({"id": str(cur.lastrowid), "filename": f["filename"], "size": len(f["body"])})
        self.send_json(out)


class TransitionsHandler(TicketHandler):
    def get(self, key: str) -> None:
        if self.issue(key) is not None:
            self.send_json({"transitions": [{"id": t["id"], "name": t["name"]} for t in TRANSITIONS]})

    def post(self, key: str) -> None:
        if self.issue(key) is None:
            return
        try:
            wanted = json.loads(self.request.body or b"{}")["transition"]["id"]
            target = next(t["to"] for t in TRANSITIONS if t["id"] == str(wanted))
        except (ValueError, KeyError, TypeError, StopIteration):
            self.send_json({"errorMessages": ["Transition id is not valid for this issue."]}, 400)
            return
        self.ctx.db.execute("UPDATE tickets SET status = ? WHERE key = ?", (target, key))
        self.set_status(204)
        self.finish()


def handlers(ctx: ServiceContext) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"ctx": ctx}
    key = r"([A-Z][A-Z0-9]*-[A-Za-z0-9-]+)"
    return [(r"/rest/api/2/issue", CreateHandler, args),
            (rf"/rest/api/2/issue/{key}", IssueHandler, args),
            (rf"/rest/api/2/issue/{key}/comment", CommentHandler, args),
            (rf"/rest/api/2/issue/{key}/attachments", AttachmentsHandler, args),
            (rf"/rest/api/2/issue/{key}/transitions", TransitionsHandler, args)]
