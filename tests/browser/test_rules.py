"""The rules pages in Chromium: edit a rule and simulate it before saving (the issue's
journey), by keyboard, to one commit by the signed-in token; an invalid edit with its
errors at the fields; a viewer who may simulate and nothing more; every state axe-clean,
light and dark, wide and at 375 px."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from playwright.sync_api import BrowserContext, Page, Request, expect

from tests.browser.conftest import StartGrove
from tests.browser.pages import axe_clean, signed_in
from tests.browser.serving import GroveServer


class Inflight:
    """The page's requests still running (its event stream aside): a navigation started
    while the favicon of the last page is on its way cuts that request, which the console
    gate rightly reports; a journey waits for them first, as a person's next click does."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.pending: set[Request] = set()
        self.last = time.monotonic()
        page.on("request", self._started)
        page.on("requestfinished", self._ended)
        page.on("requestfailed", self._ended)

    def _started(self, request: Request) -> None:
        if request.resource_type != "eventsource":
            self.pending.add(request)
            self.last = time.monotonic()

    def _ended(self, request: Request) -> None:
        self.pending.discard(request)
        self.last = time.monotonic()

    def settle(self, timeout_s: float = 10, quiet_s: float = 0.3) -> None:
        """Until nothing runs and nothing started for ``quiet_s`` (the favicon is asked
        for only after the page's load event)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (
            self.pending or time.monotonic() - self.last < quiet_s
        ):
            self.page.wait_for_timeout(50)


def _editor(page: Page, server: GroveServer, role: str = "operator") -> Inflight:
    inflight = Inflight(page)
    signed_in(page, server.token(role), server.url)
    inflight.settle()
    page.goto(f"{server.url}/rules")
    expect(page.get_by_role("heading", level=1, name="Routing rules")).to_be_visible()
    axe_clean(page)
    size = page.viewport_size
    width = page.evaluate("document.documentElement.scrollWidth")
    assert size is None or width <= size["width"], f"the list scrolls sideways ({width} px)"
    inflight.settle()
    page.get_by_role("link", name="think").click()
    expect(page.get_by_role("heading", level=1, name="Rule think")).to_be_visible()
    axe_clean(page)
    inflight.settle()
    return inflight


def test_edit_a_rule_and_simulate_it_before_saving_by_keyboard(
    page: Page, start_grove: StartGrove
) -> None:
    server = start_grove()
    before = server.git("log", "--format=%an").splitlines()
    inflight = _editor(page, server)
    page.get_by_label("Chain").fill("gamma\nbeta")
    page.get_by_label("Chain").focus()
    page.keyboard.press("Tab")  # the chain's list of known ids, then on to the buttons
    page.get_by_role("button", name="Simulate").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("The edit changes the pick: alpha → gamma.")).to_be_visible()
    now = page.get_by_role("region", name="Now")
    after = page.get_by_role("region", name="After the edit")
    expect(now.get_by_role("link", name="alpha")).to_be_visible()
    expect(after.get_by_role("link", name="gamma")).to_be_visible()
    expect(page.get_by_label("Chain")).to_have_value("gamma\nbeta")  # the edit is kept
    axe_clean(page)
    assert server.git("log", "--format=%an").splitlines() == before  # nothing committed yet
    inflight.settle()
    page.get_by_role("button", name="Preview the commit").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Preview: nothing is committed yet")).to_be_visible()
    axe_clean(page)
    inflight.settle()
    page.get_by_role("button", name="Save").focus()
    page.keyboard.press("Enter")
    expect(
        page.get_by_role("heading", name="Saved: one commit to the fleet repository")
    ).to_be_visible()
    expect(page.get_by_label("Chain")).to_have_value("gamma\nbeta")  # the live rule now
    axe_clean(page)
    inflight.settle()
    authors = server.git("log", "--format=%an").splitlines()
    assert authors == ["operator", *before]


def test_an_invalid_edit_shows_its_errors_at_the_fields_and_commits_nothing(
    page: Page, grove_server: GroveServer
) -> None:
    server = grove_server  # the shared server: this test commits nothing
    before = server.git("log", "--format=%H").splitlines()
    inflight = _editor(page, server)
    page.get_by_label("minScore").fill("5")
    page.get_by_label("Max attempts").fill("1000000000")
    page.get_by_label("Chain").fill("nobody\n<script>alert(1)</script>")
    inflight.settle()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name=re.compile("3 problems with the edit"))).to_be_visible()
    expect(page.get_by_label("minScore")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Max attempts")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#minScore-error")).to_contain_text("S004")
    axe_clean(page)
    inflight.settle()  # the page closes after the test: nothing of it left running
    assert server.git("log", "--format=%H").splitlines() == before


def test_a_viewer_simulates_but_has_no_save_dark_and_narrow(
    new_context: Callable[..., BrowserContext], grove_server: GroveServer
) -> None:
    server = grove_server  # the shared server: a viewer commits nothing
    context = new_context(color_scheme="dark")  # the viewport is the context's own argument
    page = context.new_page()
    page.set_viewport_size({"width": 375, "height": 800})
    inflight = _editor(page, server, "viewer")
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    expect(page.get_by_role("button", name="Preview the commit")).to_have_count(0)
    page.get_by_label("Chain").fill("beta")
    page.get_by_role("button", name="Simulate").click()
    expect(page.get_by_text("The edit changes the pick: alpha → beta.")).to_be_visible()
    axe_clean(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways at 375 px ({width} px wide)"
    inflight.settle()
