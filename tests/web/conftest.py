"""The console over HTTP: a real server (tests/api/conftest.py) and a browser-like client
that signs in through the form, as a person would."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import Server, bare_fleet, server  # noqa: F401 - the fixtures, shared

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
