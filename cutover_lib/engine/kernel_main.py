"""The run kernels' program: ipykernel's, without its debugger.

A cutover run's kernel has no front end to debug from, but ipykernel imports ``debugpy`` at
start when it is installed (JupyterLab brings it) and wires a debugger into every cell: about
0.25 s of a lab plan.  JupyterLab's own kernels are untouched.
"""

import sys


def main() -> None:
    sys.modules.setdefault("debugpy", None)  # type: ignore[arg-type]  # -> ImportError: no debugger
    from ipykernel.kernelapp import launch_new_instance

    launch_new_instance()


if __name__ == "__main__":
    main()
