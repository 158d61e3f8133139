"""Shared fixtures: a throwaway project root, a clean secret masker, canary secrets."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """The seals of the tests' runs are made with a throwaway operator key (per test process, and
    the runs and kernels it starts), never the ~/.config key of whoever runs the tests."""
    if "CUTOVER_OPERATOR_KEY" not in os.environ:
        folder = Path(tempfile.mkdtemp(prefix="cutover-test-operator-"))
        os.environ["CUTOVER_OPERATOR_KEY"] = str(folder / "operator-ed25519.pem")


@pytest.fixture(autouse=True)
def _clean_masker(monkeypatch: pytest.MonkeyPatch):
    from cutover_lib.config import secrets as _secrets

    _secrets._forget_all_for_tests()
    monkeypatch.delenv("CUTOVER_ROOT", raising=False)
    yield
    _secrets._forget_all_for_tests()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of params/, notebooks/ and samples/ in a temporary root (runs write executed/ there)."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("params", "notebooks", "samples", "deploy", "secrets"):
        src = REPO / name
        if src.exists():
            shutil.copytree(src, root / name)
    return root


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on: bound and held (never listening) for the whole test, so
    connections are refused and no other process -- a parallel test -- can start listening there."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()
