"""The status page in Chromium: every state axe-clean in both themes and at 375 px, drift
restored through its preview by keyboard-reachable buttons, a change freeze set and
lifted, and an open page that follows a change it did not make."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

from playwright.sync_api import BrowserContext, Page, Request, expect
from sqlalchemy import create_engine, text

from tests.browser.conftest import StartGrove
from tests.browser.pages import axe_clean, signed_in
from tests.browser.serving import GroveServer


def drift(server: GroveServer, ident: str, **changes: object) -> None:
    """An edit of the registry behind git's back."""
    engine = create_engine(server.db_url)
    try:
        with engine.begin() as connection:
            raw = connection.execute(
                text("SELECT payload FROM model_registry WHERE object_id = :i"), {"i": ident}
            ).scalar_one()
            payload = json.loads(raw) if isinstance(raw, str) else dict(raw)
            payload.update(changes)
            connection.execute(
                text("UPDATE model_registry SET payload = :p WHERE object_id = :i"),
                {"p": json.dumps(payload), "i": ident},
            )
    finally:
        engine.dispose()


class InFlight:
    """The page's requests still waiting for an answer, but its live stream. A test waits
    for none before it navigates, so that no fetch of the page it leaves (its favicon, a
    live refresh the stream asked for) is cut short and reported by the console gate."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: set[Request] = set()
        page.on("request", self._start)
        page.on("requestfinished", self._end)
        page.on("requestfailed", self._end)

    def _start(self, request: Request) -> None:
        if request.resource_type != "eventsource":
            self.requests.add(request)

    def _end(self, request: Request) -> None:
        self.requests.discard(request)

    def settle(self, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        quiet = 0
        while quiet < 3 and time.monotonic() < deadline:
            self.page.wait_for_timeout(50)
            quiet = 0 if self.requests else quiet + 1


def leave(flight: InFlight) -> None:
    """Before a form is sent: wait for the page's fetches, then close its live stream as
    leaving the page does (console.js closes it on ``pagehide``). Otherwise the stream
    can tell the page to refresh because of the very write being sent, and that fetch is
    cut short by the navigation (reported to the lead: console.js could stop refreshing
    once a form is submitted)."""
    flight.settle()
    flight.page.evaluate("window.dispatchEvent(new Event('pagehide'))")


def reload_until(flight: InFlight, words: str, timeout_s: float = 15) -> None:
    """Reload until ``words`` show: a page render reuses the head's plan for 5 s (or
    GROVE_CONSOLE_OVERVIEW_S when shorter)."""
    page = flight.page
    deadline = time.monotonic() + timeout_s
    while True:
        flight.settle()
        page.reload()
        if page.get_by_text(words).count() or time.monotonic() > deadline:
            break
        page.wait_for_timeout(1000)
    expect(page.get_by_text(words)).to_be_visible()


def _status(page: Page, server: GroveServer, role: str = "operator") -> InFlight:
    flight = InFlight(page)
    signed_in(page, server.token(role), server.url)
    flight.settle()
    page.goto(f"{server.url}/status")
    expect(page.get_by_role("heading", level=1, name="Status")).to_be_visible()
    return flight


def test_restore_from_git_by_keyboard_through_its_preview(
    page: Page, start_grove: StartGrove
) -> None:
    # the page's plan of the head is reused for 1 s here, not 5 s: reload_until waits less
    server = start_grove(interval="1h", GROVE_CONSOLE_OVERVIEW_S="1")
    flight = _status(page, server)
    axe_clean(page)
    drift(server, "beta", priority=999)
    reload_until(flight, "1 object changed outside git")
    axe_clean(page)
    page.get_by_role("button", name="Restore from git…").focus()
    leave(flight)
    page.keyboard.press("Enter")
    preview = page.get_by_role("heading", name=re.compile("Preview: restore from git"))
    expect(preview).to_be_visible()
    axe_clean(page)
    page.get_by_role("button", name="Confirm: restore from git").focus()
    leave(flight)
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="Restored from git")).to_be_visible()
    expect(page.get_by_text("No drift")).to_be_visible()
    expect(page.locator("#live").get_by_text("console:operator").first).to_be_visible()
    axe_clean(page)
    flight.settle()


def test_suspend_and_resume_with_an_error_at_the_field(page: Page, start_grove: StartGrove) -> None:
    server = start_grove(interval="1h")
    flight = _status(page, server)
    leave(flight)
    page.get_by_role("button", name="Suspend applying").click()
    field = page.get_by_label("Why suspend")
    expect(field).to_have_attribute("aria-invalid", "true")
    axe_clean(page)
    field.fill("release week")
    leave(flight)
    page.get_by_role("button", name="Suspend applying").click()
    expect(page.get_by_text("Applying is suspended since")).to_be_visible()
    expect(page.locator(".freeze").get_by_text("Reason: release week")).to_be_visible()
    axe_clean(page)
    leave(flight)
    page.get_by_role("button", name="Resume applying").click()
    expect(page.get_by_text("Applying runs")).to_be_visible()
    expect(page.locator("#live").get_by_text("reconciler_resumed")).to_be_visible()
    flight.settle()


def test_an_open_page_shows_drift_made_elsewhere(page: Page, start_grove: StartGrove) -> None:
    # the page's stream plans the head again every GROVE_CONSOLE_OVERVIEW_S (15 s by
    # default, the plan reused for 5 s; 1 s here for both)
    server = start_grove(interval="1h", GROVE_CONSOLE_OVERVIEW_S="1")
    flight = _status(page, server)
    expect(page.get_by_text("No drift")).to_be_visible()
    drift(server, "gamma", priority=1)
    # no reload: the open page's stream finds the drift and tells the page
    expect(page.get_by_text("1 object changed outside git")).to_be_visible(timeout=30_000)
    flight.settle()


def test_a_viewer_sees_no_levers_and_dark_and_narrow_are_clean(
    new_context: Callable[..., BrowserContext], start_grove: StartGrove
) -> None:
    server = start_grove(interval="1h")
    drift(server, "beta", priority=999)
    page = new_context(color_scheme="dark").new_page()
    page.set_viewport_size({"width": 375, "height": 800})
    flight = _status(page, server, "viewer")
    expect(page.get_by_text("1 object changed outside git")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Restore|Suspend"))).to_have_count(0)
    axe_clean(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways at 375 px ({width} px wide)"
    flight.settle()
