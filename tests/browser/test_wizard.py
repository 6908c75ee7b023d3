"""The add-model wizard in Chromium: the whole journey by keyboard, ending in a commit by
the signed-in token; every step and a validation error axe-clean in both themes and at
375 px; an error moves nothing forward and shows at its field."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.browser.conftest import StartGrove
from tests.browser.pages import axe_clean, signed_in
from tests.browser.serving import GroveServer

NewContext = Callable[..., BrowserContext]


def tab_to(page: Page, target: Locator, most: int = 80) -> None:
    """Press Tab until ``target`` has the focus, as a keyboard user moves through a page."""
    for _ in range(most):
        if target.evaluate("e => e === document.activeElement"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{most} presses of Tab never reached {target}")


def step(page: Page, n: int) -> None:
    expect(page.get_by_role("heading", level=2, name=re.compile(f"Step {n} of 3"))).to_be_visible()


def test_a_model_added_by_keyboard_only_is_one_commit_by_the_token(
    page: Page, start_grove: StartGrove
) -> None:
    server = start_grove()
    signed_in(page, server.token("operator"), server.url)
    tab_to(page, page.get_by_role("link", name="Add a model").first)
    page.keyboard.press("Enter")
    step(page, 1)
    for field, text in (("#f-name", "Keyboard Mock"), ("#f-id", "keyboard-mock")):
        tab_to(page, page.locator(field))
        page.keyboard.type(text)
    tab_to(page, page.locator("#f-provider"))
    page.keyboard.type("mock")
    expect(page.locator("#f-provider")).to_have_value("mock")
    tab_to(page, page.locator("#f-credentials"))
    page.keyboard.press("Enter")  # Enter submits: Continue is the form's first button
    step(page, 2)
    tab_to(page, page.locator("#f-cap_reasoning"))
    page.keyboard.type("0.99")
    tab_to(page, page.locator("#f-priority"))
    page.keyboard.type("900")
    tab_to(page, page.locator("input[name='fallbacks[]']").first)
    page.keyboard.press("Space")
    tab_to(page, page.get_by_role("button", name="Back"))
    page.keyboard.press("Enter")  # back and forth: the values stay
    step(page, 1)
    expect(page.locator("#f-name")).to_have_value("Keyboard Mock")
    tab_to(page, page.get_by_role("button", name="Continue"))
    page.keyboard.press("Enter")
    step(page, 2)
    expect(page.locator("#f-cap_reasoning")).to_have_value("0.99")
    expect(page.locator("input[name='fallbacks[]']").first).to_be_checked()
    tab_to(page, page.get_by_role("button", name="Continue"))
    page.keyboard.press("Enter")
    step(page, 3)
    expect(page.locator("pre.manifest")).to_contain_text("id: keyboard-mock")
    expect(page.get_by_text("Preview: nothing is committed yet")).to_be_visible()
    expect(page.get_by_text("would now pick keyboard-mock")).to_be_visible()
    before = server.git("rev-parse", "HEAD")
    tab_to(page, page.get_by_role("button", name="Commit the model"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name=re.compile("Model committed"))).to_be_visible()
    assert server.git("rev-list", "--count", f"{before}..HEAD") == "1"
    assert server.git("log", "-1", "--format=%an|%s") == (
        "operator|grove: register AIModel keyboard-mock (version 1)"
    )
    page.get_by_role("link", name="Open the model's page").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{server.url}/models/keyboard-mock")


@pytest.mark.parametrize(
    ("scheme", "width"), [("light", 1280), ("dark", 1280), ("light", 375), ("dark", 375)]
)
def test_every_step_and_an_error_are_axe_clean(
    new_context: NewContext, grove_server: GroveServer, scheme: str, width: int
) -> None:
    page = new_context(color_scheme=scheme).new_page()  # the viewport is the context's own
    page.set_viewport_size({"width": width, "height": 800})
    signed_in(page, grove_server.token("operator"), grove_server.url)
    page.goto("/models/new")
    step(page, 1)
    axe_clean(page)
    page.fill("#f-name", "<script>alert(1)</script>")
    page.fill("#f-id", "Not An Id")
    page.select_option("#f-provider", "openai")
    page.fill("#f-endpoint", "http://10.1.2.3/v1")
    page.get_by_role("button", name="Continue").click()
    step(page, 1)
    expect(page.locator("#f-id")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-id-error")).to_contain_text("S006")
    expect(page.locator("#f-endpoint-error")).to_contain_text("S007")
    summary = page.locator(".error-summary")
    expect(summary).to_be_focused()  # the summary first, its links next (GOV.UK's pattern)
    expect(summary.get_by_role("link", name=re.compile("S006"))).to_have_attribute("href", "#f-id")
    axe_clean(page)
    page.fill("#f-name", "Axe Mock")
    page.fill("#f-id", f"axe-{scheme}-{width}")
    page.select_option("#f-provider", "mock")
    page.fill("#f-endpoint", "")
    page.get_by_role("button", name="Continue").click()
    step(page, 2)
    expect(page.locator("#f-cap_reasoning")).to_be_focused()
    axe_clean(page)
    page.fill("#f-cap_speed", "1.5")
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#f-cap_speed-error")).to_contain_text("S004")
    axe_clean(page)
    page.fill("#f-cap_speed", "0.5")
    page.get_by_role("button", name="Continue").click()
    step(page, 3)
    axe_clean(page)
    overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not overflow, "the page scrolls sideways"
