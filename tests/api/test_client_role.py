"""Issue 18: the ``client`` role, for applications, may call the data plane and nothing else.

The data plane is ``POST /api/routing/execute`` (through the lean handler and
FastAPI's own) and, once the gateway is there, ``/v1/*``; every other route, reads
included, is a 403 problem for a client token, and the console will not sign one in.
tests/api/test_access.py checks every route x role, ``client`` among them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastapi import Request

from reconciler.api import deps
from reconciler.api.bodies import ExecuteBody
from reconciler.api.problems import ApiError
from reconciler.cli import tokens as cli_tokens
from reconciler.store import sessions as stored
from reconciler.store import tokens
from reconciler.store.engine import Database
from reconciler.web import sessions
from reconciler.web.pages.signin import CLIENT_REFUSED
from tests.api.conftest import Server
from tests.conftest import Registry
from tests.web.conftest import csrf_of

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # HTTP, not the database
EXECUTE = "/api/routing/execute"
CALL = {"taskType": "think", "prompt": "hi"}
# Headers a client might hope a proxy or Grove would believe: none of them is read.
FORGED = {
    "X-Grove-Role": "admin",
    "X-Grove-Token-Role": "operator",
    "X-Forwarded-User": "admin-token",
    "X-Remote-User": "admin-token",
    "X-Role": "admin",
}


def _identity(role: str) -> tokens.Identity:
    return tokens.Identity("0" * 16, f"{role}-token", role)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("viewer", {"viewer"}),
        ("operator", {"viewer", "operator", "client"}),
        ("admin", {"viewer", "operator", "admin", "client"}),
        ("client", {"client"}),
        ("superuser", set()),  # a role this version does not know (a newer one's): nothing
    ],
)
def test_what_each_role_allows(role: str, allowed: set[str]) -> None:
    assert {needed for needed in tokens.ROLES if _identity(role).allows(needed)} == allowed


def test_the_command_line_offers_every_stored_role() -> None:
    assert cli_tokens.ROLES == tokens.ROLES


def test_a_role_check_names_a_known_role() -> None:
    with pytest.raises(ValueError, match="role must be one of"):
        deps.RoleCheck("superuser")


def test_grove_token_create_makes_a_client_token(registry: Registry) -> None:
    made = registry.run("token", "create", "--role", "client", "--name", "shop-app", "-o", "json")
    assert made.code == 0, made.err
    shown = json.loads(made.out)
    assert (shown["name"], shown["role"]) == ("shop-app", "client")
    assert tokens.well_formed(shown["token"])
    database = Database(registry.url)
    try:
        with database.transaction() as connection:
            listed = tokens.listing(connection)
            verified = tokens.verify(connection, shown["token"])
    finally:
        database.dispose()
    assert [(t["name"], t["role"], t["revoked"]) for t in listed] == [("shop-app", "client", False)]
    assert verified is not None and verified.role == "client"
    wrong = registry.run("token", "create", "--role", "superuser", "--name", "nope")
    assert wrong.code != 0 and "client" in wrong.err  # the choices are listed
    helped = registry.run("token", "create", "--help")
    assert "client" in helped.out and "data plane" in helped.out


def _refused_as_client(response: httpx.Response, where: str) -> None:
    assert response.status_code == 403, (where, response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", where
    problem = response.json()
    assert problem["code"] == "forbidden", where
    assert problem["detail"].startswith(
        "the client role may only call the data plane (POST /api/routing/execute and /v1/*)"
    ), where
    assert "client-token" not in response.text and "grove_" not in response.text, where


@SQLITE_ONLY
@pytest.mark.parametrize("lean", [True, False], ids=["lean", "fastapi"])
def test_a_client_calls_execute_and_a_viewer_still_cannot(
    server: Server, lean: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.lean_routes(lean)
    read = ExecuteBody.model_validate_json
    lean_reads: list[bytes] = []  # only the lean handler reads the body this way

    def counted(data: bytes, **options: Any) -> ExecuteBody:
        lean_reads.append(data)
        return read(data, **options)

    monkeypatch.setattr(ExecuteBody, "model_validate_json", counted)
    with server.client("client") as client:
        executed = client.post(EXECUTE, json=CALL)
        assert executed.status_code == 200, executed.text
        assert executed.json()["modelId"] == "alpha"
        assert len(lean_reads) == (1 if lean else 0)
        assert client.post(EXECUTE, json=CALL, headers=FORGED).status_code == 200
        invalid = client.post(EXECUTE, json={"taskType": "think"})  # validation as for anyone
        assert invalid.status_code == 422
    with server.client("viewer") as viewer:
        for headers in ({}, FORGED):
            refused = viewer.post(EXECUTE, json=CALL, headers=headers)
            assert refused.status_code == 403
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "forbidden"
            assert refused.json()["detail"] == (
                "this is the data plane: it needs the client, operator or admin role"
            )
    for role in ("operator", "admin"):
        with server.client(role) as client:
            assert client.post(EXECUTE, json=CALL).status_code == 200, role
    with server.client("admin") as admin:  # the client's call is logged like any other
        rows = admin.get("/api/routing/logs", params={"modelId": "alpha"}).json()
    assert len(rows) >= 4 and all(row["success"] for row in rows)


@SQLITE_ONLY
def test_a_client_token_reads_nothing_even_with_forged_headers(server: Server) -> None:
    reads = [
        "/api/models",
        "/api/models/alpha",
        "/api/models/discover?capability=reasoning",
        "/api/models/health",
        "/api/routing/recommend?taskType=think",
        "/api/routing/logs",
        "/api/status",
        "/api/plan",
        "/api/rules",
        "/api/rollouts",
        "/api/quarantine",
        "/metrics",
    ]
    with server.client("client") as client:
        for headers in ({}, FORGED):
            for path in reads:
                _refused_as_client(client.get(path, headers=headers), path)
            _refused_as_client(client.post("/api/reconcile", headers=headers), "reconcile")
            _refused_as_client(client.post("/api/models/alpha/disable", headers=headers), "disable")
            _refused_as_client(
                client.delete("/api/models/alpha", params={"force": "true"}, headers=headers),
                "forced delete",
            )
            with client.stream("GET", "/api/events", headers=headers) as stream:
                stream.read()  # a problem document, not an event stream
                _refused_as_client(stream, "events")
    with server.client("admin") as admin:
        assert admin.get("/api/models/alpha").json()["state"] == "enabled"  # nothing happened


@SQLITE_ONLY
def test_the_data_plane_check_reads_a_token_from_any_header(server: Server) -> None:
    """``deps.DATA_PLANE.of_token``: the check the gateway makes of an ``x-api-key``."""
    request = Request({"type": "http", "app": server.app, "headers": []})

    async def check(token: str | None) -> tokens.Identity:
        return await deps.DATA_PLANE.of_token(request, token)

    assert asyncio.run(check(server.tokens["client"])).role == "client"
    assert asyncio.run(check(server.tokens["operator"])).role == "operator"
    for token, status in (
        (server.tokens["viewer"], 403),
        (None, 401),
        ("", 401),
        ("grove_0000000000000000_" + "A" * 43, 401),
    ):
        with pytest.raises(ApiError) as refused:
            asyncio.run(check(token))
        assert refused.value.status == status, token


@SQLITE_ONLY
def test_a_client_token_cannot_sign_in_to_the_console(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60, follow_redirects=False) as browser:
        form = browser.get("/login")
        answer = browser.post(
            "/login",
            data={"token": server.tokens["client"], "csrf": csrf_of(form.text), "next": "/"},
        )
        assert answer.status_code == 200  # the form again, its error at the field
        assert sessions.COOKIE not in answer.cookies
        page = answer.text
        assert 'aria-invalid="true"' in page and 'id="token-error"' in page
        assert CLIENT_REFUSED.split(":")[0] in page  # "That is a client token, for applications"
        assert server.tokens["client"] not in page  # the token is not echoed back
        assert browser.get("/").status_code == 303  # still signed out
        assert browser.get("/").headers["location"].startswith("/login")
    assert server.registry.sql("SELECT COUNT(*) FROM console_sessions")[0][0] == 0


@SQLITE_ONLY
def test_a_client_session_made_behind_the_consoles_back_is_signed_out(server: Server) -> None:
    """Were a session row ever made for a client token (by hand in the database), the
    console would still treat its cookie as no session."""
    database = Database(server.registry.url)
    try:
        with database.transaction(write=True) as connection:
            identity = tokens.verify(connection, server.tokens["client"])
            assert identity is not None
            secret, _ = stored.create(connection, identity, ttl_s=600)
    finally:
        database.dispose()
    with httpx.Client(
        base_url=server.url, timeout=60, follow_redirects=False, cookies={sessions.COOKIE: secret}
    ) as browser:
        for path in ("/", "/status"):
            answer = browser.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login"), path
        assert browser.get("/login").status_code == 200  # the form, not a redirect loop
