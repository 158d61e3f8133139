"""The runbook notebooks executed for real (papermill, nbval) against the lab.

``lab_project`` is a throwaway project root (params, notebooks, samples copied) whose
``local`` environment points at a lab started on a free block of loopback ports.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nb_helpers import free_block, lab_config, make_project


@pytest.fixture(scope="session")
def lab_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from stellaops_lab import down, up

    root = make_project(tmp_path_factory.mktemp("labproject"), free_block())
    cfg = lab_config(root)
    try:
        up(cfg)
        yield root
    finally:
        down(cfg)


@pytest.fixture
def clean_faults(lab_project: Path) -> Iterator[Path]:
    from stellaops_lab import clear_faults

    clear_faults(lab_config(lab_project))
    yield lab_project
    clear_faults(lab_config(lab_project))
