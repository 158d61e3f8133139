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


@pytest.fixture(scope="session")
def _one_client() -> Iterator[httpx.Client]:
    """One client per test process: making one costs ~60 ms of CPU (an SSL context and its CA
    bundle) and nearly every lab test asks for one.  No connection is kept alive, so a service one
    test restarts leaves no stale connection for the next."""
    with httpx.Client(timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        yield client


@pytest.fixture()
def http(_one_client: httpx.Client) -> Iterator[httpx.Client]:
    """An HTTP client with no cookies from an earlier test (a web UI login stays in its test)."""
    _one_client.cookies.clear()
    yield _one_client
    _one_client.cookies.clear()


@pytest.fixture()
def clean_lab(lab: LabConfig, http: httpx.Client) -> Iterator[LabConfig]:
    """The session lab with no faults before and after the test."""
    clear_faults(lab)
    yield lab
    clear_faults(lab)
    wait_healthy(http, lab)
