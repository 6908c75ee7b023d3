"""The console's journeys, as a person takes them: sign in and out by keyboard, an open
page following a change made elsewhere, a viewer who finds nothing to press and whose
forged POSTs change nothing, the registry made unreadable and restored, the fleet on
PostgreSQL, and the writes (the wizard by keyboard, a model disabled and rolled back,
a rule simulated before it is saved, a refused change) each ending in git or in nothing.

Servers: read-only journeys share the session's server; a journey that writes or
breaks the registry starts its own (``start_grove``).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.api.test_probes import _overwrite_in_place, _restore
from tests.browser import serving
from tests.browser.conftest import StartGrove
from tests.browser.gate import ConsoleGate
from tests.browser.pages import axe_clean, signed_in
from tests.browser.serving import GroveServer
from tests.conftest import postgres_database

NewContext = Callable[..., BrowserContext]


def status_error(code: int) -> re.Pattern[str]:
    """What Chromium says on the console when a navigation answers ``code``."""
    return re.compile(rf"Failed to load resource: the server responded with a status of {code}.*")


LIVE = re.compile(r"Live\b.*")
FORBIDDEN = status_error(403)
UNPROCESSABLE = status_error(422)


def tab_to(page: Page, target: Locator, most: int = 60) -> None:
    """Press Tab until ``target`` has the focus, as a keyboard user moves through a page."""
    for _ in range(most):
        if target.evaluate("e => e === document.activeElement"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{most} presses of Tab never reached {target}")


def commits(server: GroveServer) -> list[str]:
    """Every commit of the server's repository, all branches: "author|subject"."""
    return server.git("log", "--all", "--format=%an|%s").splitlines()


def fleet_page(context: BrowserContext, server: GroveServer, role: str) -> Page:
    """A signed-in fleet page whose live stream is connected."""
    page = signed_in(context.new_page(), server.token(role), server.url)
    expect(page.locator("#freshness")).to_have_text(LIVE)
    return page


# ---------------------------------------------------------------- sign in, sign out


def test_sign_in_and_out_by_keyboard(page: Page, grove_server: GroveServer) -> None:
    page.goto("/login")
    token = page.locator("#token")
    expect(token).to_be_focused()  # autofocus: the one thing to do on the page
    page.keyboard.press("Shift+Tab")  # away, and back as a person who tabbed past it
    expect(token).not_to_be_focused()
    tab_to(page, token)
    page.keyboard.type(grove_server.token("viewer"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{grove_server.url}/")
    expect(page.get_by_role("heading", level=1, name="Fleet")).to_be_visible()
    expect(page.get_by_text("Signed in as viewer")).to_be_attached()
    expect(page.locator("#freshness")).to_have_text(LIVE)

    sign_out = page.get_by_role("button", name="Sign out")
    tab_to(page, sign_out)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r".*/login.*"))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.goto("/")  # the session is gone: the fleet asks to sign in again
    expect(page).to_have_url(re.compile(r".*/login.*"))


def test_a_wrong_token_says_why_at_the_field(
    page: Page, grove_server: GroveServer, console_gate: ConsoleGate
) -> None:
    console_gate.allow(status_error(401))
    real = grove_server.token("viewer")
    page.goto("/login")
    page.locator("#token").focus()  # autofocus may land after the first keys otherwise
    page.keyboard.type(real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB"))
    page.keyboard.press("Enter")
    token = page.locator("#token")
    expect(token).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#token-error")).to_contain_text("unknown or revoked")


# ---------------------------------------------------------------- live, and writes


def choose(page: Page, select: Locator, value: str) -> None:
    """Pick an option of a ``<select>`` by keyboard (Tab to it, arrow keys)."""
    tab_to(page, select)
    for _ in range(30):
        if select.input_value() == value:
            return
        page.keyboard.press("ArrowDown")
    raise AssertionError(f"no option {value!r} reached by ArrowDown")


def appears_within_2s(page: Page, card: str, since: float) -> None:
    """``card`` shows on ``page`` (which nobody reloads) within 2 s of ``since``."""
    left = 2000 - (time.monotonic() - since) * 1000
    assert left > 0, "2 s went by before the check began"
    expect(page.locator(card)).to_be_visible(timeout=left)
    assert time.monotonic() - since < 2.0


def test_models_added_by_the_api_and_by_the_wizard_by_keyboard_appear_on_open_pages(
    new_context: NewContext, start_grove: StartGrove, console_gate: ConsoleGate
) -> None:
    """Two open fleet pages; a model registered through the API shows on both within
    2 s, then one added through the wizard's three steps by keyboard only: one commit by
    the signed-in token, on the other page within 2 s. Last, that model is the only one
    left for rule think, and retiring it is refused with its violation: no commit."""
    console_gate.allow(UNPROCESSABLE)
    server = start_grove()
    watching = fleet_page(new_context(), server, "viewer")
    page = fleet_page(new_context(), server, "operator")
    freshness = watching.locator("#freshness")
    expect(freshness).to_have_attribute("role", "status")
    expect(freshness).to_have_text(LIVE)
    expect(watching.locator("#model-delta")).to_have_count(0)

    with server.api("operator") as api:
        answer = api.post(
            "/api/models/register",
            json={"id": "delta", "name": "Delta", "provider": "mock", "capabilities": ["speed"]},
        )
    answered = time.monotonic()
    assert answer.status_code == 201, answer.text
    appears_within_2s(watching, "#model-delta", answered)
    appears_within_2s(page, "#model-delta", answered)
    assert watching.url == f"{server.url}/"  # no reload, no navigation
    expect(freshness).to_have_text(LIVE)
    before = commits(server)

    tab_to(page, page.get_by_role("link", name="Add a model").first)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Step 1 of 3: who it is")).to_be_visible()
    tab_to(page, page.locator("#f-name"))
    page.keyboard.type("Delta Mini")
    choose(page, page.locator("#f-provider"), "mock")
    tab_to(page, page.locator("#f-provider_model"))
    page.keyboard.press("Enter")  # the form's first button: Continue
    expect(page.get_by_role("heading", name="Step 2 of 3: what it is good at")).to_be_visible()
    tab_to(page, page.locator("#f-cap_reasoning"))
    page.keyboard.type("0.95")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Step 3 of 3: review and commit")).to_be_visible()
    expect(page.locator("pre.manifest")).to_contain_text("id: delta-mini")
    assert commits(server) == before  # three steps, nothing committed yet
    tab_to(page, page.get_by_role("button", name="Commit the model"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name=re.compile("Model committed"))).to_be_visible()
    appears_within_2s(watching, "#model-delta-mini", time.monotonic())
    assert commits(server) == ["operator|grove: register AIModel delta-mini (version 1)", *before]
    axe_clean(page)

    with server.api("operator") as api:  # delta-mini: the last model rule think can use
        for ident in ("alpha", "beta", "gamma"):
            assert api.post(f"/api/models/{ident}/disable").status_code == 200
    before = commits(server)
    page.goto(f"{server.url}/models/delta-mini")
    page.get_by_role("button", name="Retire…").click()
    refusal = page.locator(".outcome[role=alert]")
    expect(refusal).to_contain_text("P004")
    expect(refusal).to_contain_text("Way out")
    expect(page.locator("form.confirm")).to_have_count(0)  # nothing to confirm
    axe_clean(page)
    assert commits(server) == before


# ---------------------------------------------------------------- a viewer


VIEWER_PAGES = ("/", "/?view=table", "/status", "/rules", "/rules/think", "/models/alpha")
WRITES = (
    ("/models/new", {"step": "3", "action": "submit", "name": "Forged", "provider": "mock",
                     "cap_reasoning": "0.9"}),
    ("/models/alpha/actions/disable", {"confirm": "1"}),
    ("/models/alpha/actions/disable", {}),
    ("/models/alpha/actions/rollback", {"confirm": "1"}),
    ("/rules/think", {"action": "save", "requires[]": "reasoning", "minScore": "0.1",
                      "strategy": "priority", "enabled": "true"}),
    ("/status/suspend", {"reason": "forged"}),
    ("/status/restore", {"confirm": "1"}),
)  # fmt: skip


def _write_controls(page: Page) -> list[str]:
    """What on the page would change the fleet: an "Add a model" control, and every
    POST form but sign-out and the rule editor's simulator (a read, open to viewers)."""
    found = [
        f"control {name!r}"
        for name in ("Add a model", "add a model")
        for role in ("link", "button")
        if page.get_by_role(role, name=name, exact=True).count()  # type: ignore[arg-type]
    ]
    for form in page.locator("form").all():
        if (form.get_attribute("method") or "get").lower() != "post":
            continue
        action = form.get_attribute("action") or ""
        if action == "/logout":
            continue
        buttons = [b.inner_text().strip() for b in form.locator("button, input[type=submit]").all()]
        if buttons == ["Simulate"]:
            continue
        found.append(f"form POST {action} with {buttons}")
    return found


@pytest.mark.expect_console(FORBIDDEN)
def test_a_viewer_sees_no_write_controls_and_its_forged_posts_change_nothing(
    page: Page, grove_server: GroveServer
) -> None:
    signed_in(page, grove_server.token("viewer"))
    for path in VIEWER_PAGES:
        answer = page.goto(path)
        assert answer is not None and answer.status == 200, path
        assert _write_controls(page) == [], path
    wizard = page.goto("/models/new")
    assert wizard is not None and wizard.status == 403
    assert _write_controls(page) == []

    page.goto("/models/alpha")
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    assert csrf
    before = commits(grove_server)
    for path, fields in WRITES:
        for form in (fields, {**fields, "csrf": csrf}):
            answer = page.request.post(path, form=form, max_redirects=0)
            assert answer.status == 403, (path, form.keys(), answer.status)
    assert commits(grove_server) == before
    page.goto("/models/alpha")
    expect(page.locator(".card-sub, main")).not_to_contain_text("disabled")


# ---------------------------------------------------------------- an unreadable registry


def reload_until(page: Page, locator: Locator, count: int, timeout_s: float = 20) -> None:
    """Reload until ``locator`` matches ``count`` elements (a page learns of the
    database's state on its next read)."""
    deadline = time.monotonic() + timeout_s
    while locator.count() != count and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        page.reload()
    expect(locator).to_have_count(count)


def test_an_unreadable_registry_shows_the_banner_and_a_restored_one_clears_it(
    new_context: NewContext, start_grove: StartGrove, tmp_path: Path
) -> None:
    # a page learns of the damage and of the restore when it really reads the registry:
    # once its plan is older than 5 s, or GROVE_CONSOLE_OVERVIEW_S when shorter (1 s here)
    server = start_grove(GROVE_CONSOLE_OVERVIEW_S="1")
    page = fleet_page(new_context(), server, "operator")
    expect(page.get_by_role("link", name="Add a model").first).to_be_visible()
    path = Path(server.db_url.removeprefix("sqlite:///"))
    backup = tmp_path / "backup.db"
    with sqlite3.connect(path) as source, sqlite3.connect(backup) as target:
        source.backup(target)
    _overwrite_in_place(path)

    banner = page.locator(".banner-bad[role=alert]")
    reload_until(page, banner, 1)
    expect(banner).to_contain_text("The registry database cannot be read")
    expect(banner).to_contain_text("Actions are disabled")
    expect(page.locator("#model-alpha")).to_be_visible()  # the last snapshot
    assert _write_controls(page) == []
    axe_clean(page)
    for path_ in ("/models/alpha", "/status", "/rules/think"):
        page.goto(f"{server.url}{path_}")
        expect(banner).to_be_visible()
        assert _write_controls(page) == [], path_

    _restore(backup, path)
    page.goto(f"{server.url}/")
    reload_until(page, banner, 0)
    expect(page.get_by_role("link", name="Add a model").first).to_be_visible()


# ---------------------------------------------------------------- PostgreSQL


def test_sign_in_and_see_the_fleet_on_postgresql(
    request: pytest.FixtureRequest,
    new_context: NewContext,
    console_gate: ConsoleGate,
    tmp_path: Path,
) -> None:
    admin = request.getfixturevalue("postgres_admin")  # skips in one line without PostgreSQL
    with (
        postgres_database(admin) as url,
        serving.grove_server(tmp_path / "pg", None, GROVE_DB_URL=url) as server,
    ):
        assert server.db_url.startswith("postgresql")
        try:
            page = fleet_page(new_context(), server, "viewer")
            for ident in ("alpha", "beta", "gamma"):
                expect(page.locator(f"#model-{ident}")).to_be_visible()
            expect(page.get_by_text("3 of 3 models")).to_be_visible()
            axe_clean(page)
        finally:
            console_gate.close_pages()  # before the server stops and the database goes
