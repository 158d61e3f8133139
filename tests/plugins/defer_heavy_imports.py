"""pytest plugin, loaded before every other (``-p`` in pyproject's addopts): the tool's import deferrals.

nbval's plugin, which pytest loads from its entry point before any conftest, imports nbformat and so
jsonschema, whose format checkers import ``rfc3987_syntax`` and compile its grammar: ~1.4 s of CPU in
every pytest process (the controller, each xdist worker, nbval's own run).  The runner and kernels defer
that import (:mod:`cutover_lib.lazy`); so do the test processes, the same way.
"""

from cutover_lib.lazy import defer_imports

defer_imports()
