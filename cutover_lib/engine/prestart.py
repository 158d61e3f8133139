"""The first notebook's kernel, started before ``cutover run`` / ``plan`` parse their command line.

Loading the CLI, its options and the params takes about 0.3 s on 2 cores; the kernel takes
longer to boot.  :func:`start_early` (called by the console script, before typer loads) boots it
from the raw arguments; the command takes it with :func:`claim` (same project root only).
"""

from __future__ import annotations

from pathlib import Path

from .kernels import KERNEL_ENV, Kernels

__all__ = ["claim", "start_early"]


_early: Kernels | None = None


def start_early(args: list[str]) -> None:
    """Boot the first notebook's kernel before the command line is even parsed (``cutover run``
    and ``plan``: the CLI and its options load in about 0.3 s, the kernel takes longer).

    ``args`` are the command's own arguments; only ``--root`` and ``--phase`` are looked at,
    and nothing is started when either cannot be told from them (the CLI then reports the
    problem or starts the kernel itself).  :func:`claim` hands the kernel to the command.
    """
    global _early
    import atexit

    from ..errors import UsageError
    from .phases import find_root, load_phases, resolve_phase

    def option(name: str) -> str | None:
        for i, arg in enumerate(args):
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
        return None

    phase, root = option("--phase"), option("--root")
    if _early is not None or not phase:
        return
    base = Path(root).resolve() if root else find_root()
    try:
        first = load_phases(base).get(resolve_phase(base, phase), [None])[0]
    except UsageError:
        return  # (the command says what is wrong)
    if not first or not (base / "notebooks" / first).is_file():
        return
    kernels = Kernels(base, env=KERNEL_ENV)
    kernels.__enter__()
    atexit.register(kernels.close)  # the command failed before claiming it: no kernel left behind
    kernels.prepare(base / "notebooks" / first)
    _early = kernels


def claim(cwd: Path) -> Kernels | None:
    """The kernels :func:`start_early` started for this project root, once (``None`` otherwise;
    one started for another root is closed)."""
    global _early
    kernels, _early = _early, None
    if kernels is not None and kernels.cwd != Path(cwd):
        kernels.close()
        return None
    return kernels
