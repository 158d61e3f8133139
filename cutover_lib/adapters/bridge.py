"""``rb.bridge``: a message the runbook sends to #launch-bridge, written out in the cell.

The cell holds the message itself, a template over params::

    rb.bridge("2.t-6h.freeze", ":snowflake: Deployment freeze for {name}: non-launch deployments are "
              "frozen until the {release} cutover at T0 {t0} closes ({change_ticket}).",
              title="Freeze non-launch deployments; notify guild leads", owner="Product owner")

It is posted to the bridge's incoming webhook (``bridge.webhook``, a secret reference resolved only
when posting; ``bridge.channel``, ``bridge.username``) with the bridge's retries and back-off
(:class:`~cutover_lib.adapters.notify.Bridge`).  The step passes when the webhook accepted the post;
a plan shows the message and posts nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..config.template import render_text
from ..engine.cellmech import CellMechanics
from ..engine.result import Result, _title
from ..errors import CheckFailed, ParamsError

if TYPE_CHECKING:  # pragma: no cover
    from ..config.params import Environment
    from ..engine.steps import StepContext

__all__ = ["BridgeVerbs", "post_checked"]


def post_checked(env: "Environment", ctx: "StepContext", text: str, kind: str) -> str:
    """Post ``text`` to the bridge as part of step ``ctx``: its outcome in the step's data, a
    failed post (after the retries) a failed check."""
    from .notify import Bridge

    res = Bridge(env.bridge).post(text, kind=kind)
    ctx.data["bridge"] = {"ok": res.ok, "attempts": res.attempts, "status": res.status}
    ctx.check(res.ok, f"post to #{env.bridge.channel} failed after {res.attempts} attempt(s): {res.error}")
    return f"posted to #{env.bridge.channel} (HTTP {res.status}, {res.attempts} attempt(s))"


class BridgeVerbs(CellMechanics):
    """Mixed into :class:`~cutover_lib.Runbook`: the cell-level verb ``bridge``."""

    def bridge(self, step_id: str, message: str, *, title: str | None = None, owner: str | None = None,
               vars: Mapping[str, Any] | None = None, required: bool = True) -> Result:
        """Post the runbook's ``message`` (a template over params and ``vars``) to #launch-bridge as
        step ``step_id``; expected: the bridge's webhook accepts it (the step records the attempts
        and the HTTP status)."""
        result = Result(step_id)
        channel = f"#{self.env.bridge.channel}"
        want = {"posted to": channel}
        try:
            text = render_text(message, self.env, dict(vars or {}))
        except (ParamsError, CheckFailed) as exc:
            return self._failed_step(step_id, title, owner, want, f"POST {channel}: {message}", exc, True,
                                     required, result)
        env = self.env

        def act(ctx: "StepContext") -> str:
            return post_checked(env, ctx, text, step_id)

        result.text = text
        result.record = self.step(step_id, title or _title(step_id), owner=owner or self.owner,
                                  expect=f"the message is on {channel} (the webhook accepted it)",
                                  command=f"POST {channel}: {text}", action=act, mutating=True, required=required)
        return self._restored(result)
