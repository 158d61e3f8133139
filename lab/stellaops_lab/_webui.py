"""Lab web UI: a login form, a server-rendered dashboard and policy view (no JavaScript, no external URLs).

A named stand-in for the Stella Ops Web UI. ``GET /login`` is a form (``username``, ``password``,
a submit button); ``POST /login`` with :data:`WEB_USER` and the password of the web secret store
(``LAB_WEB_PASSWORD``, set by ``cutover lab up`` from ``.lab/secrets/stellaops-web/smoke-password``)
sets a session cookie and redirects to the page asked for; a wrong one answers 401 with the form
again.  ``GET /`` renders ``id="dashboard"`` with widgets read from the shared SQLite state;
``GET /policy`` renders ``id="policy-view"``; both need the session (otherwise a redirect to
``/login?next=...``).  Both show the same policy digest, so "policy views consistent" can be
checked by comparing the two pages. The ``web.slow`` fault delays every page, the login too.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import os
import secrets
import time
import urllib.parse
from typing import Any

from ._web_base import LabHandler, ServiceContext

__all__ = ["POLICY", "SESSION_COOKIE", "WEB_USER", "handlers", "policy_digest"]

#: the lab web UI's smoke account (its password: ``LAB_WEB_PASSWORD``)
WEB_USER = "cutover-smoke"
SESSION_COOKIE = "stellaops_session"

POLICY: dict[str, Any] = {
    "name": "stellaops-launch-default",
    "version": "2025.09.2",
    "rules": [
        {"id": "block-critical", "when": "severity == critical", "action": "block"},
        {"id": "warn-high", "when": "severity == high", "action": "warn"},
        {"id": "require-signed-report", "when": "report.dsse missing", "action": "block"},
        {"id": "allow-rest", "when": "otherwise", "action": "allow"},
    ],
}


def policy_digest() -> str:
    return hashlib.sha256(json.dumps(POLICY, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}section{border:1px solid #ccc;"
        "padding:.5em 1em;margin:.5em;display:inline-block;vertical-align:top}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 6px}</style>"
        "</head><body>"
        "<nav><a href=\"/\">Dashboard</a> | <a href=\"/policy\">Policy</a></nav>"
        f"{body}<footer><p>Stella Ops lab stand-in</p></footer></body></html>\n"
    )


def _count(ctx: ServiceContext, table: str) -> int:
    return int(ctx.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _sessions(ctx: ServiceContext) -> set[str]:
    return ctx.cache.setdefault("sessions", set())  # type: ignore[no-any-return]


class LoginHandler(LabHandler):
    """``GET /login``: the form; ``POST /login``: check the account, set the session, redirect."""

    def get(self) -> None:
        self._form("", 200)

    def post(self) -> None:
        user = self.get_body_argument("username", "")
        given = self.get_body_argument("password", "").encode()
        want = os.environ.get("LAB_WEB_PASSWORD", "lab-web-smoke").encode()
        if user != WEB_USER or not hmac.compare_digest(given, want):
            self._form("Wrong user name or password.", 401)
            return
        token = secrets.token_urlsafe(24)
        _sessions(self.ctx).add(token)
        self.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax", path="/")
        target = self.get_body_argument("next", "/")
        self.redirect(target if target.startswith("/") and not target.startswith("//") else "/")

    def _form(self, error: str, status: int) -> None:
        target = html.escape(self.get_argument("next", "/"), quote=True)
        alert = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        body = (
            '<main id="login"><h1>Stella Ops — sign in</h1>' + alert +
            '<form method="post" action="/login">'
            f'<input type="hidden" name="next" value="{target}">'
            '<p><label>User name <input name="username" autocomplete="username"></label></p>'
            '<p><label>Password <input type="password" name="password" autocomplete="current-password">'
            '</label></p><p><button type="submit">Sign in</button></p></form></main>'
        )
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_page("Stella Ops — sign in", body))


class SessionHandler(LabHandler):
    """A page that needs the session cookie: without it, a redirect to the login form."""

    async def prepare(self) -> None:
        await super().prepare()
        if self.get_cookie(SESSION_COOKIE, "") not in _sessions(self.ctx):
            self.redirect("/login?" + urllib.parse.urlencode({"next": self.request.uri or "/"}))


class DashboardHandler(SessionHandler):
    def get(self) -> None:
        ctx = self.ctx
        widgets = [
            ("scans", "Scans submitted", _count(ctx, "scans")),
            ("reports", "Signed reports",
             int(ctx.db.execute("SELECT COUNT(*) FROM scans WHERE report IS NOT NULL").fetchone()[0])),
            ("attestations", "Attestations stored", _count(ctx, "attestations")),
            ("tokens", "Tokens issued", _count(ctx, "tokens")),
            ("runtime-events", "Runtime events", _count(ctx, "runtime_events")),
        ]
        cards = "".join(
            f'<section class="widget" id="widget-{wid}"><h2>{html.escape(label)}</h2>'
            f'<p class="value">{value}</p></section>'
            for wid, label, value in widgets
        )
        faults = ctx.db.execute("SELECT name, value FROM faults ORDER BY name").fetchall()
        fault_rows = "".join(
            f"<tr><td>{html.escape(r['name'])}</td><td>{html.escape(r['value'])}</td></tr>"
            for r in faults
        ) or '<tr><td colspan="2">none</td></tr>'
        scans = ctx.db.execute(
            "SELECT id, submitted_at, components, report IS NOT NULL AS done FROM scans "
            "ORDER BY submitted_at DESC LIMIT 10"
        ).fetchall()
        scan_rows = "".join(
            f"<tr><td>{html.escape(r['id'])}</td>"
            f"<td>{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(r['submitted_at']))}</td>"
            f"<td>{r['components']}</td><td>{'signed report' if r['done'] else 'in progress'}</td></tr>"
            for r in scans
        ) or '<tr><td colspan="4">no scans yet</td></tr>'
        body = (
            f'<main id="dashboard"><h1>Stella Ops {html.escape(ctx.release)} — dashboard</h1>'
            f'<div class="widgets">{cards}</div>'
            '<section class="widget" id="widget-faults"><h2>Active lab faults</h2>'
            f"<table><tr><th>fault</th><th>value</th></tr>{fault_rows}</table></section>"
            '<section class="widget" id="widget-recent-scans"><h2>Recent scans</h2>'
            f"<table><tr><th>id</th><th>submitted</th><th>components</th><th>state</th></tr>"
            f"{scan_rows}</table></section>"
            '<section class="widget" id="widget-policy"><h2>Policy</h2>'
            f'<p>{html.escape(POLICY["name"])} <code class="policy-digest">{policy_digest()}</code></p>'
            "</section></main>"
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_page("Stella Ops — dashboard", body))


class PolicyHandler(SessionHandler):
    def get(self) -> None:
        rows = "".join(
            f"<tr><td>{html.escape(r['id'])}</td><td>{html.escape(r['when'])}</td>"
            f"<td>{html.escape(r['action'])}</td></tr>"
            for r in POLICY["rules"]
        )
        body = (
            f'<main id="policy-view"><h1>Policy {html.escape(POLICY["name"])} '
            f'v{html.escape(POLICY["version"])}</h1>'
            f'<p>Digest <code class="policy-digest">{policy_digest()}</code></p>'
            f"<table><tr><th>rule</th><th>when</th><th>action</th></tr>{rows}</table></main>"
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_page("Stella Ops — policy", body))


def handlers(ctx: ServiceContext) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"ctx": ctx}
    return [(r"/", DashboardHandler, args), (r"/policy", PolicyHandler, args), (r"/login", LoginHandler, args)]
