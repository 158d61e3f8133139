"""Run one notebook with papermill in a child process (``python -m cutover_lib._pm SPEC``).

The runner starts this in its own process group so that a whole-notebook deadline can stop
a hung kernel for certain (killing the group takes the kernel with it).  The result -- ok,
or the exception's name and value -- is printed as one JSON line on stdout.
"""

from __future__ import annotations

import json
import sys


def _die_with_parent() -> None:
    """If the runner is killed (kill -9, a crashed host session), take this process down too, so
    no papermill run goes on unsupervised; the kernel's own parent poller then stops the kernel."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the deadline still bounds the run
        pass


def main() -> int:
    _die_with_parent()
    spec = json.loads(sys.argv[1])
    from ._runner import _kernel_manager_class

    import papermill

    try:
        papermill.execute_notebook(
            spec["input"], spec["output"], parameters=spec["parameters"], cwd=spec["cwd"], kernel_name="python3",
            progress_bar=False, log_output=False, request_save_on_cell_execute=True,
            execution_timeout=spec["cell_timeout"], kernel_manager_class=_kernel_manager_class())
    except Exception as exc:  # noqa: BLE001 - reported to the runner as data
        ename = getattr(exc, "ename", None) or type(exc).__name__
        evalue = getattr(exc, "evalue", None) or (str(exc).strip().splitlines() or [""])[-1]
        print(json.dumps({"ok": False, "ename": ename, "evalue": str(evalue)}))
        return 1
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
