"""An address that is no route: the console's 404 page for a browser, the API's problem
document for anything else (a script, the API's and the gateway's paths)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import Server

HTML = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.mark.parametrize("path", ["/nothing-here", "/models/new/extra", "/rules/nope/extra/more"])
def test_a_browser_gets_the_consoles_404_page(
    shared_server: Server, shared_operator: httpx.Client, path: str
) -> None:
    signed_in = shared_operator.get(path, headers=HTML)
    assert signed_in.status_code == 404, signed_in.headers
    assert signed_in.headers["content-type"].startswith("text/html")
    assert "<h1>No such page</h1>" in signed_in.text
    assert 'href="/"' in signed_in.text  # a way back
    assert "Sign out" in signed_in.text  # the console's header, as on every page
    with httpx.Client(base_url=shared_server.url) as browser:  # nobody signed in
        anonymous = browser.get(path, headers=HTML)
    assert anonymous.status_code == 404 and "<h1>No such page</h1>" in anonymous.text
    assert "Sign out" not in anonymous.text


PROBLEM, GATEWAY = "application/problem+json", "application/json"


@pytest.mark.parametrize(
    ("path", "headers", "kind"),
    [
        ("/nothing-here", {}, PROBLEM),  # curl, a script: */*
        ("/nothing-here", {"accept": "application/json"}, PROBLEM),
        ("/api/nothing-here", HTML, PROBLEM),
        ("/metrics/x", HTML, PROBLEM),
        ("/healthz/x", HTML, PROBLEM),
        ("/readyz/x", HTML, PROBLEM),
        ("/openapi.json/x", HTML, PROBLEM),
        ("/static/deeper/nope.css", HTML, PROBLEM),
        ("/v1/nothing-here", HTML, GATEWAY),  # the gateway's 404, in the caller's format
    ],
)
def test_anything_else_gets_a_problem_document(
    shared_server: Server, path: str, headers: dict[str, str], kind: str
) -> None:
    with httpx.Client(base_url=shared_server.url) as client:
        answer = client.get(path, headers=headers)
    assert answer.status_code == 404
    assert "No such page" not in answer.text
    assert answer.headers["content-type"].split(";")[0] == kind


def test_a_browsers_head_request_gets_the_pages_head(shared_server: Server) -> None:
    with httpx.Client(base_url=shared_server.url) as browser:
        answer = browser.head("/nothing-here", headers=HTML)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.content == b""


def test_a_post_to_no_route_is_not_a_page(shared_server: Server) -> None:
    with httpx.Client(base_url=shared_server.url) as client:
        answer = client.post("/nothing-here", headers=HTML, data={"a": "b"})
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/problem+json")
