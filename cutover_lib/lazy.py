"""Deferred third-party imports that would otherwise cost seconds before the first step.

``nbformat`` (and so papermill and nbconvert) imports ``jsonschema`` at module level, and
``jsonschema._format`` imports ``rfc3987_syntax`` when it is installed (it is, through
``jupyter_events`` -> ``jsonschema[format-nongpl]``).  ``rfc3987_syntax`` compiles its Lark
grammar at import: 1.2-3 s on a 2-core machine, for a format check (``iri``) that notebook
validation never uses (python-jsonschema/jsonschema issue 1428).

:func:`defer_rfc3987_syntax` puts a small stand-in module under that name *before* jsonschema
looks for it.  Its ``is_valid_syntax`` loads the real package on first call and delegates to
it, so any schema that does validate an ``iri`` gets exactly the real check, just later.
The GPL ``rfc3987`` package, which jsonschema would prefer, is not an option for an
Apache-2.0 tool.  Nothing happens when the real package is not installed or already loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

__all__ = ["defer_rfc3987_syntax"]

_NAME = "rfc3987_syntax"


class _Deferred(types.ModuleType):
    """Stands in for ``rfc3987_syntax`` until something really needs it."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system probes __path__, __spec__, ...: not a use
            raise AttributeError(name)
        return getattr(_load_real(), name)


def _load_real() -> types.ModuleType:
    current = sys.modules.get(_NAME)
    if current is not None and not isinstance(current, _Deferred):
        return current
    sys.modules.pop(_NAME, None)
    try:
        return importlib.import_module(_NAME)
    except BaseException:
        if current is not None:
            sys.modules[_NAME] = current
        raise


def _is_valid_syntax(term: str, value: str) -> bool:
    return bool(_load_real().is_valid_syntax(term, value))


def defer_rfc3987_syntax() -> None:
    """Install the deferred ``rfc3987_syntax`` (idempotent; a no-op when it is absent)."""
    if _NAME in sys.modules or "jsonschema._format" in sys.modules:
        return
    try:
        if importlib.util.find_spec(_NAME) is None:
            return
    except (ImportError, ValueError):
        return
    stand_in = _Deferred(_NAME, __doc__)
    stand_in.is_valid_syntax = _is_valid_syntax  # type: ignore[attr-defined]
    sys.modules[_NAME] = stand_in
