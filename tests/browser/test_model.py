"""The model page in Chromium: disable a model and roll it back, each with its preview
(the issue's journey), by keyboard, to commits by the signed-in token; a viewer who sees
no buttons; every state axe-clean, light and dark, wide and at 375 px, charts named and
tabled."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import StartGrove
from tests.browser.pages import axe_clean, signed_in
from tests.browser.serving import GroveServer


def _route(server: GroveServer, calls: int) -> None:
    with server.api("operator") as api:
        for _ in range(calls):
            answer = api.post("/api/routing/execute", json={"taskType": "think", "prompt": "hi"})
            assert answer.status_code == 200, answer.text


def _no_sideways_scroll(page: Page) -> None:
    size = page.viewport_size
    width = page.evaluate("document.documentElement.scrollWidth")
    assert size is None or width <= size["width"], f"the page scrolls sideways ({width} px)"


def _press(page: Page, name: str) -> None:
    """Reach a button by keyboard and press it, as a keyboard user would."""
    button = page.get_by_role("button", name=name)
    button.focus()
    expect(button).to_be_focused()
    page.keyboard.press("Enter")


def test_disable_a_model_and_roll_it_back_each_with_its_preview(
    page: Page, start_grove: StartGrove
) -> None:
    server = start_grove()
    with server.api("operator") as api:  # a second version of gamma, to roll back from
        assert api.patch("/api/models/gamma", json={"priority": 12}).status_code == 200
    before = server.git("log", "--format=%an|%s").splitlines()
    signed_in(page, server.token("operator"), server.url)
    page.goto(f"{server.url}/models/gamma")
    expect(page.get_by_role("heading", level=1, name="Gamma")).to_be_visible()
    axe_clean(page)

    _press(page, "Disable…")
    expect(page.get_by_role("heading", level=1, name="Disable Gamma?")).to_be_visible()
    expect(page.get_by_text("Preview: nothing is committed yet")).to_be_visible()
    axe_clean(page)
    assert server.git("log", "--format=%an|%s").splitlines() == before  # a preview only
    _press(page, "Confirm: disable")
    expect(page.get_by_role("status").filter(has_text="Disabled.")).to_be_visible()
    assert server.git("log", "-1", "--format=%an|%s") == "operator|grove: disable AIModel gamma"
    axe_clean(page)

    page.goto(f"{server.url}/models/gamma")
    _press(page, "Roll back…")
    expect(page.get_by_text(re.compile(r"roll back from version 2 to 1"))).to_be_visible()
    axe_clean(page)
    _press(page, "Confirm: roll back")
    expect(page.get_by_role("status").filter(has_text="Rolled back.")).to_be_visible()
    subject = server.git("log", "-1", "--format=%an|%s")
    assert subject.startswith("operator|grove: rollback AIModel gamma to version 1"), subject
    page.goto(f"{server.url}/models/gamma")
    history = page.get_by_role("table", name=re.compile("Versions the registry applied"))
    expect(history.get_by_text("quarantined")).to_be_visible()


def test_the_page_is_clean_for_a_viewer_in_both_themes_and_at_375_px(
    new_context: Callable[..., BrowserContext], grove_server: GroveServer
) -> None:
    _route(grove_server, 5)
    for scheme, width in (("light", 1280), ("dark", 1280), ("dark", 375), ("light", 375)):
        page = new_context(color_scheme=scheme).new_page()
        page.set_viewport_size({"width": width, "height": 800})
        signed_in(page, grove_server.token("viewer"), grove_server.url)
        page.goto(f"{grove_server.url}/models/alpha?window=1h")
        expect(page.get_by_role("heading", level=1, name="Alpha")).to_be_visible()
        assert page.get_by_role("button", name=re.compile("Disable|Retire|Roll back")).count() == 0
        figures = page.locator("figure.chart")
        assert figures.count() == 4
        for i in range(4):  # a name for each chart, and its numbers as a table (or why not)
            figure = figures.nth(i)
            assert figure.locator("figcaption").inner_text().strip()
        for _ in range(50):  # the log writer flushes its batch within a moment
            if page.locator(".decision summary").count():
                break
            page.wait_for_timeout(200)
            page.reload()
        page.locator(".decision summary").first.click()
        expect(page.get_by_text("Chain").first).to_be_visible()
        axe_clean(page)
        _no_sideways_scroll(page)
        page.close()
