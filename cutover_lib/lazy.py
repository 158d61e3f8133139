"""Deferred third-party imports that would otherwise cost the tool time before its first step.

Two modules that the packages we build on import eagerly, for features a cutover never uses:

- ``rfc3987_syntax``: ``nbformat`` (and so papermill and nbconvert) imports ``jsonschema`` at
  module level, and ``jsonschema._format`` imports ``rfc3987_syntax`` when it is installed (it
  is, through ``jupyter_events`` -> ``jsonschema[format-nongpl]``).  It compiles its Lark
  grammar at import: 1.2-3 s on a 2-core machine, for a format check (``iri``) that notebook
  validation never uses (python-jsonschema/jsonschema issue 1428).  The GPL ``rfc3987``
  package, which jsonschema would prefer, is not an option for an Apache-2.0 tool.
- ``httpx._main``: ``httpx/__init__`` imports its command-line client, which imports click,
  pygments and rich's console, progress, syntax and table modules when they are installed (they
  are: typer and rich bring them) -- ~90 ms in the runner and again in every kernel, doubling
  ``import httpx`` for a CLI nobody runs from here (encode/httpx pull request 3547).

:func:`defer_imports` puts a small stand-in module under each name *before* anything looks for
it.  The stand-in's functions load the real module on first call and delegate to it, so a
schema that validates an ``iri`` gets exactly the real check and ``httpx.main()`` the real CLI,
just later.  Nothing happens for a module that is not installed or already loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["defer_imports"]

#: module -> (its functions that importers take at import time, a module whose presence means
#: it is too late: the real one was or is being imported)
_DEFERRED = {
    "rfc3987_syntax": (("is_valid_syntax",), "jsonschema._format"),
    "httpx._main": (("main",), "httpx"),
}


class _Deferred(types.ModuleType):
    """Stands in for a module until something really needs it."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system probes __path__, __spec__, ...: not a use
            raise AttributeError(name)
        return getattr(_load_real(self.__name__), name)


def _load_real(name: str) -> types.ModuleType:
    current = sys.modules.get(name)
    if current is not None and not isinstance(current, _Deferred):
        return current
    sys.modules.pop(name, None)
    try:
        return importlib.import_module(name)
    except BaseException:
        if current is not None:
            sys.modules[name] = current
        raise


def _forward(module: str, function: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(_load_real(module), function)(*args, **kwargs)

    call.__name__ = call.__qualname__ = function
    call.__doc__ = f"``{module}.{function}``, imported at its first call (see cutover_lib.lazy)."
    return call


def _installed(name: str) -> bool:
    """Whether ``name`` can be imported, found without importing it or its package (the
    package's ``__init__`` is what would import it)."""
    from importlib.machinery import PathFinder

    package, _, module = name.rpartition(".")
    try:
        if not package:
            return importlib.util.find_spec(name) is not None
        parent = importlib.util.find_spec(package)
        locations = parent.submodule_search_locations if parent is not None else None
        return bool(locations) and PathFinder.find_spec(module, list(locations)) is not None
    except (ImportError, ValueError):
        return False


def defer_imports() -> None:
    """Install the deferred modules (idempotent; each a no-op when absent or already loaded)."""
    for name, (functions, importer) in _DEFERRED.items():
        if name in sys.modules or importer in sys.modules or not _installed(name):
            continue
        stand_in = _Deferred(name, f"Deferred by cutover_lib.lazy: the real {name} loads at first use.")
        for function in functions:
            setattr(stand_in, function, _forward(name, function))
        sys.modules[name] = stand_in
