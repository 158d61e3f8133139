"""What a cell's step observed, handed to the cells after it, and the small helpers of the cell verbs."""

from __future__ import annotations

import json as _json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..config.secrets import mask
from ..config.template import Missing
from ..errors import ParamsError

if TYPE_CHECKING:  # pragma: no cover
    from .steps import StepContext

__all__ = ["Check", "NamedCheck", "Result", "StepRecord"]

Check = Callable[["StepContext", "Result"], "str | None"]


class Result:
    """What a step observed, for the cells after it: outcome, exit code or HTTP status, output."""

    def __init__(self, step_id: str) -> None:
        self.step_id = step_id
        self.record: dict[str, Any] = {}
        self.exit: int | None = None
        self.status: int | None = None
        self.text: str = ""  # stdout of a command, body of a response
        self.headers: dict[str, str] = {}  # of a response, names in lower case
        self.json: Any = None
        self.elapsed_s: float = 0.0
        self.node: Any = None  # the compose node a per-node check is looking at
        self.values: dict[str, Any] = {}  # what a then-check derived for later cells (e.g. rollback_to)
        self.vars: dict[str, Any] = {}  # the names the cell's template was filled with ({now}, vars=...)

    @property
    def outcome(self) -> str:
        return str(self.record.get("outcome", "not run"))

    @property
    def ok(self) -> bool:
        return self.outcome in ("passed", "skipped", "waived")

    def __getitem__(self, path: str) -> Any:
        """A value of the parsed output by dotted path; :class:`Missing` (which fails any step that
        uses it, naming this one) when this step produced none."""
        if path in self.values:
            return self.values[path]
        node = self.json
        for part in path.split("."):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                why = "it was planned, not run (dry run)" if self.outcome == "planned" else \
                      f"its output has no {path}" if self.outcome == "passed" else f"it {self.outcome}"
                return Missing(f"step {self.step_id} gave no {path}: {why}")
        return node

    def __repr__(self) -> str:
        return f"<Result {self.step_id} {self.outcome}>"

    def _ipython_display_(self) -> None:
        """As a cell's last value: nothing -- the step's card is already there (``print(res)`` shows it)."""


class StepRecord(dict):  # type: ignore[type-arg]
    """A step's ledger record, as ``rb.step`` returns it.  As a cell's last value it shows nothing:
    the step's card is already there, not 25 lines of its record (``print(rec)`` or ``dict(rec)``)."""

    def _ipython_display_(self) -> None:
        pass


class NamedCheck:
    """A ``then`` check with the words the status card shows as part of *Expected*."""

    def __init__(self, expect: str, fn: Callable[["StepContext", "Result"], "str | None"]) -> None:
        self.expect, self._fn = expect, fn

    def __call__(self, ctx: "StepContext", result: "Result") -> str | None:
        return self._fn(ctx, result)



_KEEP_BYTES = 64 * 1024
_WHOLE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_.-]*)\}$")


_SECRET_FIELD = re.compile(r"\{[A-Za-z_][A-Za-z0-9_.-]*\}")


def _clock() -> dict[str, str]:
    """The time names a cell may use: ``{now}`` as ``date -Iseconds`` (UTC), ``{now_minute}`` as
    ``date +%Y%m%d%H%M`` (UTC)."""
    import time

    t = time.gmtime()
    return {"now": time.strftime("%Y-%m-%dT%H:%M:%SZ", t), "now_minute": time.strftime("%Y%m%d%H%M", t)}


def _word(value: Any) -> str:
    return "true" if value is True else "false" if value is False else "unset" if value is None else str(value)


def _observed(ctx: "StepContext", node: Any, text: str) -> str:
    """A step's failure names expected and observed; on a node, the node's part names only what it saw
    (the step then says "expected ...; observed node NAME: ...")."""
    return text if node is not None else f"expected {ctx.expect}; observed {text}"


def _host(node: Any) -> dict[str, str]:
    return {"DOCKER_HOST": node.docker_host}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def _item_name(item: Mapping[str, Any]) -> str:
    return "-".join(str(v) for v in item.values())


def _keep(ctx: "StepContext", result: Result, node: str | None = None) -> None:
    """Parsed output goes into the step's record (masked, like all of it) when small enough, so a
    resumed run can hand it on; always into an artifact (one per node on compose nodes)."""
    if result.json is None:
        return
    text = _json.dumps(result.json, indent=2, default=str)
    ctx.artifact(f"{ctx.step_id}{'.' + _safe(node) if node else ''}.json", text)
    if len(text) <= _KEEP_BYTES and node is None:
        ctx.data["output"] = result.json


def _seconds(value: float) -> str:
    from datetime import timedelta

    from ..config.params import format_duration

    return format_duration(timedelta(seconds=value))


def _title(step_id: str) -> str:
    words = step_id.rsplit(".", 1)[-1].replace("-", " ")
    return words[:1].upper() + words[1:]


def _no_credentials_in(url: str, template: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        raise ParamsError([f"`{template}` does not give a URL"]) from None
    if parts.username or parts.password:
        raise ParamsError([f"`{template}` puts credentials in the URL"],
                          hint="remove user:password@ from services.* in params; credentials go in secret references")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ParamsError([f"`{template}` gives {mask(url)!r}, not an http(s) URL"],
                          hint="check services.* in params")


