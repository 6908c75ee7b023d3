"""The console's sign-in, sessions, CSRF, headers and fleet page, over real HTTP.

On SQLite only: the database is not what these test (store.sessions is tested on both in
test_sessions_store.py, and a browser journey runs on PostgreSQL)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import httpx

from tests.api.conftest import Server
from tests.api.test_probes import _overwrite_in_place, _restore, _until
from tests.conftest import GroveRunner
from tests.web.conftest import csrf_of, sign_in

CSP = "default-src 'self'; frame-ancestors 'none'"


def test_a_page_without_a_session_redirects_to_sign_in(shared_server: Server) -> None:
    with httpx.Client(base_url=shared_server.url) as client:
        answer = client.get("/?capability=reasoning")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/%3Fcapability%3Dreasoning"


def test_sign_in_makes_a_strict_http_only_session(shared_server: Server) -> None:
    with httpx.Client(base_url=shared_server.url) as client:
        form = client.get("/login")
        assert form.status_code == 200
        assert CSP in form.headers["content-security-policy"]
        assert form.headers["x-content-type-options"] == "nosniff"
        answer = client.post(
            "/login", data={"token": shared_server.tokens["viewer"], "csrf": csrf_of(form.text)}
        )
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"]
        assert "grove_session=" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert shared_server.tokens["viewer"] not in cookie
        fleet = client.get("/")
    assert fleet.status_code == 200
    assert "viewer-token" in fleet.text


def test_sign_in_without_its_csrf_token_is_refused(shared_server: Server) -> None:
    with httpx.Client(base_url=shared_server.url) as client:
        client.get("/login")
        answer = client.post("/login", data={"token": shared_server.tokens["admin"]})
    assert answer.status_code == 403
    assert "grove_session" not in answer.headers.get("set-cookie", "")


def test_a_wrong_token_says_so_at_the_field(shared_server: Server) -> None:
    with httpx.Client(base_url=shared_server.url) as client:
        form = client.get("/login")
        bogus = "grove_0123456789abcdef_" + "x" * 40
        answer = client.post("/login", data={"token": bogus, "csrf": csrf_of(form.text)})
        assert answer.status_code == 200  # the form again, its error in it
        assert "unknown or revoked" in answer.text
        assert bogus not in answer.text  # a credential never reaches a page
        answer = client.post("/login", data={"token": "hunter2", "csrf": csrf_of(form.text)})
    assert answer.status_code == 200
    assert "hunter2" not in answer.text
    assert 'aria-invalid="true"' in answer.text


def test_next_only_goes_to_a_path_of_this_server(shared_server: Server) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        with httpx.Client(base_url=shared_server.url) as client:
            form = client.get("/login")
            answer = client.post(
                "/login",
                data={
                    "token": shared_server.tokens["viewer"],
                    "csrf": csrf_of(form.text),
                    "next": target,
                },
            )
        assert answer.headers["location"] == "/", target


def test_sign_out_needs_the_csrf_token_and_ends_the_session(shared_server: Server) -> None:
    with contextlib.closing(sign_in(shared_server, "operator")) as client:
        assert client.post("/logout", data={}).status_code == 403
        assert client.get("/").status_code == 200
        token = csrf_of(client.get("/").text)
        assert client.post("/logout", data={"csrf": token}).status_code == 303
        assert client.get("/").status_code == 303


def test_revoking_the_token_ends_its_sessions(server: Server, grove: GroveRunner) -> None:
    with contextlib.closing(sign_in(server, "viewer")) as client:
        assert client.get("/").status_code == 200
        assert grove("token", "revoke", "viewer-token").code == 0
        server.app.state.console.sessions._entries.clear()  # the cache's few seconds, skipped
        assert client.get("/").status_code == 303


def test_the_fleet_page_shows_each_model_with_both_status_axes(
    shared_operator: httpx.Client,
) -> None:
    page = shared_operator.get("/")
    assert page.status_code == 200
    assert CSP in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # no inline script: only <script src=...>
    assert 'style="' not in page.text
    assert "Sync" in page.text and "Health" in page.text
    table = shared_operator.get("/?view=table")
    assert "<table" in table.text
    filtered = shared_operator.get("/?q=no-such-model-anywhere")
    assert "No model matches these filters" in filtered.text


def test_the_live_fragment_is_only_the_live_region(shared_operator: httpx.Client) -> None:
    fragment = shared_operator.get("/", headers={"X-Grove-Fragment": "live"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert "model" in fragment.text


def test_a_model_named_like_a_script_shows_as_text(server: Server, operator: httpx.Client) -> None:
    with server.client("operator") as api:
        answer = api.post(
            "/api/models/register",
            json={
                "id": "xss-model",
                "name": "<script>alert(1)</script>",
                "provider": "mock",
                "capabilities": {"reasoning": 0.5},
            },
        )
        assert answer.status_code == 201, answer.text
    page = operator.get("/")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_console_routes_are_not_in_the_api_description(shared_server: Server) -> None:
    with shared_server.client("viewer") as api:
        paths = api.get("/openapi.json").json()["paths"]
    assert not [
        p
        for p in paths
        if not p.startswith(("/api", "/metrics", "/healthz", "/readyz", "/hooks", "/v1"))
    ]


def test_static_files_carry_their_hash_and_headers(shared_operator: httpx.Client) -> None:
    page = shared_operator.get("/").text
    css = page.split('href="/static/console.css?v=')[1].split('"')[0]
    answer = shared_operator.get(f"/static/console.css?v={css}")
    assert answer.status_code == 200
    assert "immutable" in answer.headers["cache-control"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert shared_operator.get("/favicon.ico").status_code == 200
    missing = shared_operator.get("/static/nope.js")
    assert missing.status_code == 404
    assert "Back to the fleet" in missing.text


def test_an_unreadable_registry_shows_the_snapshot_under_a_banner(
    server: Server, operator: httpx.Client, tmp_path: Path
) -> None:
    path = Path(server.registry.url.removeprefix("sqlite:///"))
    assert "Add a model" in operator.get("/").text
    backup = tmp_path / "backup.db"
    with sqlite3.connect(path) as source, sqlite3.connect(backup) as target:
        source.backup(target)
    _overwrite_in_place(path)
    server.app.state.console.overview.forget()
    page = _until(
        lambda: (p := operator.get("/")).status_code == 200 and "cannot be read" in p.text and p
    )
    assert 'role="alert"' in page.text
    assert "Actions are disabled" in page.text
    assert 'href="/models/new"' not in page.text  # no write control while degraded
    assert "alpha" in page.text  # the last snapshot's models are still shown
    assert "Traceback" not in page.text
    assert str(path.parent) not in page.text
    _restore(backup, path)
    # the banner clears when the overview really reads the registry again: at most every
    # few seconds on its own; forgotten here, as after the damage, it does at once
    server.app.state.console.overview.forget()
    _until(lambda: "cannot be read" not in operator.get("/").text)


def test_an_address_out_of_bounds_is_a_page_not_a_crash(shared_operator: httpx.Client) -> None:
    answer = shared_operator.get("/?q=" + "x" * 500)
    assert answer.status_code == 400
    assert "That address is not valid" in answer.text
    assert "Check q" in answer.text
    assert "Traceback" not in answer.text


def test_a_huge_form_or_cookie_is_refused_as_a_page(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    with httpx.Client(base_url=shared_server.url) as client:
        form = client.get("/login")
        huge = client.post("/login", data={"token": "x" * 400_000, "csrf": csrf_of(form.text)})
        assert 400 <= huge.status_code < 500
        assert "grove_session" not in huge.headers.get("set-cookie", "")
        client.cookies.set("grove_session", "y" * 10_000)
        forged = client.get("/")
        assert forged.status_code == 303  # no session: to the sign-in page, no lookup made
    assert shared_operator.get("/").status_code == 200
