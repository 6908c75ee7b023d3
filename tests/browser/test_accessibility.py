"""Accessibility of every console page in every state: axe (WCAG 2.1 A and AA) finds
nothing, in the light and the dark theme and at 375 px wide; then what axe cannot judge:
every chart has a name and its numbers beside it, Tab reaches every control in the order
of the page with a focus ring that shows, and ``/`` goes to the fleet's search box.

The states that change nothing run on the session's shared server (signed in as an
operator, who sees the most controls); the empty fleet and the charts of real numbers
need a server of their own.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from reconciler.store import routing_logs
from reconciler.store.engine import Database
from tests.browser.conftest import StartGrove
from tests.browser.gate import ConsoleGate
from tests.browser.pages import axe_clean, signed_in
from tests.browser.serving import GroveServer
from tests.conftest import model_yaml, rule_yaml

NewContext = Callable[..., BrowserContext]


def status_error(code: int) -> re.Pattern[str]:
    """What Chromium says on the console when a navigation answers ``code``."""
    return re.compile(rf"Failed to load resource: the server responded with a status of {code}.*")


# every page a signed-in operator can open without changing anything, and the error page
PAGES = (
    "/",
    "/?view=table",
    "/?q=no-model-is-called-this",  # filtered to nothing
    "/models/alpha",
    "/models/alpha?window=7d",
    "/models/new",  # the wizard's first step
    "/rules",
    "/rules/think",
    "/status",
    "/static/nope",  # the 404 page
)
MAIN_PAGES = ("/", "/models/alpha", "/models/new", "/rules/think", "/status")
THEMES = [("light", 1280), ("dark", 1280), ("light", 375)]


def _violations(page: Page) -> str | None:
    try:
        axe_clean(page)
    except AssertionError as failure:
        return str(failure)
    return None


def _page(new_context: NewContext, scheme: str, width: int) -> Page:
    page = new_context(color_scheme=scheme).new_page()  # the viewport is the context's
    page.set_viewport_size({"width": width, "height": 800})
    return page


# ---------------------------------------------------------------- axe, state by state


@pytest.mark.parametrize(("scheme", "width"), THEMES)
def test_the_login_page_and_its_error(
    new_context: NewContext,
    grove_server: GroveServer,
    console_gate: ConsoleGate,
    scheme: str,
    width: int,
) -> None:
    console_gate.allow(status_error(422))
    page = _page(new_context, scheme, width)
    page.goto("/login")
    axe_clean(page)
    page.keyboard.type("not a token")
    page.keyboard.press("Enter")
    expect(page.locator("#token")).to_have_attribute("aria-invalid", "true")
    axe_clean(page)


@pytest.mark.parametrize(("scheme", "width"), THEMES)
def test_every_page(
    new_context: NewContext,
    grove_server: GroveServer,
    console_gate: ConsoleGate,
    scheme: str,
    width: int,
) -> None:
    """Each page once per theme and width, in one signed-in context. (Each wizard step,
    a validation error, the rule editor's errors and the actions' previews are checked
    in every theme and width by tests/browser/test_wizard.py, test_rules.py and
    test_model.py; the degraded banner by test_journeys.py.)"""
    console_gate.expect(status_error(404))
    page = _page(new_context, scheme, width)
    signed_in(page, grove_server.token("operator"), grove_server.url)
    dark = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    assert dark == (scheme == "dark")
    found: dict[str, str] = {}
    for path in PAGES:
        answer = page.goto(f"{grove_server.url}{path}")
        assert answer is not None and answer.status == (404 if "nope" in path else 200), path
        expect(page.locator("h1")).to_have_count(1)
        report = _violations(page)
        if report:
            found[path] = report
        wide = page.evaluate("document.documentElement.scrollWidth")
        if wide > width:
            found[path] = f"{wide} px wide on a {width} px screen: a sideways scroll"
    assert found == {}


# ---------------------------------------------------------------- rollouts

SLO = "{minSuccessRate: 0.95, maxP95LatencyMs: 5000, minSamples: 5, windowS: 3600}"
STEPS = "{steps: [{weight: 50, pauseS: 3600}, {weight: 80, pauseS: 3600}]}"


def _rollout_fleet(version: str) -> dict[str, str | bytes]:
    alpha = model_yaml("alpha", priority="90", fallbacks="[beta]", slo=SLO, rollout=STEPS)
    return {
        "models/alpha.yaml": alpha.replace('version: "1"', f'version: "{version}"'),
        "models/beta.yaml": model_yaml("beta", priority="50"),
        "rules/think.yaml": rule_yaml("think", minScore="0.5"),
    }


def test_the_rollout_pages(new_context: NewContext, start_grove: StartGrove) -> None:
    """A canary of alpha's version 2 with some calls judged: the status page's rollouts,
    the model page's rollout and the abort preview; then, pushes refused, the rollback
    left to make by hand on both pages. Each in every theme and width, without a
    sideways scroll (the rollouts table scrolls in its own region)."""
    server = start_grove(_rollout_fleet("1"))
    server.worktree.push_to(server.repo, "alpha: version 2", _rollout_fleet("2"))
    with server.api("operator") as api:
        assert api.post("/api/reconcile").status_code == 200
        for _ in range(30):
            answer = api.post("/api/routing/execute", json={"taskType": "think", "prompt": "hi"})
            assert answer.status_code == 200, answer.text

    pages = []
    for scheme, width in THEMES:
        page = _page(new_context, scheme, width)
        signed_in(page, server.token("operator"), server.url)
        pages.append((page, f"{scheme} {width}", width))

    def check(*, abort_preview: bool) -> dict[str, str]:
        found: dict[str, str] = {}
        for page, theme, width in pages:
            for path in ("/status", "/models/alpha"):
                page.goto(f"{server.url}{path}")
                expect(page.locator("#rollout-title, #rollouts-title")).to_have_count(1)
                states = [path]
                if abort_preview and path == "/models/alpha":
                    page.get_by_role("button", name="Abort…").click()  # its preview
                    expect(page.get_by_label("Why abort")).to_be_visible()
                    states = ["the abort preview"]
                for state in states:
                    report = _violations(page)
                    if report:
                        found[f"{state} {theme}"] = report
                    wide = page.evaluate("document.documentElement.scrollWidth")
                    if wide > width:
                        found[f"{state} {theme}"] = f"{wide} px wide: a sideways scroll"
        return found

    assert check(abort_preview=False) == {}
    assert check(abort_preview=True) == {}
    hook = server.repo / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    page = pages[0][0]
    page.get_by_label("Why abort").fill("answers look wrong")
    page.get_by_role("button", name="Confirm: abort and roll back").click()
    expect(page.get_by_role("heading", name="Rollback to make by hand")).to_be_visible()
    assert check(abort_preview=False) == {}


# ---------------------------------------------------------------- charts


def _fill_logs(db_url: str, model_id: str, rows: int) -> None:
    """``rows`` attempts of ``model_id`` over the last 6 days, some failed."""
    rng = random.Random(16)
    now = dt.datetime.now(dt.UTC)
    batch = []
    for n in range(rows):
        ok = n % 17 != 0
        batch.append(
            routing_logs.Attempt.of(
                request_id=str(uuid.UUID(int=rng.getrandbits(128))),
                model_id=model_id,
                task_type="think",
                capability_required="reasoning",
                latency_ms=rng.lognormvariate(5.5, 0.5),
                success=ok,
                attempt=1,
                error_kind=None if ok else "server_error",
                input_tokens=200,
                output_tokens=300,
                cost_usd=0.0004,
                reason="rule think: priority",
                chain=[model_id],
                rule_id="think",
                strategy="priority",
                revision=None,
                error=None if ok else "HTTP 500",
                timestamp=now - dt.timedelta(seconds=rng.uniform(0, 6 * 86400) * (n % 3 != 0)),
            )
        )
    db = Database(db_url)
    try:
        with db.transaction(write=True) as connection:
            routing_logs.write_batch(connection, batch)
    finally:
        db.dispose()


CHARTS = """() => [...document.querySelectorAll('svg[role=img]')].map(svg => {
  const ids = (svg.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean);
  const names = ids.map(id => {
    const e = document.getElementById(id); return e ? e.textContent.trim() : null; });
  const figure = svg.closest('figure');
  const table = figure && [...figure.querySelectorAll('details table')].find(
    t => svg.compareDocumentPosition(t) & Node.DOCUMENT_POSITION_FOLLOWING);
  const card = svg.closest('.card');
  return {
    id: figure ? figure.id : svg.outerHTML.slice(0, 80),
    names,
    rows: table ? table.querySelectorAll('tbody tr').length : 0,
    sparkline: !!(figure && figure.classList.contains('sparkline')),
    cardNumbers: card ? [...card.querySelectorAll('.facts dd')].map(d => d.textContent.trim()) : [],
  };
})"""


def _chart_problems(page: Page) -> tuple[int, list[str]]:
    charts: list[dict[str, Any]] = page.evaluate(CHARTS)
    problems = []
    for chart in charts:
        if not chart["names"] or any(not name for name in chart["names"]):
            problems.append(f"{chart['id']}: aria-labelledby names {chart['names']}")
        numbers_beside = chart["sparkline"] and any(
            re.search(r"\d", text) for text in chart["cardNumbers"]
        )
        if chart["rows"] == 0 and not numbers_beside:
            problems.append(f"{chart['id']}: no table of its numbers after it")
    return len(charts), problems


def test_the_empty_fleet(page: Page, start_grove: StartGrove) -> None:
    server = start_grove({})
    signed_in(page, server.token("operator"), server.url)
    expect(page.get_by_role("heading", name="No models yet")).to_be_visible()
    axe_clean(page)


def test_every_chart_has_a_name_and_its_numbers(page: Page, start_grove: StartGrove) -> None:
    """A model with a week of traffic: each chart on its card and its page is named and
    followed by its numbers, in each window."""
    server = start_grove()
    _fill_logs(server.db_url, "alpha", 600)  # before the first page: the fleet caches 10 s
    signed_in(page, server.token("operator"), server.url)
    expect(page.locator("#model-alpha svg[role=img]")).to_have_count(1)
    count, problems = _chart_problems(page)
    assert count >= 1
    assert problems == []
    axe_clean(page)
    for path in ("/models/alpha", "/models/alpha?window=7d"):
        page.goto(f"{server.url}{path}")
        count, problems = _chart_problems(page)
        assert count >= 4, (path, count)
        assert problems == [], path
        axe_clean(page)


# ---------------------------------------------------------------- keyboard

FOCUSABLE = """() => { document.activeElement && document.activeElement.blur();
  return [...document.querySelectorAll(
  'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]')]
  .filter(e => !e.disabled && e.tabIndex >= 0 && e.checkVisibility({visibilityProperty: true})
          && !e.closest('[inert]'))
  .filter(e => e.tagName !== 'INPUT' || e.type !== 'radio' || e.checked
          || !document.querySelector(`input[type=radio][name="${e.name}"]:checked`))
  .map((e, i) => { e.dataset.tabOrder = i; return {
    tag: e.tagName.toLowerCase(), text: (e.textContent || e.name || e.id).trim().slice(0, 40),
    outline: getComputedStyle(e).outlineStyle + ' ' + getComputedStyle(e).outlineWidth,
    shadow: getComputedStyle(e).boxShadow }; }); }"""

FOCUSED = """() => { const e = document.activeElement; const s = getComputedStyle(e);
  return { order: e.dataset.tabOrder ?? null, tag: e.tagName.toLowerCase(),
           text: (e.textContent || e.name || e.id || '').trim().slice(0, 40),
           visible: e.matches(':focus-visible'),
           outline: s.outlineStyle + ' ' + s.outlineWidth, shadow: s.boxShadow }; }"""


def _tab_through(page: Page) -> list[str]:
    """Tab from the top through the page: each stop must be the next element in DOM
    order, and look different (an outline or a shadow) from when it was not focused."""
    elements: list[dict[str, str]] = page.evaluate(FOCUSABLE)
    assert len(elements) > 1
    # from the first (an autofocused field would be the start otherwise), then by keys
    page.locator("[data-tab-order='0']").focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    problems = []
    for expected, before in enumerate(elements):
        if expected:
            page.keyboard.press("Tab")
        now: dict[str, Any] = page.evaluate(FOCUSED)
        if now["order"] != str(expected):
            problems.append(
                f"Tab {expected + 1}: expected {before['tag']} {before['text']!r}, "
                f"focus went to {now['tag']} {now['text']!r} (#{now['order']})"
            )
            break
        ring = now["outline"].split()[0] != "none" and not now["outline"].endswith(" 0px")
        if not now["visible"] or not (ring or now["shadow"] not in ("none", before["shadow"])):
            problems.append(f"{now['tag']} {now['text']!r}: no visible focus ({now})")
        elif (now["outline"], now["shadow"]) == (before["outline"], before["shadow"]):
            problems.append(f"{now['tag']} {now['text']!r}: looks the same focused")
    return problems


def test_tab_reaches_every_control_in_order_with_a_visible_focus(
    page: Page, grove_server: GroveServer
) -> None:
    signed_in(page, grove_server.token("operator"))
    found = {}
    for path in MAIN_PAGES:
        page.goto(path)
        problems = _tab_through(page)
        if problems:
            found[path] = problems
    assert found == {}


def test_slash_focuses_the_search_box(page: Page, grove_server: GroveServer) -> None:
    signed_in(page, grove_server.token("viewer"))
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("/")
    search = page.get_by_role("searchbox", name="Search")
    expect(search).to_be_focused()
    expect(search).to_have_value("")  # the slash was not typed into it
    page.keyboard.type("beta")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r".*[?&]q=beta\b.*"))
    expect(page.locator("#model-beta")).to_be_visible()
    expect(page.locator("#model-alpha")).to_have_count(0)
