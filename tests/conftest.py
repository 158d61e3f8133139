"""Shared fixtures: a throwaway project root, a clean secret masker, canary secrets; the order
pytest-xdist hands the tests out in (longest first, from tests/durations.json)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: seconds each slow test took (setup + call + teardown) in an earlier ``make test``; rewritten by
#: ``make test-durations``.  Only the order of the tests depends on it: a test missing from it, or a
#: stale figure, makes the run longer, never different.
DURATIONS = REPO / "tests" / "durations.json"
SLOW = 1.0  # seconds: shorter tests are not listed, and keep their collection order


def pytest_configure(config: pytest.Config) -> None:
    """The venv's interpreter is ``python3`` on PATH; the seals of the tests' runs are made with a
    throwaway operator key (per test process, and the runs and kernels it starts), never the
    ~/.config key of whoever runs the tests."""
    # `python3` on PATH is this interpreter (the venv's), for the stand-ins' `#!/usr/bin/env python3`
    # and every command the tests start: not a version manager's shim (pyenv's costs a bash start,
    # ~0.1 s of CPU, per call)
    venv_bin = Path(sys.executable).parent
    if (venv_bin / "python3").exists() and os.environ.get("PATH", "").split(os.pathsep)[0] != str(venv_bin):
        os.environ["PATH"] = os.pathsep.join([str(venv_bin), os.environ.get("PATH", "")])
    # typer's CliRunner builds the click command from the app at every invoke (~0.05 CPU-s; a few
    # hundred invokes a suite); the app does not change once imported: built once per test process,
    # as the `cutover` process builds it once
    import functools

    import typer.testing

    build = getattr(typer.testing, "_get_command", None)  # (typer's private name: without it, no cache)
    if build is not None and not hasattr(build, "cache_info"):
        typer.testing._get_command = functools.lru_cache(maxsize=None)(build)
    if "CUTOVER_OPERATOR_KEY" not in os.environ:
        folder = Path(tempfile.mkdtemp(prefix="cutover-test-operator-"))
        os.environ["CUTOVER_OPERATOR_KEY"] = str(folder / "operator-ed25519.pem")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (each worker collects, in the same order): the slowest tests first, the
    rest after in collection order.  With ``--maxschedchunk=1`` (the Makefile's) the workers take
    tests one at a time, so the long end-to-end tests start at once on every worker and short ones
    fill the end, instead of a long test drawn last keeping one worker busy alone."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    try:
        known = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return
    items.sort(key=lambda item: -float(known.get(item.nodeid, 0.0)))  # stable: ties keep their order


_took: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """``CUTOVER_RECORD_DURATIONS=1`` (``make test-durations``): the pytest-xdist controller adds up
    each test's phases (a run without workers, the Docker tests', records nothing)."""
    if os.environ.get("CUTOVER_RECORD_DURATIONS") and getattr(report, "node", None) is not None:
        _took[report.nodeid] = _took.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """... and write the slow ones, slowest first, to tests/durations.json."""
    if _took:
        slow = sorted(((k, round(v, 1)) for k, v in _took.items() if v >= SLOW), key=lambda kv: -kv[1])
        DURATIONS.write_text(json.dumps(dict(slow), indent=0) + "\n")


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
