"""Helm adapter: reading ``helm history`` for a rollback.

The runbook's ``helm upgrade``, ``helm history`` and ``helm rollback`` lines are cells of the
notebooks (``rb.sh(..., mode="helm")``); what they need from here is :func:`rollback_target`
(the revision to roll back to, read from ``helm history -o json``, never guessed: see
:func:`previous_revision`) and :func:`runs_release`.  T-12h's ``helm lint`` / ``helm template``
are lines of ``deploy/tools/validate-profiles.sh``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import CheckFailed

__all__ = ["current_revision", "previous_revision", "release_of", "rollback_target", "runs_release"]

#: revisions a rollback may return to (``failed``, ``pending-*`` and ``uninstalled`` may not)
_GOOD = ("superseded", "deployed")


def release_of(entry: dict[str, Any]) -> str:
    """The release a revision runs: its ``app_version``, else the chart's version suffix."""
    app = str(entry.get("app_version") or "")
    if app:
        return app
    chart = str(entry.get("chart") or "")
    return chart.rsplit("-", 1)[-1] if "-" in chart else chart


def current_revision(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The revision now deployed (the newest with status ``deployed``)."""
    deployed = [h for h in history if h.get("status") == "deployed"]
    if not deployed:
        states = ", ".join(f"{h['revision']} {h.get('status')}" for h in history) or "empty"
        raise CheckFailed(f"no deployed revision in the helm history ({states})",
                          hint="the release is mid-operation or failed; inspect `helm history` and `helm status`")
    return max(deployed, key=lambda h: int(h["revision"]))


def previous_revision(history: Sequence[dict[str, Any]], *, previous_release: str | None = None) -> int:
    """The revision to roll back to: the newest ``superseded`` (or older ``deployed``) revision
    before the current deployed one.  ``failed`` / ``pending-*`` revisions never qualify.

    With ``previous_release`` only a revision running that release qualifies.  If none does,
    a :class:`CheckFailed` lists the history -- the revision is never guessed."""
    current = current_revision(history)
    cur_rev = int(current["revision"])
    candidates = [h for h in history if int(h["revision"]) < cur_rev and h.get("status") in _GOOD]
    if previous_release is not None:
        candidates = [h for h in candidates if release_of(h) == previous_release]
    if not candidates:
        shown = "; ".join(f"{h['revision']} {h.get('status')} {h.get('chart')} ({h.get('description', '')})"
                          for h in history)
        want = f" running {previous_release}" if previous_release else ""
        raise CheckFailed(f"no earlier good revision{want} to roll back to: current is revision {cur_rev}; "
                          f"history: {shown}",
                          hint="there is nothing safe to roll back to automatically; decide the revision by hand "
                               "from `helm history` with the DevOps lead")
    return int(max(candidates, key=lambda h: int(h["revision"]))["revision"])


def rollback_target() -> Any:
    """A check for the cell that reads ``helm history ... -o json`` before a rollback (Section 6):
    which revision to roll back to -- the newest good one running ``previous_release`` -- handed to
    the next cell as ``hist["rollback_to"]``.  When the current revision already runs the previous
    release (``--atomic`` rolled back), the rollback is not needed; when no revision qualifies, the
    step fails listing the history: the revision is never guessed."""
    from ..config.template import NotNeeded
    from ..engine.result import NamedCheck as _Check

    def check(ctx: Any, result: Any) -> str:
        hist = result.json if isinstance(result.json, list) else []
        previous = ctx.rb.env.previous_release
        cur = current_revision(hist)
        ctx.data["current"] = {k: cur.get(k) for k in ("revision", "status", "chart", "app_version", "description")}
        if release_of(cur) == previous:
            why = f"revision {cur['revision']} already runs {previous} ({cur.get('description')})"
            result.values["rollback_to"] = NotNeeded(why)
            return why + "; nothing to roll back"
        prev = previous_revision(hist, previous_release=previous)
        entry = next(e for e in hist if int(e["revision"]) == prev)
        result.values["rollback_to"] = prev
        return (f"current revision {cur['revision']} ({cur.get('chart')}, {cur.get('status')}); "
                f"previous revision {prev} ({entry.get('chart')}, {entry.get('status')})")

    return _Check("a previous revision running previous_release (never guessed)", check)


def runs_release(release: str) -> Any:
    """A check for ``helm history ... -o json`` after the rollback: the deployed revision runs ``release``
    (a template such as ``{previous_release}``)."""
    from ..config.template import render_text
    from ..engine.result import NamedCheck as _Check

    def check(ctx: Any, result: Any) -> str:
        want = render_text(release, ctx.rb.env)
        cur = current_revision(result.json if isinstance(result.json, list) else [])
        if release_of(cur) != want:
            raise CheckFailed(f"revision {cur['revision']} runs {release_of(cur)}, not {want}")
        return f"revision {cur['revision']} runs {want} ({cur.get('description')})"

    return _Check(f"the deployed revision runs {release}", check)
