"""The model page (/models/{id}) over real HTTP: a real server, a real fleet repository."""

from __future__ import annotations

import contextlib
import html
import sqlite3
import time
from pathlib import Path

import httpx

from tests.api.conftest import Server
from tests.api.test_probes import _overwrite_in_place, _restore
from tests.web.conftest import csrf_of, sign_in


def _route(server: Server, calls: int) -> None:
    with server.client("operator") as client:
        for _ in range(calls):
            answer = client.post(
                "/api/routing/execute", json={"taskType": "think", "prompt": "hello"}
            )
            assert answer.status_code == 200, answer.text


def _until(check: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_the_model_page_shows_the_model_its_rules_history_and_charts(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    page = shared_operator.get("/models/alpha")
    assert page.status_code == 200, page.text
    text = page.text
    assert "<h1>Alpha</h1>" in text
    assert "Sync" in text and "Health" in text
    assert "reasoning" in text and "0.90" in text
    assert '<a href="/models/beta">beta</a>' in text  # its fallback, linked
    assert "Rules that use it" in text and 'href="/rules/think"' in text
    assert "Version history" in text and "live" in text
    assert 'aria-current="true">24h<' in text  # the default window
    for chart in ("latency", "success rate", "requests", "cost"):
        assert f"Alpha: {chart}" in text
    assert "no data in this window" in text
    assert 'action="/models/alpha/actions/disable"' in text  # an operator's actions
    seven = shared_operator.get("/models/alpha", params={"window": "7d"})
    assert 'aria-current="true">7d<' in seven.text
    odd = shared_operator.get("/models/alpha", params={"window": "<b>"})
    assert odd.status_code == 200 and 'aria-current="true">24h<' in odd.text
    fragment = shared_operator.get("/models/alpha?window=7d", headers={"X-Grove-Fragment": "live"})
    assert fragment.status_code == 200  # what an open page refreshes: the live block only
    assert "<html" not in fragment.text and "Alpha: latency" in fragment.text
    assert "/actions/" not in fragment.text  # forms stay outside what is swapped


def test_recent_decisions_say_why_this_model(server: Server, operator: httpx.Client) -> None:
    _route(server, 3)

    def logged() -> bool:
        return operator.get("/models/alpha").text.count('class="decision"') == 3

    _until(logged)
    text = operator.get("/models/alpha", params={"window": "1h"}).text
    assert "why this model" in text
    assert 'href="/rules/think"' in text
    assert "alpha → beta" in text  # the chain the decision had
    assert "n = 3 attempts" in text
    assert "insufficient data" in text  # 3 samples make no percentile


def test_an_unknown_or_hostile_id_is_a_404_page_with_the_id_escaped(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    for ident in ("nobody", "<script>alert(1)</script>", "x" * 150, "a.b c%"):
        page = shared_operator.get("/models/" + httpx.URL(ident).raw_path.decode().lstrip("/"))
        assert page.status_code == 404, ident
        assert "<script>alert(1)" not in page.text
    long = shared_operator.get("/models/" + "y" * 300)
    assert long.status_code == 404
    assert shared_operator.get("/models/alpha/actions/explode", headers={}).status_code in (
        404,
        405,
    )


def test_a_viewer_sees_no_actions_and_its_forged_post_is_refused(shared_server: Server) -> None:
    before = shared_server.log()
    with contextlib.closing(sign_in(shared_server, "viewer")) as viewer:
        page = viewer.get("/models/alpha")
        assert page.status_code == 200
        assert "/actions/" not in page.text
        forged = viewer.post(
            "/models/alpha/actions/disable", data={"csrf": csrf_of(page.text), "confirm": "1"}
        )
        assert forged.status_code == 403
    assert shared_server.log() == before


def test_an_action_without_its_csrf_token_is_refused(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    before = shared_server.log()
    answer = shared_operator.post("/models/alpha/actions/disable", data={"confirm": "1"})
    assert answer.status_code == 403
    assert shared_server.log() == before


def test_disable_is_previewed_then_committed_then_said(
    server: Server, operator: httpx.Client
) -> None:
    before = server.log()
    page = operator.get("/models/gamma")
    preview = operator.post("/models/gamma/actions/disable", data={"csrf": csrf_of(page.text)})
    assert preview.status_code == 200, preview.text
    assert "Preview: nothing is committed yet" in preview.text
    assert "grove: disable AIModel gamma" in preview.text  # the commit message
    assert 'name="confirm" value="1"' in preview.text
    assert server.log() == before  # a preview commits nothing
    done = operator.post(
        "/models/gamma/actions/disable", data={"csrf": csrf_of(preview.text), "confirm": "1"}
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith("/models/gamma?done=disable&result=done&rev=")
    assert server.log()[0] == "operator-token|grove: disable AIModel gamma"
    after = operator.get(done.headers["location"])
    assert "Disabled." in after.text
    _until(lambda: "state-disabled" in operator.get("/models/gamma").text)
    after = operator.get(done.headers["location"])
    assert 'action="/models/gamma/actions/enable"' in after.text


def test_a_refused_action_shows_its_violations_and_commits_nothing(
    server: Server, operator: httpx.Client
) -> None:
    with server.client("operator") as api:  # gamma is left the last model of rule think
        for ident in ("alpha", "beta"):
            assert api.post(f"/api/models/{ident}/disable").status_code == 200
    before = server.log()
    page = operator.get("/models/gamma")
    for confirm in ("", "1"):
        refused = operator.post(
            "/models/gamma/actions/retire", data={"csrf": csrf_of(page.text), "confirm": confirm}
        )
        assert refused.status_code == 200, refused.text  # a refusal is the page asked for
        assert "P004" in refused.text and "Way out" in refused.text
        assert 'name="confirm"' not in refused.text  # nothing to confirm
    assert server.log() == before


def test_a_rollback_is_previewed_then_quarantines_the_version(
    server: Server, operator: httpx.Client
) -> None:
    with server.client("operator") as api:
        assert api.patch("/api/models/gamma", json={"priority": 12}).status_code == 200
    page = operator.get("/models/gamma")
    assert "version <strong>2</strong>" in page.text
    preview = operator.post("/models/gamma/actions/rollback", data={"csrf": csrf_of(page.text)})
    assert preview.status_code == 200, preview.text
    assert "roll back from version 2 to 1" in html.unescape(preview.text)
    done = operator.post(
        "/models/gamma/actions/rollback", data={"csrf": csrf_of(preview.text), "confirm": "1"}
    )
    assert done.status_code == 303, done.text
    location = done.headers["location"]
    assert "Rolled back." in operator.get(location).text
    # the router's snapshot follows the registry within a moment
    _until(lambda: "version <strong>1</strong>" in operator.get(location).text)
    after = operator.get(location).text
    assert "⊘ </span>quarantined" in after  # version 2, in the history
    nothing = operator.post("/models/beta/actions/rollback", data={"csrf": csrf_of(after)})
    assert "nothing to roll back to" in nothing.text  # one version only: no button either
    assert "/models/beta/actions/rollback" not in operator.get("/models/beta").text


def test_an_unreadable_registry_shows_the_model_under_the_banner_without_actions(
    server: Server, operator: httpx.Client, tmp_path: Path
) -> None:
    _route(server, 2)
    _until(lambda: operator.get("/models/alpha").text.count('class="decision"') == 2)
    path = Path(server.registry.url.removeprefix("sqlite:///"))
    backup = tmp_path / "backup.db"
    with sqlite3.connect(path) as source, sqlite3.connect(backup) as target:
        source.backup(target)
    _overwrite_in_place(path)
    server.app.state.console.overview.forget()

    seen: list[httpx.Response] = []

    def degraded() -> bool:
        seen.append(operator.get("/models/alpha", params={"window": "7d"}))
        return seen[-1].status_code == 200 and "cannot be read" in seen[-1].text

    _until(degraded)  # (a page whose reads all answered has no banner: a partial outage)
    page = seen[-1]
    assert "<h1>Alpha</h1>" in page.text  # the router's snapshot of the model
    assert "/actions/" not in page.text  # no write control while degraded
    assert "Traceback" not in page.text
    _restore(backup, path)
    # the banner clears when the overview really reads the registry again: at most every
    # few seconds on its own; forgotten here, as after the damage, it does at once
    server.app.state.console.overview.forget()
    _until(lambda: "cannot be read" not in operator.get("/models/alpha").text)
