"""Expected results, as a cell writes them, and how they are compared with what was observed.

``expect`` is the runbook's "Expected Result" column as data::

    expect={"status": 200, "json": {"status": "Healthy"}}           # an HTTP request
    expect={"exit": 0, "json": {"status": "completed"}}             # a command with --output json
    expect={"status": 200, "within": "{slo.ui}", "contains": "<title>Stella Ops"}

``json`` is matched as a subset (every key named must be there with that value; :data:`ANY`
accepts any value that is present); strings in ``expect`` are templates over params.
:func:`describe` turns it into the line the status card shows as *Expected*.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["ANY", "describe", "mismatches"]


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: in an expected JSON document: any value, as long as the key is present
ANY: Any = _Any()


def mismatches(expected: Any, observed: Any, path: str = "") -> list[str]:
    """Where ``observed`` differs from ``expected`` (subset match for mappings), one line each."""
    here = path or "the document"
    if expected is ANY:
        return []
    if isinstance(expected, Mapping):
        if not isinstance(observed, Mapping):
            return [f"{here} is {_short(observed)}, not an object"]
        out: list[str] = []
        for key, want in expected.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in observed:
                out.append(f"{sub} is missing")
            else:
                out.extend(mismatches(want, observed[key], sub))
        return out
    if isinstance(expected, list):
        if not isinstance(observed, list) or len(observed) != len(expected):
            return [f"{here} is {_short(observed)}, expected {_short(expected)}"]
        return [m for i, (w, o) in enumerate(zip(expected, observed)) for m in mismatches(w, o, f"{here}[{i}]")]
    if expected != observed:
        return [f"{here} is {_short(observed)}, expected {_short(expected)}"]
    return []


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_words(doc: Mapping[str, Any], prefix: str = "") -> list[str]:
    words: list[str] = []
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            words.extend(_json_words(value, name + "."))
        elif value is ANY:
            words.append(f"{name} present")
        else:
            words.append(f"{name} = {_short(value)}")
    return words


def describe(expect: Mapping[str, Any]) -> str:
    """The expected result in words, e.g. ``HTTP 200; json status = "Healthy"; within 2s``."""
    parts: list[str] = []
    if "status" in expect:
        parts.append(f"HTTP {expect['status']}")
    if "exit" in expect:
        parts.append(f"exit {expect['exit']}")
    if "json" in expect and isinstance(expect["json"], Mapping):
        parts.append("json " + ", ".join(_json_words(expect["json"])))
    for name, value in (expect.get("headers") or {}).items():
        parts.append(f"header {name}: {value}")
    if "contains" in expect:
        where = "output" if "exit" in expect else "body"
        parts.append(f"{where} contains {_short(expect['contains'])}")
    if "within" in expect:
        parts.append(f"within {expect['within']}")
    return "; ".join(parts) or "as expected"
