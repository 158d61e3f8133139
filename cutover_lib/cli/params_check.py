"""``cutover params check``: the one implementation, called by the typer command and, for its
plain forms, straight from :mod:`.entry` without loading typer or click (a pre-flight an operator
runs again and again answers in about the time Python takes to start)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

__all__ = ["check", "fast_args"]


def _say(line: str, stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(line + "\n")


def check(env: str | None, root: Path | None, params: list[str]) -> int:
    """Validate ``params/<env>.yaml`` and the files it names and print the resolved environment
    (secrets as references); without ``env``, every environment, one line each.  The exit code."""
    from ..errors import CutoverError, report

    try:
        from ..config.files import require_files
        from ..config.params import flatten, load_environment, parse_overrides
        from ..engine.phases import find_root

        base = root.resolve() if root else find_root()
        overrides = parse_overrides(params)
        if env is None:
            return _check_every(base, overrides)
        environment = load_environment(env, base / "params", overrides)
        require_files(environment, base)
    except CutoverError as exc:
        return report(exc)
    # two plain columns (a table library cost a fifth of this command's time for the same look)
    rows = flatten(environment)
    width = max(len(key) for key, _ in rows)
    _say(f"params/{env}.yaml: valid ({len(rows)} keys; secrets shown as their references)")
    _say("\n".join(f"{key:<{width}}  {value}".rstrip() for key, value in rows))
    from ..config.files import advisories

    for line in advisories(environment, base):
        _say(f"warning: {line}", sys.stderr)
    return 0


def _check_every(base: Path, overrides: dict[str, object]) -> int:
    """``params check`` without --env: one line per environment, every problem named; 2 if any."""
    from ..config.files import require_files
    from ..config.params import available_environments, load_environment
    from ..errors import CutoverError

    names = available_environments(base / "params")
    bad = 0
    for name in names:
        try:
            require_files(load_environment(name, base / "params", overrides or None), base)
        except CutoverError as exc:
            bad += 1
            for problem in getattr(exc, "problems", None) or [exc.one_line()]:
                _say(f"error: {problem}", sys.stderr)
            continue
        _say(f"params/{name}.yaml: valid")
    if bad:
        _say(f"hint: {bad} of {len(names)} environments have problems; fix them, then run: cutover params check",
             sys.stderr)
    return 2 if bad or not names else 0


_VALUED = {"--env": "env", "-e": "env", "--root": "root", "--param": "param", "-p": "param"}


def fast_args(args: list[str]) -> tuple[str | None, Path | None, list[str]] | None:
    """(env, root, params) of ``params check``'s arguments when they are its plain options, each
    well-formed; None for anything else (``--help``, an unknown or repeated option, a missing
    value), which the full CLI then answers with click's own help or usage error."""
    found: dict[str, object] = {"param": []}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        key = _VALUED.get(name)
        if key is None:
            return None
        if not eq:
            if i + 1 >= len(args):
                return None
            value, i = args[i + 1], i + 1
        if key == "param":
            found["param"].append(value)  # type: ignore[union-attr]
        elif key in found:
            return None
        else:
            found[key] = value
        i += 1
    root = found.get("root")
    return found.get("env"), Path(root) if isinstance(root, str) else None, found["param"]  # type: ignore[return-value]
