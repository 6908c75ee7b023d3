"""Visual regression of the five main pages: fleet, model, wizard step 1, rule editor
and status, at 1280x800 on a server of this module's own with the fixed fleet (alpha,
beta, gamma; rule think; no routing traffic: the shared server gets calls from other
tests, which move the numbers), each against its golden in
``tests/browser/snapshots/<platform>/`` (``REGEN_SNAPSHOTS=1`` writes them).

What differs from run to run is masked: the revision header (a sha, an author, an age),
the freshness line, every ``<time>`` and ``<code>`` (shas, dates), ages ("6 s ago"),
messages naming a sha, and charts that depend on the clock. The pages write most times
as plain text, not ``<time>``: each such place is listed in MASKED, and those in table
cells get a fixed text first (their length would move the columns). The live stream is
connected before the shot, so the freshness line and the page are at rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import serving
from tests.browser.pages import assert_snapshot, signed_in
from tests.browser.serving import GroveServer

MASKED = (
    ".revision",  # the applied commit: sha, author, age
    "#freshness",
    "time",
    "code",  # shas, ids beside them
    "figure.chart svg",  # drawn against now
    "span[title]",  # "6 s ago", its date in the title
    ".status-message",  # "applied <sha>"
    "dt:text-is('Checked') + dd",
    "td[data-label=Date]",
    "td[data-label=Commit]",
)

VOLATILE_TEXT = ("span[title]", ".status-message", "td[data-label=Date]", "td[data-label=Commit]")

PAGES = {
    "fleet": "/",
    "model": "/models/alpha",
    "wizard-step-1": "/models/new",
    "rule-editor": "/rules/think",
    "status": "/status",
}


@pytest.fixture(scope="module")
def calm_server(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[GroveServer]:
    root = tmp_path_factory.mktemp("visual")
    with serving.grove_server(root, template=sqlite_template) as server:
        yield server


@pytest.mark.parametrize("path", list(PAGES.values()), ids=list(PAGES))
def test_main_page_looks_as_it_did(page: Page, calm_server: GroveServer, path: str) -> None:
    name = next(n for n, p in PAGES.items() if p == path)
    signed_in(page, calm_server.token("operator"), calm_server.url)
    answer = page.goto(f"{calm_server.url}{path}")
    if answer is None or answer.status == 404:
        pytest.skip(f"{path} does not exist yet")
    assert answer.status == 200
    expect(page.locator("#freshness")).to_contain_text("Live")
    page.evaluate("document.fonts.ready")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    # an age or a sha changes the width of its table column: the same text in each, masked
    page.evaluate(
        "selectors => selectors.forEach(s => document.querySelectorAll(s)"
        ".forEach(e => { e.textContent = '00:00' }))",
        list(VOLATILE_TEXT),
    )
    assert_snapshot(page, name, mask=[page.locator(selector) for selector in MASKED])
