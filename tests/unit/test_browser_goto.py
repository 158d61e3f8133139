"""5.web-ui's navigation: Chromium aborts a page load in flight when the host's network interfaces
change (``net::ERR_NETWORK_CHANGED``: here the Docker tests' engines add and remove bridges beside
it); the step loads the page once more, as a person would reload, and fails on anything else."""

from __future__ import annotations

import pytest
from playwright.sync_api import Error

from cutover_lib.adapters.browser import goto


class Page:
    """A stand-in for Playwright's ``Page`` (no browser starts): answers ``goto`` with the given
    outcomes in turn (an exception is raised)."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes, self.calls = list(outcomes), []

    def goto(self, url: str, wait_until: str) -> object:
        self.calls.append((url, wait_until))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


CHANGED = Error("Page.goto: net::ERR_NETWORK_CHANGED at http://127.0.0.1:18085/policy")


def test_a_load_aborted_by_a_network_change_is_tried_once_more() -> None:
    page = Page(CHANGED, "response")
    assert goto(page, "http://127.0.0.1:18085/policy") == "response"
    assert page.calls == [("http://127.0.0.1:18085/policy", "load")] * 2


def test_only_once_and_only_for_a_network_change() -> None:
    twice = Page(CHANGED, CHANGED, "never")
    with pytest.raises(Error, match="ERR_NETWORK_CHANGED"):
        goto(twice, "http://127.0.0.1:18085/")
    assert len(twice.calls) == 2
    refused = Page(Error("Page.goto: net::ERR_CONNECTION_REFUSED at http://127.0.0.1:18085/"), "never")
    with pytest.raises(Error, match="ERR_CONNECTION_REFUSED"):
        goto(refused, "http://127.0.0.1:18085/")
    assert len(refused.calls) == 1


def test_a_reload_is_named_for_the_record() -> None:
    reloaded: list[str] = []
    goto(Page(CHANGED, "response"), "http://127.0.0.1:18085/policy", reloaded)
    goto(Page("response"), "http://127.0.0.1:18085/", reloaded)
    assert reloaded == ["http://127.0.0.1:18085/policy"]
