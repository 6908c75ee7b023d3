"""The console over HTTP: a real server (tests/api/conftest.py) and a browser-like client
that signs in through the form, as a person would."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import Server, bare_fleet, server, shared  # noqa: F401 - the fixtures

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(running: Server, role: str) -> httpx.Client:
    """A client holding the session of ``role``'s token, signed in through /login."""
    client = httpx.Client(base_url=running.url, timeout=60, follow_redirects=False)
    form = client.get("/login")
    answer = client.post(
        "/login", data={"token": running.tokens[role], "csrf": csrf_of(form.text), "next": "/"}
    )
    assert answer.status_code == 303, answer.text
    return client


@pytest.fixture
def operator(server: Server) -> Iterator[httpx.Client]:  # noqa: F811 - the fixture
    with contextlib.closing(sign_in(server, "operator")) as client:
        yield client


@pytest.fixture(params=["sqlite"])
def db_url(db_url: str) -> str:
    """The console over HTTP runs on SQLite: the database is not what these pages test
    (store.sessions runs on both in test_sessions_store.py, and a browser journey runs on
    PostgreSQL)."""
    return db_url


@pytest.fixture(scope="module")
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """tests/api/conftest.py's ``shared_server`` on SQLite: one server for a module's
    tests that only read or are refused and check that nothing changed."""
    yield from shared(request, tmp_path_factory, "sqlite")


@pytest.fixture
def shared_operator(shared_server: Server) -> Iterator[httpx.Client]:
    """``operator``, signed in to ``shared_server``."""
    with contextlib.closing(sign_in(shared_server, "operator")) as client:
        yield client
