"""The ``cutover`` console script.

``cutover`` and ``cutover --help`` are answered from :mod:`.help` (the top-level help as typer
renders it, kept in the source; a test compares the two) without loading typer, click or the
library: an operator's first command answers in the time Python takes to start.  The plain forms
of ``cutover params check`` go to :mod:`.params_check` without typer or click either.  Everything
else goes to :func:`cutover_lib.cli.app.main`; for ``run`` and ``plan`` the first notebook's kernel
starts booting first (:func:`cutover_lib.engine.prestart.start_early`).
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main() -> None:
    args = sys.argv[1:]
    if args == ["--help"] or not args:
        from .help import TOP_HELP

        # as click does it: --help on stdout, exit 0; no arguments on stderr, exit 2
        stream = sys.stdout if args else sys.stderr
        stream.write(TOP_HELP)
        stream.flush()
        os._exit(0 if args else 2)
    if args[:2] == ["params", "check"]:
        from .params_check import check, fast_args

        plain = fast_args(args[2:])
        if plain is not None:
            try:
                code = check(*plain)
                sys.stdout.flush()
                sys.stderr.flush()
            except BrokenPipeError:  # `| head` closed the pipe: as click ends then, quietly, 1
                code = 1
            os._exit(code)
    if args[0] in ("run", "plan") and "--help" not in args:
        try:  # the first notebook's kernel boots on the other core while the CLI loads
            from ..engine.prestart import start_early

            start_early(args[1:])
        except KeyboardInterrupt:  # before anything was run or written
            sys.stderr.write("interrupted: nothing was run\n")
            raise SystemExit(130) from None
        except Exception:  # noqa: BLE001 - the command itself starts one (or says what is wrong)
            pass
    from .app import main as full

    full()


if __name__ == "__main__":
    main()
