"""Shared fixtures: a throwaway project root, a clean secret masker, canary secrets."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_masker(monkeypatch: pytest.MonkeyPatch):
    from cutover_lib import _secrets

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
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connections are refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
