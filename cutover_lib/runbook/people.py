"""Sections 1, 2 and 8 as steps: roles and channels, the timeline, the approval matrix.

Rendered from params, so the table the operator reads is the one the run uses; the roles and the
gates the runbook requires are the cell's arguments.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from ..engine.steps import Runbook, StepContext
from ..evidence.timeline import schedule

__all__ = ["approval_matrix", "roles_and_channels", "timeline"]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f'<th style="text-align:left;padding:3px 8px;border-bottom:2px solid #d0d7de">{e(h)}</th>'
                   for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="padding:3px 8px;border-bottom:1px solid #eaeef2">{e(c)}</td>'
                                    for c in row) + "</tr>" for row in rows)
    return f'<table style="border-collapse:collapse;font-size:13px">{head and "<tr>" + head + "</tr>"}{body}</table>'


def roles_and_channels(rb: Runbook, *, required: Sequence[str]) -> dict[str, Any]:
    """1.roles: every role the runbook names (``required``) is in params, and every role in params
    has a primary, a backup and a contact channel."""
    roles = rb.env.roles
    rb.show_html(_table(["Role", "Primary", "Backup", "Contact"],
                        [[r.role, r.primary, r.backup, r.contact] for r in roles]))

    def act(ctx: StepContext) -> str:
        have = {r.role for r in roles}
        missing = [r for r in required if r not in have]
        ctx.check(not missing, f"roles missing from params: {', '.join(missing)}")
        empty = [r.role for r in roles if not (r.primary and r.backup and r.contact)]
        ctx.check(not empty, f"roles without primary, backup or contact: {', '.join(empty)}")
        ctx.artifact("1.roles.csv", "role,primary,backup,contact\n" + "".join(
            f'"{r.role}","{r.primary}","{r.backup}","{r.contact}"\n' for r in roles))
        return f"{len(roles)} roles, each with primary, backup and contact"

    return rb.step("1.roles", "Roles and communication channels", owner="Cutover lead",
                   expect=f"roles {', '.join(required)} each have a primary, a backup and a contact", action=act)


def timeline(rb: Runbook) -> dict[str, Any]:
    """2.timeline: the UTC time of every activity, computed from T0."""
    items = schedule(rb.env.t0)
    rb.show_html(_table(["When", "UTC", "Activity", "Owner"],
                        [[i["label"], i["planned"].strftime("%Y-%m-%d %H:%M"), i["activity"], i["owner"]]
                         for i in items]))

    def act(ctx: StepContext) -> str:
        times = [i["planned"] for i in items]
        ctx.check(times == sorted(times), "activities are not in time order")
        ctx.artifact("2.timeline.csv", "when,utc,activity,owner\n" + "".join(
            f'{i["label"]},{i["planned"]:%Y-%m-%dT%H:%M:%SZ},"{i["activity"]}","{i["owner"]}"\n' for i in items))
        ctx.data["schedule"] = {i["label"]: f'{i["planned"]:%Y-%m-%dT%H:%M:%SZ}' for i in items}
        return f"T0 = {rb.env.t0:%Y-%m-%d %H:%M} UTC; T-24h = {items[0]['planned']:%Y-%m-%d %H:%M}; " \
               f"T+45m smoke deadline = {items[6]['planned']:%H:%M}"

    return rb.step("2.timeline", "Timeline computed from T0", owner="Cutover lead",
                   expect="every Section 2 activity has a UTC time, in order", action=act)


def approval_matrix(rb: Runbook, *, required: Sequence[str]) -> dict[str, Any]:
    """8.matrix: the approval matrix from params, with every gate the runbook names (``required``)."""
    gates = rb.env.approvals.gates
    rb.show_html(_table(["Gate", "Step", "Required approvers", "Record location"],
                        [[k, g.title, " + ".join(g.roles), g.record] for k, g in gates.items()]))

    def act(ctx: StepContext) -> str:
        missing = [g for g in required if g not in gates]
        ctx.check(not missing, f"gates missing from approvals.gates: {', '.join(missing)}")
        return f"{len(gates)} gates: " + "; ".join(f"{k} needs {' + '.join(g.roles)}" for k, g in gates.items())

    return rb.step("8.matrix", "Approval matrix", owner="DevOps lead",
                   expect=f"gates {', '.join(required)} each name their approvers", action=act)
