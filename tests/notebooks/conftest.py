"""The runbook notebooks executed for real (papermill, nbval) against the lab.

``lab_project`` is a throwaway project root (params, notebooks, samples copied) whose
``local`` environment points at a lab started on a free block of loopback ports.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nb_helpers import faults_cleared, started_lab


@pytest.fixture(scope="session")
def lab_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with started_lab(tmp_path_factory.mktemp("labproject")) as root:
        yield root


@pytest.fixture
def clean_faults(lab_project: Path) -> Iterator[Path]:
    with faults_cleared(lab_project) as root:
        yield root
