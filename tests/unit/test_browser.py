"""5.web-ui in a real Chromium (Debian's, driven by Playwright) against the lab's web UI: the committed
cell logs in, waits for each page's marker within the budget and keeps a PNG of each page; a wrong
password, a page without its marker, a slow page and a missing browser each fail with one line
naming what was expected and what was seen; the password is in no record or artifact."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover_lib.errors import ToolMissing
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.config.params import load_environment, parse_overrides
from cutover_lib.engine.steps import Runbook
from nb_helpers import faults_cleared, lab_config, run_cells, started_lab

pytestmark = pytest.mark.lab

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):  # (`make test` and CI install it: there, fail)
    pytest.skip(f"no {CHROMIUM} (apt-get install chromium; `make test` installs it)", allow_module_level=True)

SMOKE = "07_smoke.ipynb"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def web_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with started_lab(tmp_path_factory.mktemp("browser")) as root:
        yield root


@pytest.fixture
def lab_root(web_lab: Path) -> Iterator[Path]:
    with faults_cleared(web_lab) as root:
        yield root


def web_ui(root: Path, tmp_path: Path, *overrides: str) -> dict:
    """The committed cell of 5.web-ui, run with the local params (and ``overrides``); its record."""
    env = load_environment("local", root / "params", parse_overrides(list(overrides)) if overrides else None)
    rb = Runbook(env, RunFolder.create(tmp_path / "executed", "local", "smoke"), root=root, notebook=SMOKE)
    run_cells(rb, SMOKE, "5.web-ui", root=root)
    rec = [r for r in rb.run.read_ledger() if r.get("step_id") == "5.web-ui"][-1]
    rec["run"] = rb.run.path
    return rec


def password(root: Path) -> str:
    return (root / ".lab" / "secrets" / "stellaops-web" / "smoke-password").read_text().strip()


def no_password_anywhere(root: Path, run: Path) -> None:
    secret = password(root).encode()
    assert len(secret) >= 16
    leaks = [str(p) for p in run.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert leaks == []


def test_logs_in_and_keeps_a_png_of_every_page(lab_root: Path, tmp_path: Path) -> None:
    rec = web_ui(lab_root, tmp_path)
    assert rec["outcome"] == "passed", rec["message"]
    assert rec["observed"].startswith("logged in as cutover-smoke; / ")
    assert "/policy " in rec["observed"] and "(< 2s); 2 screenshots kept" in rec["observed"]
    assert rec["expect"] == "logged in; every page shows its marker within 2s"
    assert "log in at /login as cutover-smoke; open / (marker 'id=\"dashboard\"'), /policy " \
           "(marker 'id=\"policy-view\"')" in rec["command"]
    shots = {Path(a).name: rec["run"] / a for a in rec["artifacts"] if a.endswith(".png")}
    assert set(shots) == {"5.web-ui.index.png", "5.web-ui.policy.png"}
    for path in shots.values():
        data = path.read_bytes()
        assert data[:8] == PNG and len(data) > 2000  # a rendered page, not an empty image
    pages = {p["path"]: p for p in rec["data"]["pages"]}
    assert set(pages) == {"/", "/policy"} and all(p["problem"] == "" and p["seconds"] < 2 for p in pages.values())
    no_password_anywhere(lab_root, rec["run"])


def test_a_wrong_password_fails_naming_the_login(lab_root: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRONG_WEB_PASSWORD", "not-the-smoke-password")
    rec = web_ui(lab_root, tmp_path, "smoke.web_login.password=env:WRONG_WEB_PASSWORD")
    assert rec["outcome"] == "failed"
    base = load_environment("local", lab_root / "params").services.web
    assert rec["message"] == (f"expected logged in; every page shows its marker within 2s; observed login at "
                              f"{base}/login as cutover-smoke refused: the login form is shown again after submit "
                              "('Wrong user name or password.')")
    assert [Path(a).name for a in rec["artifacts"] if a.endswith(".png")] == ["5.web-ui.login.png"]
    assert "not-the-smoke-password" not in json.dumps(rec, default=str)
    no_password_anywhere(lab_root, rec["run"])


def test_a_page_without_its_marker_fails_naming_page_and_marker(lab_root: Path, tmp_path: Path) -> None:
    rec = web_ui(lab_root, tmp_path, """smoke.web_pages={"/": 'id="dashboard"', "/policy": 'id="no-such-view"'}""")
    assert rec["outcome"] == "failed"
    assert "observed /policy: no 'id=\"no-such-view\"' in the page after " in rec["message"], rec["message"]
    assert "/: " not in rec["message"]  # the dashboard was fine
    assert {Path(a).name for a in rec["artifacts"] if a.endswith(".png")} == {"5.web-ui.index.png",
                                                                              "5.web-ui.policy.png"}


def test_a_slow_page_fails_the_budget(lab_root: Path, tmp_path: Path) -> None:
    from stellaops_lab import set_fault

    set_fault(lab_config(lab_root), "web", "slow", 1100)
    rec = web_ui(lab_root, tmp_path, "slo.ui=1s")
    assert rec["outcome"] == "failed"
    assert rec["message"].startswith("expected logged in; every page shows its marker within 1s; observed "
                                     "/ shows 'id=\"dashboard\"' after 1."), rec["message"]
    assert "s, over 1s; /policy shows 'id=\"policy-view\"' after 1." in rec["message"]


@pytest.mark.parametrize("how", ["no chromium", "no playwright"])
def test_a_missing_browser_is_one_clear_failure(lab_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 how: str) -> None:
    if how == "no playwright":
        monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # (import fails as if not installed)
    rec = web_ui(lab_root, tmp_path, *(["smoke.browser=/nonexistent/chromium"] if how == "no chromium" else []))
    assert rec["outcome"] == "failed"
    want = ("expected a Chromium to drive at /nonexistent/chromium; observed no such program (install Debian's "
            "chromium (apt-get install chromium) or point smoke.browser at a Chromium)") if how == "no chromium" else \
        ("expected the Python package playwright (it drives Chromium); observed it is not installed "
         "(pip install playwright (never `playwright install`))")
    assert rec["message"] == want
    assert not [a for a in rec["artifacts"] if "traceback" in a]


def test_a_required_step_raises_the_missing_browser(lab_root: Path, tmp_path: Path) -> None:
    env = load_environment("local", lab_root / "params", parse_overrides(["smoke.browser=/nonexistent/chromium"]))
    rb = Runbook(env, RunFolder.create(tmp_path / "executed", "local", "smoke"), root=lab_root, notebook=SMOKE)
    with pytest.raises(ToolMissing, match="expected a Chromium to drive at /nonexistent/chromium"):
        rb.browse("5.web-ui", "{services.web}", pages="{smoke.web_pages}", within="{slo.ui}",
                  login={"path": "{smoke.web_login.path}", "user": "{smoke.web_login.user}",
                         "password": "{smoke.web_login.password}"})


@pytest.mark.parametrize("given", ["hunter2-literal", "{smoke.web_login.user}"])
def test_a_password_that_is_not_a_secret_reference_is_refused_unechoed(lab_root: Path, tmp_path: Path,
                                                                       given: str) -> None:
    env = load_environment("local", lab_root / "params")
    rb = Runbook(env, RunFolder.create(tmp_path / "executed", "local", "smoke"), root=lab_root, notebook=SMOKE)
    res = rb.browse("5.web-ui", "{services.web}", pages="{smoke.web_pages}", within="{slo.ui}", required=False,
                    login={"path": "/login", "user": "cutover-smoke", "password": given})
    assert res.outcome == "failed"
    assert res.record["message"].startswith("the login password must be a secret reference")
    assert "hunter2" not in json.dumps(res.record, default=str)
