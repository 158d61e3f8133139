"""The plan digest: what a dry run would change, in a form two runs can compare (timestamps out)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

__all__ = ["normalize_command", "plan_diff", "plan_digest", "planned_commands"]


_TIMES = re.compile(r"\d{4}-?\d{2}-?\d{2}T?\d{2}:?\d{2}(:?\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?|\d{12}")


def normalize_command(command: str) -> str:
    """A command with its timestamps replaced by ``<time>`` (backup folder names differ per run)."""
    return _TIMES.sub("<time>", command)


def planned_commands(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["step_id"], normalize_command(r.get("command") or "")) for r in records
            if r.get("kind") == "step" and r.get("mutating")]


def plan_digest(records: list[dict[str, Any]]) -> tuple[str, int]:
    """sha256 over the (step id, normalized command) of every mutating step, in order."""
    cmds = planned_commands(records)
    return hashlib.sha256(json.dumps(cmds).encode()).hexdigest(), len(cmds)


def plan_diff(approved: list[tuple[str, ...]], now: list[tuple[str, ...]]) -> list[str]:
    a, n = dict(approved), dict(now)
    out = [f"{sid}: approved `{a[sid]}`, now `{n[sid]}`" for sid in a if sid in n and a[sid] != n[sid]]
    out += [f"{sid}: not in the approved plan (`{n[sid]}`)" for sid in n if sid not in a]
    out += [f"{sid}: approved but no longer planned" for sid in a if sid not in n]
    return out
