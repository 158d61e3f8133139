"""``python -m cutover_lib.cli``: the ``cutover`` command without its console script."""

from .entry import main

main()
