"""Fixtures for the lab tests: free loopback ports, a session lab, an HTTP client.

The session lab is started once in a temporary folder (scan duration 0.5 s) and stopped at
the end; tests that need their own lifecycle start a private lab on other free ports.
Set ``CUTOVER_TEST_LAB_PORT_BASE`` to use fixed ports instead of free ones (pick a base
below the ephemeral range, e.g. 21000: each lab takes base+10*n .. +6).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from stellaops_lab import LabConfig, clear_faults, down, up
from lab_helpers import make_config, wait_healthy


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabConfig]:
    config = make_config(tmp_path_factory.mktemp("lab"))
    try:
        up(config)
        yield config
    finally:
        down(config)


@pytest.fixture()
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


@pytest.fixture()
def clean_lab(lab: LabConfig, http: httpx.Client) -> Iterator[LabConfig]:
    """The session lab with no faults before and after the test."""
    clear_faults(lab)
    yield lab
    clear_faults(lab)
    wait_healthy(http, lab)
