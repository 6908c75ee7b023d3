"""Fixtures of the console's browser tests: Debian's Chromium through pytest-playwright,
a real Grove server, and the console gate that runs in every test here.

- ``page``, ``context``, ``new_context``, ``browser``: pytest-playwright's, launched from
  /usr/bin/chromium (never a downloaded browser), resolving no host but the loopback;
  ``page.goto("/...")`` goes to the shared server (``base_url``).
- ``grove_server`` (session): the shared server over the small fleet. Tests that change
  the fleet or the database in ways others would see use ``start_grove`` instead.
- ``start_grove`` (function): ``start_grove(fleet=None, *args, **env)`` starts a server of
  the test's own; its pages are closed before it stops.
- ``console_gate`` (autouse): fails at teardown on any console error or warning, page
  error, failed request or sub-resource answered >= 400 that the test did not declare
  with ``@pytest.mark.expect_console("...")`` or ``console_gate.expect("...")``.

Without /usr/bin/chromium, the tests that use a browser are skipped (CI set: the run
stops instead, as .ci/run installs it).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, BrowserType, Playwright, sync_playwright

from tests.browser import serving
from tests.browser.gate import ConsoleGate
from tests.browser.serving import GroveServer

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).resolve().parent
# what makes a test need the browser (the budget test and server-only tests do not)
BROWSER_FIXTURES = frozenset(
    {"page", "context", "new_context", "browser", "browser_type", "launch_browser", "playwright"}
)
LAUNCH_ARGS = [
    "--no-sandbox",  # root in a container, without user namespaces
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # no traffic beyond the loopback, whatever a page or Chromium itself asks for
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
_FAILED_CALL = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "expect_console(*messages): console lines this browser test provokes on purpose "
        "(tests/browser/gate.py); each must be seen, and nothing else may be",
    )


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needing = [
        item
        for item in items
        if item.path.is_relative_to(HERE)
        and BROWSER_FIXTURES & set(getattr(item, "fixturenames", ()))
    ]
    for item in needing:  # a real Chromium and a real server: not the one-minute inner loop
        item.add_marker(pytest.mark.slow)
    if not needing or CHROMIUM.exists():
        return
    if _in_ci():
        raise pytest.UsageError(
            f"CI is set and {CHROMIUM} is missing: the browser tests cannot run "
            "(.ci/run installs Debian's chromium package)"
        )
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: apt-get install chromium")
    for item in needing:
        item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and not report.passed:
        item.stash[_FAILED_CALL] = True
    return report


# ---------------------------------------------------------------- the browser


# pytest-playwright's playwright, browser_type, launch_browser and browser are session
# fixtures. Playwright's sync API marks an asyncio loop as running in the main thread for
# as long as it is open, so every later test of the same worker that calls asyncio.run()
# failed ("cannot be called from a running event loop": 114 tests of tests/routing in a
# whole run). Scoped to the module, Playwright stops when a browser module ends (pytest
# tears module fixtures down before the next module's tests), at the cost of a browser
# start per module (about half a second).


@pytest.fixture(scope="module")
def playwright(_pw_api_request_contexts: Any) -> Iterator[Playwright]:
    pw = sync_playwright().start()
    if _pw_api_request_contexts:
        _pw_api_request_contexts.instrument(pw)
    yield pw
    pw.stop()


@pytest.fixture(scope="module")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    found: BrowserType = getattr(playwright, browser_name)
    return found


@pytest.fixture(scope="module")
def launch_browser(
    browser_type_launch_args: dict[str, Any], browser_type: BrowserType
) -> Callable[..., Browser]:
    def launch(**options: Any) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **options})

    return launch


@pytest.fixture(scope="module")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    opened = launch_browser()
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's (``--headed``, ``--slowmo``) on Debian's Chromium. No
    ``--disable-features`` of ours: it would replace Playwright's own list."""
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": LAUNCH_ARGS}


@pytest.fixture(scope="session")
def base_url(grove_server: GroveServer) -> str:
    """The shared server: ``page.goto("/status")``. (Overrides the fallback fixture
    pytest-playwright registers, so no ``--base-url`` option is read.)"""
    return grove_server.url


@pytest.fixture(scope="session")
def browser_context_args(base_url: str) -> dict[str, Any]:
    """Every context alike: the shared server, the snapshot viewport, English, UTC. (Not
    pytest-playwright's, which reads device descriptors from its session-wide Playwright;
    no ``--device`` or ``--video`` here.)"""
    return {
        "base_url": base_url,
        "viewport": {"width": 1280, "height": 800},
        "locale": "en-US",
        "timezone_id": "UTC",
    }


@pytest.fixture
def new_context(
    new_context: Callable[..., BrowserContext], console_gate: ConsoleGate
) -> Callable[..., BrowserContext]:
    """pytest-playwright's, each context watched by the console gate."""

    def make(**kwargs: Any) -> BrowserContext:
        return console_gate.watch(new_context(**kwargs))

    return make


# ---------------------------------------------------------------- the console gate


@pytest.fixture(autouse=True)
def console_gate(request: pytest.FixtureRequest) -> Iterator[ConsoleGate]:
    """Records what every watched page says; the verdict comes at teardown, after
    pytest-playwright closed the contexts (so late messages are in)."""
    marker = request.node.get_closest_marker("expect_console")
    gate = ConsoleGate(marker.args if marker is not None else ())
    yield gate
    failed = request.node.stash.get(_FAILED_CALL, False)
    problems = gate.problems(require_expected=not failed)
    if problems:
        pytest.fail("console gate:\n  " + "\n  ".join(problems), pytrace=False)


# ---------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def grove_server(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[GroveServer]:
    """The shared server: the small fleet (alpha, beta, gamma; rule think), a token per
    role, the reconcile loop on. Function-scoped pages are all closed before it stops."""
    root = tmp_path_factory.mktemp("grove-console")
    with serving.grove_server(root, template=sqlite_template) as server:
        yield server


StartGrove = Callable[..., GroveServer]


@pytest.fixture
def start_grove(
    tmp_path: Path, console_gate: ConsoleGate, sqlite_template: Path
) -> Iterator[StartGrove]:
    """``start_grove(fleet=None, *args, interval="30s", **GROVE_env)``: a server of this
    test's own (``fleet={}`` is an empty fleet). Watched pages close before it stops."""
    servers = contextlib.ExitStack()
    numbers = itertools.count()

    def start(
        fleet: dict[str, str | bytes] | None = None, *args: str, **kwargs: str
    ) -> GroveServer:
        root = tmp_path / f"grove-{next(numbers)}"
        return servers.enter_context(
            serving.grove_server(root, fleet, *args, template=sqlite_template, **kwargs)
        )

    with servers:
        try:
            yield start
        finally:
            console_gate.close_pages()
