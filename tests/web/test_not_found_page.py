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


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/nothing-here", {}),  # curl, a script: */*
        ("/nothing-here", {"accept": "application/json"}),
        ("/api/nothing-here", HTML),
        ("/v1/nothing-here", HTML),
        ("/metrics/x", HTML),
    ],
)
def test_anything_else_gets_a_problem_document(
    shared_server: Server, path: str, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=shared_server.url) as client:
        answer = client.get(path, headers=headers)
    assert answer.status_code == 404
    assert "No such page" not in answer.text
    assert answer.headers["content-type"].split(";")[0] in (
        "application/problem+json",
        "application/json",
    )


def test_a_post_to_no_route_is_not_a_page(shared_server: Server) -> None:
    with httpx.Client(base_url=shared_server.url) as client:
        answer = client.post("/nothing-here", headers=HTML, data={"a": "b"})
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/problem+json")
