"""Durations (``15m``) and UTC times (``2025-10-27T14:00:00Z``) as params write them."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, overload

__all__ = ["Duration", "UtcTime", "format_duration", "parse_duration", "recorded_time", "spoken_duration"]

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """``15m`` / ``2s`` / ``500ms`` / ``4h`` (or a number of seconds) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    m = _DUR.match(str(value)) if isinstance(value, str) else None
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    if not (m or number):
        raise ValueError(f'expected a duration like 15m, got "{value}"')
    try:
        return timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2)] if m else value)
    except (OverflowError, ValueError):  # (beyond timedelta's 999,999,999 days, or not a number: nan)
        raise ValueError(f'expected a duration like 15m, got "{value}" (out of range)') from None


def format_duration(td: timedelta) -> str:
    """The shortest exact spelling helm and humans read: 900 s -> ``15m``."""
    s = td.total_seconds()
    for unit in ("d", "h", "m", "s"):
        n = s / _UNIT[unit]
        if n >= 1 and n == int(n):
            return f"{int(n)}{unit}"
    return f"{int(round(s * 1000))}ms"


def recorded_time(value: Any) -> datetime | None:
    """A time as the evidence records it (ISO 8601, ``Z`` or an offset); None when it is not one."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def spoken_duration(td: timedelta) -> str:
    """A span as people say it, to the unit that matters: ``398d 10h``, ``2h 05m``, ``12m``, ``1m 05s``, ``40s``."""
    s = int(abs(td.total_seconds()))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d {h}h" if d else f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if s else f"{m}m") if m else f"{s}s"


class Duration(timedelta):
    """A params duration: a timedelta that params write as ``15m`` (:func:`parse_duration`; the params
    table shows it the same way, :func:`format_duration`)."""

    @classmethod
    def parse(cls, value: Any) -> "Duration":
        td = parse_duration(value)
        return cls(days=td.days, seconds=td.seconds, microseconds=td.microseconds)


def _parse_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f'expected a UTC time like 2025-10-27T14:00:00Z, got "{value}"') from None
    else:
        raise ValueError(f'expected a UTC time like 2025-10-27T14:00:00Z, got "{value}"')
    if dt.tzinfo is None:
        raise ValueError(f'expected a UTC time with a zone (…Z), got "{value}"')
    try:
        return dt.astimezone(timezone.utc)
    except OverflowError:  # (year 1 or 9999 with an offset)
        raise ValueError(f'expected a UTC time like 2025-10-27T14:00:00Z, got "{value}" (out of range)') from None


class UtcTime(datetime):
    """A params time: an aware datetime in UTC, written ``2025-10-27T14:00:00Z``."""

    if TYPE_CHECKING:  # as any aware datetime's: the difference to another datetime, or a datetime
        @overload  # type: ignore[override, no-overload-impl]
        def __sub__(self, other: datetime) -> timedelta: ...
        @overload
        def __sub__(self, other: timedelta) -> datetime: ...

    @classmethod
    def parse(cls, value: Any) -> "UtcTime":
        dt = _parse_utc(value)
        return cls(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond, tzinfo=timezone.utc)

