"""Command and request templates: the runbook's text, filled in from params.

A cell writes the runbook's own command with ``{dotted.names}`` where params differ per
environment::

    docker compose --env-file {compose.env_file} -f {compose.file} pull
    GET {services.scanner}/healthz

Names are looked up in the cell's own values first (``vars``), then in the environment's
params, where ``compose`` and ``helm`` are short for ``deploy.compose`` and ``deploy.helm``.
In a command each value is shell-quoted, so a value can never add words or operators to the
command; lists become several words.  A secret reference can never be rendered into a
command line or URL (it would show in ``ps`` and in evidence): pass it through ``env=``.
An unknown name is a params error naming the template and the key.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from msgspec import Struct

from ..errors import CheckFailed, ParamsError
from .secrets import SecretRef

__all__ = ["ALIASES", "Missing", "NotNeeded", "lookup", "render_args", "render_text", "render_value"]

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\}")

#: short names a cell may use for long params paths
ALIASES = {"compose": "deploy.compose", "helm": "deploy.helm"}


class Missing:
    """A value a cell needs from an earlier step that did not produce it (it failed)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"<missing: {self.what}>"

    def __iter__(self) -> "Iterator[Any]":
        """Nothing to go through (``for image in kit["images"]``): the step that gave no value
        is the failure on record, and the cells after it have nothing to check."""
        return iter(())


class NotNeeded(Missing):
    """A value an earlier step decided is not needed: the step that would use it does not apply
    (e.g. no helm revision to roll back to because ``--atomic`` already rolled back)."""


def lookup(root: Any, name: str, values: Mapping[str, Any] | None = None) -> Any:
    """The value of ``name`` (dotted) in ``values``, then in ``root`` (params).  ``KeyError`` if absent."""
    head, _, rest = name.partition(".")
    if values is not None and head in values:
        node: Any = values[head]
        parts = rest.split(".") if rest else []
    else:
        full = ALIASES.get(head, head) + (f".{rest}" if rest else "")
        node, parts = root, full.split(".")
    for part in parts:
        if isinstance(node, Mapping):
            if part not in node:
                raise KeyError(name)
            node = node[part]
        elif isinstance(node, Struct) and (part in node.__struct_fields__
                                           or isinstance(getattr(type(node), part, None), property)):
            node = getattr(node, part)
        else:
            raise KeyError(name)
        if node is None:
            raise KeyError(name)
    return node


def render_value(value: Any) -> str | list[str]:
    """One params value as text (a list as several words): durations as ``15m``, booleans as ``true``."""
    from .params import format_duration

    if isinstance(value, SecretRef):
        raise TypeError("secret")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for item in value:
            one = render_value(item)
            out.extend(one if isinstance(one, list) else [one])
        return out
    if isinstance(value, (Mapping, Struct)):
        raise TypeError("mapping")
    return str(value)


def _substitute(template: str, root: Any, values: Mapping[str, Any] | None,
                fmt: Callable[[str | list[str]], str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        try:
            value = lookup(root, name, values)
        except KeyError:
            raise ParamsError([f"{{{name}}} in `{template}` is not set in params"],
                              hint="set it in params/<env>.yaml, or correct the name in the notebook cell") from None
        if isinstance(value, Missing):  # an earlier step failed: this one fails too (not a params error)
            raise CheckFailed(f"{{{name}}} has no value: {value.what}")
        if isinstance(value, str) and name.partition(".")[0] not in (values or {}) \
                and _FIELD.search(value):  # a params value that is itself a template ({release} in a path)
            value = render_text(value, root, values)
        try:
            return fmt(render_value(value))
        except TypeError as exc:
            if str(exc) == "secret":
                raise ParamsError([f"{{{name}}} in `{template}` is a secret reference; a secret never goes "
                                   f"into a command line, URL or message"],
                                  hint="a command gets it through env= (an environment variable) or secret_files=; "
                                       "a request through auth=; a message or invite never holds one") from None
            raise ParamsError([f"{{{name}}} in `{template}` is a mapping, not a value"],
                              hint="name one of its keys") from None

    return _FIELD.sub(one, template)


def render_text(template: str, root: Any, values: Mapping[str, Any] | None = None) -> str:
    """A URL or message: values as they are (lists joined with commas).  A params value may itself
    be a template (``smoke.runtime_event_query: "GET {services.runtime}/..."``): filled in too."""
    text = template
    for _ in range(4):
        filled = _substitute(text, root, values, lambda v: ",".join(v) if isinstance(v, list) else v)
        if filled == text or not _FIELD.search(filled):
            return filled
        text = filled
    return text


def render_args(template: str, root: Any, values: Mapping[str, Any] | None = None) -> list[str]:
    """A command line as argv: each value shell-quoted, so it stays one word (a list: several)."""
    line = _substitute(template, root, values,
                       lambda v: " ".join(shlex.quote(x) for x in v) if isinstance(v, list) else shlex.quote(v))
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise ParamsError([f"the command `{template}` cannot be split into words: {exc}"],
                          hint="check the quotes in the notebook cell") from None
