"""Params data into the :mod:`.models` structs with msgspec, every problem named.

msgspec builds the structs (and imports in milliseconds: ``cutover params check`` answers in
about the time Python takes to start) but stops at the first problem; :func:`problems` walks the
params along the models' types and asks msgspec about each part, so that an operator reads every
unknown key, missing key and wrong value of a file at once, each with its dotted path.
The params' own value types (durations, UTC times, base URLs, secret references) are classes
with a ``parse`` classmethod (a msgspec decode hook calls it); :func:`dump` writes them back as
params write them."""

from __future__ import annotations

import re
import types
import typing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from .durations import format_duration
from .secrets import SecretRef

__all__ = ["BaseUrl", "Problem", "build", "check", "dump", "problems", "replace"]

T = TypeVar("T")
#: (path into the params, what is wrong there)
Problem = tuple[tuple[str | int, ...], str]


class BaseUrl(str):
    """A service's base URL, without a trailing slash and without credentials in it."""

    @classmethod
    def parse(cls, value: Any) -> BaseUrl:
        if not isinstance(value, str):
            raise ValueError(f"expected a base URL like https://scanner.example, got {_kind(value)}")
        if re.match(r"^[a-z]+://[^/\s]*@", value, re.I):  # (never echoed: the part before @ may be a password)
            raise ValueError("a service URL must not hold credentials (user:password@); give them as secret "
                             "references under credentials.*")
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f'expected a base URL like https://scanner.example, got "{value}"')
        return cls(value.rstrip("/"))


def _decoder(root: Path | None) -> Any:
    def decode(typ: type, value: Any) -> Any:
        if typ is SecretRef:
            if isinstance(value, SecretRef):
                return value
            if not isinstance(value, str):
                raise ValueError(f"expected a secret reference like env:NAME, got {_kind(value)}")
            return SecretRef(value, root)
        parse = getattr(typ, "parse", None)  # Duration, UtcTime, BaseUrl
        if parse is None:
            raise NotImplementedError(typ)
        return parse(value)

    return decode


def build(data: Any, typ: type[T], root: Path | None = None) -> T:
    """``data`` (plain YAML values) as ``typ``; ``msgspec.ValidationError`` at its first problem."""
    return msgspec.convert(data, typ, dec_hook=_decoder(root), strict=False)


def check(data: Any, typ: type[T], root: Path | None = None) -> tuple[T | None, list[Problem]]:
    """``data`` as ``typ`` and no problems, or None and every problem of ``data``."""
    try:
        return build(data, typ, root), []
    except msgspec.ValidationError:
        return None, problems(data, typ, root)


def replace(obj: T, **changes: Any) -> T:
    """A copy of the params struct ``obj`` with ``changes`` (structs are frozen)."""
    return msgspec.structs.replace(obj, **changes)  # type: ignore[type-var]


def _encode(value: Any) -> Any:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, (SecretRef, str)):  # secret references; str types (BaseUrl, DockerHost)
        return str(value)
    raise NotImplementedError(type(value))


def dump(obj: Any) -> Any:
    """Plain JSON values of a params struct, as params write them (``15m``, ``...Z``, secret
    references); a struct's ``__dump__`` may reshape its own mapping."""
    out = msgspec.to_builtins(obj, enc_hook=_encode)
    return _reshape(obj, out)


def _reshape(obj: Any, out: Any) -> Any:
    if isinstance(obj, msgspec.Struct):
        for name in obj.__struct_fields__:
            out[name] = _reshape(getattr(obj, name), out[name])
        hook = getattr(obj, "__dump__", None)
        return hook(out) if hook else out
    return out


# --------------------------------------------------------------------------- every problem, with its path
def problems(data: Any, typ: Any, root: Path | None = None, path: tuple[str | int, ...] = ()) -> list[Problem]:
    """Every problem of ``data`` as ``typ`` (empty when :func:`build` succeeds)."""
    try:
        build(data, typ, root)
        return []
    except msgspec.ValidationError as exc:
        message, where = _split(str(exc))
    found = _inside(data, typ, root, path)
    if found:
        return found
    base = _bare(typ)
    if typing.get_origin(base) is typing.Literal and where == ():
        message = f"expected one of {', '.join(map(str, typing.get_args(base)))}, got {data!r}"
    return [(path + where, _wording(message))]


def _bare(typ: Any) -> Any:
    """``typ`` without ``Annotated`` constraints and without ``| None``."""
    while typing.get_origin(typ) is typing.Annotated:
        typ = typing.get_args(typ)[0]
    args = typing.get_args(typ)
    if typing.get_origin(typ) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _bare(rest[0])
    return typ


def _inside(data: Any, typ: Any, root: Path | None, path: tuple[str | int, ...]) -> list[Problem]:
    """The problems inside a mapping, list or struct (none: the problem is the value itself)."""
    if data is None:
        return []
    base = _bare(typ)
    origin = typing.get_origin(base)
    if isinstance(base, type) and issubclass(base, msgspec.Struct) and isinstance(data, dict):
        fields = {f.encode_name: f for f in msgspec.structs.fields(base)}
        found: list[Problem] = [(path + (key,), "unknown key (remove it or check its spelling)")
                                for key in data if key not in fields]
        for key, field in fields.items():
            if key in data:
                found += problems(data[key], field.type, root, path + (key,))
            elif field.required:
                found.append((path + (key,), "required key is missing"))
        return found
    if origin is list and isinstance(data, list):
        (item,) = typing.get_args(base)
        return [p for i, value in enumerate(data) for p in problems(value, item, root, path + (i,))]
    if origin is dict and isinstance(data, dict):
        _, item = typing.get_args(base)
        return [p for key, value in data.items() for p in problems(value, item, root, path + (str(key),))]
    return []


def _split(text: str) -> tuple[str, tuple[str | int, ...]]:
    """msgspec's ``"message - at `$.a[0].b`"`` as the message and the path under the value."""
    m = re.match(r"^(.*) - at `\$(.*)`$", text, re.S)
    if not m:
        return text, ()
    where: list[str | int] = []
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]", m.group(2)):
        if index == "...":
            return m.group(1), tuple(where)
        where.append(name if name else int(index))
    return m.group(1), tuple(where)


_WORDS = {"object": "a mapping", "array": "a list", "str": "a string", "int": "an integer", "float": "a number",
          "bool": "true or false", "null": "null", "bytes": "bytes"}


def _wording(message: str) -> str:
    """msgspec's wording as the rest of ``params check`` speaks: ``expected an integer >= 1``."""
    def unit(m: re.Match[str]) -> str:
        noun = {"str": "character", "array": "item", "object": "key"}.get(m.group(1), "item")
        return f"{_WORDS.get(m.group(1), m.group(1))} of at {'least' if m.group(2) == '>=' else 'most'} " \
               f"{m.group(3)} {noun}{'' if m.group(3) == '1' else 's'}"

    message = re.sub(r"`(\w+)` of length (>=|<=) (\d+)", unit, message).replace("got `bool`", "got a boolean")
    message = re.sub(r"`(\w+)`", lambda m: _WORDS.get(m.group(1), m.group(1)), message)
    return message[:1].lower() + message[1:]


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", bool: "a boolean", int: "a number", float: "a number",
            str: "a string", type(None): "null"}.get(type(value), type(value).__name__)
