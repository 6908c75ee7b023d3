"""The browser-test machinery itself: Debian's Chromium launches with our flags, the
console gate catches what it must (and passes what a test declared), the snapshot
comparison fails on a changed page and saves what it saw, and the login page renders."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser import pages
from tests.browser.conftest import CHROMIUM, LAUNCH_ARGS
from tests.browser.gate import ConsoleGate
from tests.browser.serving import GroveServer

NOT_FOUND = "Failed to load resource: the server responded with a status of 404 (Not Found)"


def _html(body: str) -> str:
    return f"data:text/html,<!doctype html><html lang=en><title>t</title>{body}</html>"


def test_the_browser_is_debians_chromium_with_our_flags(page: Page, browser: Browser) -> None:
    version = subprocess.run(
        [str(CHROMIUM), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert browser.version.split(".")[0] in version.split()[1]
    page.goto("chrome://version")
    command_line = page.locator("#command_line").inner_text()
    for flag in LAUNCH_ARGS:
        assert flag in command_line


@pytest.mark.expect_console("deliberate", "pageerror: boom")
def test_the_gate_passes_what_a_test_declares(page: Page) -> None:
    page.goto(_html("<p>hi"))
    page.evaluate("console.error('deliberate')")
    page.evaluate("setTimeout(() => { throw new Error('boom') })")
    page.wait_for_timeout(100)


def test_the_gate_declared_from_inside_the_test(
    page: Page, console_gate: ConsoleGate, grove_server: GroveServer
) -> None:
    console_gate.expect(NOT_FOUND)
    response = page.goto("/no-such-page")
    assert response is not None
    assert response.status == 404


def test_the_gate_catches_what_nobody_declared(browser: Browser, grove_server: GroveServer) -> None:
    """A context the autouse gate does not watch, watched by a gate of this test's own."""
    gate = ConsoleGate(["expected, never said"])
    context = gate.watch(browser.new_context())
    try:
        page = context.new_page()
        page.goto(_html("<p>hi"))
        page.evaluate("console.warn('a warning')")
        with page.expect_event("pageerror"):  # seen before the next page replaces this one
            page.evaluate("setTimeout(() => { throw new TypeError('late') })")
        page.goto(f"{grove_server.url}/no-such-page")
        page.goto(f"{grove_server.url}/healthz")
        page.evaluate(
            "new Promise(done => { const i = new Image(); i.onerror = done;"
            " i.src = '/missing.png'; document.body.append(i) })"
        )
    finally:
        context.close()
    problems = gate.problems()
    assert "unexpected console.warning: a warning" in problems
    assert "unexpected pageerror: late" in problems
    assert f"unexpected console.error: {NOT_FOUND}" in problems
    assert f"unexpected response: 404 GET {grove_server.url}/missing.png" in problems
    assert "expected but not seen: expected, never said" in problems
    gate.expect(re.compile(r"console\.\w+: .*"), "pageerror: late", re.compile(r"404 GET .*"))
    assert gate.problems() == ["expected but not seen: expected, never said"]


def test_a_failed_request_is_recorded(browser: Browser) -> None:
    gate = ConsoleGate()
    context = gate.watch(browser.new_context())
    try:
        page = context.new_page()
        page.route("**/gone.js", lambda route: route.abort("connectionrefused"))
        page.goto(_html("<script src='http://127.0.0.1:9/gone.js'></script>"))
    finally:
        context.close()
    assert (
        "unexpected requestfailed: GET http://127.0.0.1:9/gone.js net::ERR_CONNECTION_REFUSED"
        in (gate.problems())
    )


def test_a_snapshot_matches_itself_and_a_change_fails_with_three_pngs(
    page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "SNAPSHOTS", tmp_path)
    page.goto(_html("<h1>Grove</h1><p>A calm page."))
    monkeypatch.setenv("REGEN_SNAPSHOTS", "1")
    with pytest.raises(pytest.skip.Exception, match="wrote"):
        pages.assert_snapshot(page, "calm")
    assert (tmp_path / pages.platform(page) / "calm.png").exists()
    monkeypatch.delenv("REGEN_SNAPSHOTS")
    pages.assert_snapshot(page, "calm")
    page.goto(_html("<h1>Grove</h1><p>A calm page.<h1>And a second heading, with more words</h1>"))
    with pytest.raises(AssertionError, match="differ") as failure:
        pages.assert_snapshot(page, "calm")
    folder = Path(str(failure.value).rsplit(" in ", 1)[1])
    assert sorted(p.name for p in folder.iterdir()) == ["actual.png", "diff.png", "expected.png"]


def test_a_missing_golden_skips_with_how_to_make_it(
    page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "SNAPSHOTS", tmp_path)
    monkeypatch.delenv("REGEN_SNAPSHOTS", raising=False)
    page.goto(_html("<p>hi"))
    with pytest.raises(pytest.skip.Exception, match="REGEN_SNAPSHOTS=1"):
        pages.assert_snapshot(page, "nothing-yet")


def test_the_login_page_renders_accessibly(page: Page, grove_server: GroveServer) -> None:
    page.goto("/login")
    expect(page.locator("#token")).to_have_attribute("type", "password")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.locator('input[type="hidden"][name="csrf"]')).to_have_count(1)
    pages.axe_clean(page)


def test_signing_in_reaches_the_fleet_page(page: Page, grove_server: GroveServer) -> None:
    """What a page test looks like: sign in with a role's token, look, check axe."""
    pages.signed_in(page, grove_server.token("viewer"))
    expect(page).to_have_title(re.compile("Fleet"))
    expect(page.get_by_text("alpha").first).to_be_visible()
    pages.axe_clean(page)


def test_a_live_refresh_cut_short_is_ignored_and_any_other_fetch_is_not(
    browser: Browser,
) -> None:
    """The page's own live-fragment fetch, aborted (a form was sent meanwhile), is no error a
    person sees; the same fetch without the header is recorded."""
    gate = ConsoleGate()
    context = gate.watch(browser.new_context())
    script = (
        "<script>fetch('/status', {headers: {'X-Grove-Fragment': 'live'}}).catch(() => {});"
        "fetch('/other').catch(() => {});</script>"
    )

    def serve(route: Route) -> None:
        if route.request.resource_type == "document":
            route.fulfill(content_type="text/html", body=f"<!doctype html><title>t</title>{script}")
        else:
            route.abort("aborted")

    try:
        page = context.new_page()
        page.route("http://grove.test/**", serve)
        # one waiter per request: two waiters for any "requestfailed" both end at the
        # first failure, and the context could close before the other one is recorded
        with (
            page.expect_event("requestfailed", lambda r: r.url.endswith("/status")),
            page.expect_event("requestfailed", lambda r: r.url.endswith("/other")),
        ):
            page.goto("http://grove.test/")
    finally:
        context.close()
    problems = gate.problems()
    assert "unexpected requestfailed: GET http://grove.test/other net::ERR_ABORTED" in problems
    assert not [p for p in problems if "grove.test/status" in p]
