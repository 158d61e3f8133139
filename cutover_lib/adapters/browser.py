"""The browser adapter: a real Chromium, driven by Playwright, for the Web UI smoke test.

"Manual login, verify dashboards render and latency within budget" as a person would do it: open
the login form, fill in the account, submit, then load each page and wait until its marker (text
its HTML must contain) is there.  Each page's load time is measured from the navigation to the
marker; a PNG screenshot of each page (and of the login form when the login fails) is handed to
``keep``.  Everything site-specific -- URLs, selectors, markers, the account -- comes from the
caller (params); nothing here knows a platform.

Playwright's own browser download cannot work on the machines this runs on: it drives the
Chromium at ``executable`` (Debian's ``chromium``).  Playwright is imported only when a browser is
needed, and its errors become :class:`ToolMissing` (no Playwright, no Chromium, Chromium will not
start) or :class:`CheckFailed` (the login or a page failed) here, at the edge.  The sync API runs
in a worker thread: inside a Jupyter kernel an asyncio loop is running, which it refuses.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import CheckFailed, ToolMissing

if TYPE_CHECKING:  # pragma: no cover
    from playwright.sync_api import Page

__all__ = ["LoginForm", "PageSeen", "visit"]

#: Chromium runs as root in containers and CI, where its sandbox cannot start
_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
_HAS_MARKER = "marker => document.documentElement.outerHTML.includes(marker)"
_INSTALL = "install Debian's chromium (apt-get install chromium) or point smoke.browser at a Chromium"

Keep = Callable[[str, bytes], None]


@dataclass(frozen=True)
class LoginForm:
    """Where and how to log in; ``password`` is the resolved secret (never shown)."""

    url: str
    user: str
    password: str = field(repr=False)
    user_field: str
    password_field: str
    submit: str


@dataclass(frozen=True)
class PageSeen:
    """One page as the browser saw it: seconds to its marker, or the problem (empty: none)."""

    path: str
    marker: str
    seconds: float
    problem: str = ""
    reloaded: bool = False  # loaded a second time: Chromium aborted the first (the host's network changed)


def shot_name(path: str) -> str:
    """A page path as a file name part: ``/`` -> ``index``, ``/policy/x`` -> ``policy-x``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", path.strip("/")).strip("-") or "index"


def visit(base_url: str, login: LoginForm, pages: Mapping[str, str], *, executable: str, timeout_s: float,
          keep: Keep) -> list[PageSeen]:
    """Log in with ``login``, then load each ``path -> marker`` of ``pages`` under ``base_url``.

    Raises :class:`ToolMissing` when Playwright or Chromium is missing or will not start, and
    :class:`CheckFailed` when the login fails; a page's own problem is in its :class:`PageSeen`."""
    exe = executable if os.sep in executable else (shutil.which(executable) or executable)
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise ToolMissing(f"expected a Chromium to drive at {executable}; observed no such program", hint=_INSTALL)
    try:
        import playwright.sync_api  # noqa: F401 - lazily: a browser is needed only here
    except ImportError:
        raise ToolMissing("expected the Python package playwright (it drives Chromium); observed it is not "
                          "installed", hint="pip install playwright (never `playwright install`)") from None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="browser") as pool:
        return pool.submit(_visit, base_url, login, pages, exe, timeout_s, keep).result()


def _visit(base_url: str, login: LoginForm, pages: Mapping[str, str], exe: str, timeout_s: float,
           keep: Keep) -> list[PageSeen]:
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=exe, args=_ARGS, timeout=max(timeout_s, 30) * 1000)
        except Error as exc:
            raise ToolMissing(f"expected Chromium at {exe} to start; observed {_first_line(exc)}",
                              hint=_INSTALL) from None
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(timeout_s * 1000)
            _log_in(page, login, keep, timeout_s)
            return [_load(page, base_url.rstrip("/") + path, path, marker, login, timeout_s, keep)
                    for path, marker in pages.items()]
        finally:
            browser.close()


def _log_in(page: "Page", login: LoginForm, keep: Keep, timeout_s: float) -> None:
    """Fill in and submit the form; still seeing a password field afterwards means it was refused.
    The submit is two requests (the form's POST, then the page its redirect names): twice the time."""
    from playwright.sync_api import Error

    where = f"login at {login.url} as {login.user}"
    try:
        goto(page, login.url)
        page.fill(login.user_field, login.user)
        page.fill(login.password_field, login.password)
        with page.expect_navigation(wait_until="load", timeout=2 * timeout_s * 1000):
            page.click(login.submit, timeout=2 * timeout_s * 1000)
        refused = page.locator(login.password_field).count() > 0
    except Error as exc:
        _keep_shot(page, "login", keep)
        raise CheckFailed(f"{where}: {_first_line(exc)}") from None
    if refused:
        _keep_shot(page, "login", keep)
        said = _alert(page)
        raise CheckFailed(f"{where} refused: the login form is shown again after submit"
                          + (f" ({said!r})" if said else ""))


def _load(page: "Page", url: str, path: str, marker: str, login: LoginForm, timeout_s: float,
          keep: Keep) -> PageSeen:
    """Navigate and wait for the marker; the seconds are from the navigation to the marker."""
    from playwright.sync_api import Error, TimeoutError

    start = time.monotonic()
    again: list[str] = []
    try:
        response = goto(page, url, again)
        if urlsplit(page.url).path == urlsplit(login.url).path != urlsplit(url).path:
            problem = "sent back to the login form (the session did not hold)"
        elif response is not None and response.status >= 400:
            problem = f"HTTP {response.status}"
        else:
            page.wait_for_function(_HAS_MARKER, arg=marker, timeout=timeout_s * 1000)
            problem = ""
    except TimeoutError:
        problem = f"no {marker!r} in the page after {time.monotonic() - start:.1f}s"
    except Error as exc:
        problem = _first_line(exc)
    seconds = time.monotonic() - start
    _keep_shot(page, shot_name(path), keep)
    return PageSeen(path, marker, seconds, problem, reloaded=bool(again))


#: Chromium aborts a navigation in flight when the host's network interfaces change (a container
#: engine adding or removing a bridge, a VPN coming up): not an answer of the web UI
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"


def goto(page: "Page", url: str, reloaded: list[str] | None = None) -> Any:
    """``page.goto(url)`` until loaded; a navigation aborted by a network change on this host is
    tried once more, as a person would reload (the time of both counts against the budget), and
    ``url`` is added to ``reloaded`` so the record can say so."""
    from playwright.sync_api import Error

    try:
        return page.goto(url, wait_until="load")
    except Error as exc:
        if NETWORK_CHANGED not in str(getattr(exc, "message", "") or exc):
            raise
    if reloaded is not None:
        reloaded.append(url)
    return page.goto(url, wait_until="load")


def _keep_shot(page: "Page", name: str, keep: Keep) -> None:
    from playwright.sync_api import Error

    try:
        keep(name, page.screenshot(full_page=True))
    except Error:
        pass  # a page that cannot be drawn has its problem recorded already


def _alert(page: "Page") -> str:
    """What the page says is wrong (an ARIA alert), if anything."""
    from playwright.sync_api import Error

    try:
        alerts = page.locator('[role="alert"]')
        return alerts.first.inner_text(timeout=1000).strip()[:120] if alerts.count() else ""
    except Error:
        return ""


def _first_line(exc: Any) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
