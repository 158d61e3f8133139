"""The phases: the notebooks each one runs, in order.  Light on purpose: the CLI reads it to
start the first notebook's kernel before it loads anything else."""

from __future__ import annotations

__all__ = ["PHASES"]

PHASES: dict[str, list[str]] = {
    "readiness": ["01_roles_and_timeline.ipynb", "02_readiness.ipynb"],
    "rehearsal": ["03_rehearsal.ipynb"],
    "cutover": ["04_preflight.ipynb", "05_apply.ipynb", "06_validation.ipynb", "07_smoke.ipynb"],
    "rollback": ["08_rollback.ipynb"],
    "post": ["09_post_cutover.ipynb", "10_rehearsal_log.ipynb"],
}
