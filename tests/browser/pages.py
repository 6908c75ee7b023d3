"""Helpers for the console's page tests: sign in, check accessibility, compare screenshots.

Plain functions over a Playwright ``Page``, imported by the tests
(``from tests.browser.pages import axe_clean, signed_in, assert_snapshot``).
"""

from __future__ import annotations

import io
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from PIL import Image
from pixelmatch.contrib.PIL import pixelmatch
from playwright.sync_api import Locator, Page, ViewportSize

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
PIXEL_THRESHOLD = 0.05  # pixelmatch's per-pixel colour distance (0 to 1)
IMAGE_THRESHOLD = 0.002  # the share of pixels that may differ: 0.2%

AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
_axe = Axe()


def signed_in(page: Page, token: str, url: str = "") -> Page:
    """Sign in through the login form as a person would, then wait for the fleet page.
    ``url`` is the server's (empty: the context's ``base_url``, the shared server)."""
    page.goto(f"{url}/login")
    page.fill("#token", token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda address: urlsplit(address).path == "/")
    page.wait_for_load_state("load")
    return page


def axe_clean(page: Page, context: str | list[str] | dict[str, object] | None = None) -> None:
    """No WCAG 2.1 A/AA violation on the page as it is now (or in ``context``, a selector)."""
    results = _axe.run(page, context=context, options=AXE_OPTIONS)
    assert results.violations_count == 0, results.generate_report()


def platform(page: Page) -> str:
    """Where a page's goldens live: the OS and Chromium's major version (fonts and
    anti-aliasing change with both), as in ``linux-chromium156``."""
    browser = page.context.browser
    major = browser.version.split(".")[0] if browser is not None else "unknown"
    return f"{sys.platform}-chromium{major}"


def assert_snapshot(
    page: Page, name: str, *, full_page: bool = False, mask: Sequence[Locator] = ()
) -> None:
    """The page at 1280x800, animations stopped, against its golden
    ``tests/browser/snapshots/<platform>/<name>.png``. ``mask``: what changes from run
    to run (a time, a commit's sha), painted over in one colour.

    ``REGEN_SNAPSHOTS=1`` writes the golden and skips. A golden missing for this
    platform skips with how to make one (a new Chromium major needs new goldens). On a
    failure, actual, expected and diff PNGs are written to a folder the message names.
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
        raise ValueError(f"snapshot name {name!r}: use lower-case letters, digits, '.', '_', '-'")
    page.set_viewport_size(VIEWPORT)
    shot = page.screenshot(
        animations="disabled", caret="hide", full_page=full_page, mask=list(mask)
    )
    golden = SNAPSHOTS / platform(page) / f"{name}.png"
    if os.environ.get("REGEN_SNAPSHOTS") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(shot)
        pytest.skip(f"wrote {golden.relative_to(SNAPSHOTS.parent.parent.parent)}")
    if not golden.exists():
        pytest.skip(f"no golden {name}.png for {platform(page)}: REGEN_SNAPSHOTS=1 writes it")
    actual = _image(shot)
    expected = Image.open(golden).convert("RGBA")
    if actual.size != expected.size:
        folder = _save(name, actual, expected, None)
        raise AssertionError(
            f"snapshot {name}: size {actual.size} != golden {expected.size}; see {folder}"
        )
    diff = Image.new("RGBA", actual.size)
    mismatched = pixelmatch(actual, expected, diff, threshold=PIXEL_THRESHOLD)
    share = mismatched / (actual.size[0] * actual.size[1])
    if share > IMAGE_THRESHOLD:
        folder = _save(name, actual, expected, diff)
        raise AssertionError(
            f"snapshot {name}: {mismatched} pixels ({share:.3%}) differ, over "
            f"{IMAGE_THRESHOLD:.1%}; actual, expected and diff PNGs in {folder}"
        )


def _image(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGBA")


def _save(name: str, actual: Image.Image, expected: Image.Image, diff: Image.Image | None) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"grove-snapshot-{name}-"))
    actual.save(folder / "actual.png")
    expected.save(folder / "expected.png")
    if diff is not None:
        diff.save(folder / "diff.png")
    return folder
