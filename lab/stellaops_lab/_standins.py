"""Install the lab's stand-in executables (``stellaops-cli``, ``dotnet``) into a bin folder.

The runbook's CLIs run as real commands whose program comes from params; against the lab
these wrappers are those programs. Each is a two-line ``/bin/sh`` script that execs the
Python that installed it on the stand-in module (:mod:`stellaops_lab.stellaops_cli`,
:mod:`stellaops_lab.dotnet_standin`), so they work from any working directory as long as
that interpreter can import ``cutover_lib``.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

from ._errors import LabError

__all__ = ["STANDINS", "install_standins", "wrapper_text"]

#: executable name -> module under ``stellaops_lab``
STANDINS: dict[str, str] = {
    "stellaops-cli": "stellaops_cli",
    "dotnet": "dotnet_standin",
}


def wrapper_text(module: str, interpreter: str | None = None) -> str:
    python = interpreter if interpreter is not None else sys.executable
    if not python:
        raise LabError("cannot write the lab stand-in wrappers: sys.executable is unknown")
    return f'#!/bin/sh\nexec {shlex.quote(python)} -m stellaops_lab.{module} "$@"\n'


def install_standins(bin_dir: Path) -> list[Path]:
    """Write ``stellaops-cli`` and ``dotnet`` into ``bin_dir`` (mode 0755, atomically).

    Each file is written to a temporary name in ``bin_dir`` and renamed over the old one, so
    a command running at that moment sees either the old or the new wrapper, never half.
    Returns the paths written, in :data:`STANDINS` order.
    """
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, module in STANDINS.items():
        target = bin_dir / name
        fd, tmp_name = tempfile.mkstemp(dir=bin_dir, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(wrapper_text(module))
            os.chmod(tmp_name, 0o755)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        written.append(target)
    return written
