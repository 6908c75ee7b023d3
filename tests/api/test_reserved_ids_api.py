"""Issue 13 through the API: reserved ids and metadata endpoints are refused at
registration (the same validation as git), and the reserved words are every static
path segment the app has after /api/models/ and /api/rules/."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.routing import BaseRoute

from reconciler import api
from reconciler.base import settings
from reconciler.manifests import kinds as manifests
from tests.api.conftest import Server

PREFIXES = ("/api/models/", "/api/rules/", "/models/", "/rules/")
PROBE = {"id": "probe", "name": "Probe", "provider": "openai-compatible", "capabilities": ["speed"]}
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the API, not the store


def _paths(routes: list[BaseRoute]) -> set[str]:
    found: set[str] = set()
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(path, str):
            found.add(path)
        found |= _paths(list(getattr(route, "routes", None) or []))
    return found


def test_the_reserved_words_are_the_static_segments_of_the_routes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROVE_REPO", str(tmp_path))
    monkeypatch.setenv("GROVE_DB_URL", f"sqlite:///{tmp_path}/registry.db")
    app = api.create_app(settings.load())
    paths = _paths(app.routes) | set(app.openapi()["paths"])
    static = {
        path.removeprefix(prefix).split("/", 1)[0]
        for path in paths
        for prefix in PREFIXES
        if path.startswith(prefix) and not path.removeprefix(prefix).startswith("{")
    }
    assert {"register", "discover", "health"} <= static  # the routes were found
    assert static <= manifests.RESERVED_IDS, static - manifests.RESERVED_IDS
    # beyond the API's routes, only the console's page for a new model or rule
    assert manifests.RESERVED_IDS - static <= {"new"}


@pytest.mark.parametrize("shared_server", ["sqlite"], indirect=True)  # refusals change nothing
@pytest.mark.parametrize("word", sorted(manifests.RESERVED_IDS))
def test_registering_a_reserved_id_is_refused_and_commits_nothing(
    shared_server: Server, word: str
) -> None:
    server = shared_server
    before = server.log(), server.registry.content_hash()
    with server.client("operator") as client:
        refused = client.post(
            "/api/models/register",
            json={"id": word, "name": word.title(), "provider": "mock", "capabilities": ["speed"]},
        )
        assert refused.status_code == 422, refused.text
        assert "is reserved" in refused.text
        # the path still means the route, never a model
        edit = client.patch(f"/api/models/{word}", json={"payload": {"priority": 5}})
        assert edit.status_code in (404, 405), edit.text
    assert (server.log(), server.registry.content_hash()) == before


@pytest.fixture
def local_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROVE_ALLOW_LOCAL_ENDPOINTS", "true")


@SQLITE
@pytest.mark.parametrize(
    "endpoint",
    [
        "http://192.0.0.192/v1",
        "http://instance-data/latest",
        "http://INSTANCE-DATA.ec2.internal./latest",
        "http://0xc00000c0/v1",
        "http://[::ffff:c000:c0]/v1",
        "http://[64:ff9b::a9fe:a9fe]/v1",
    ],
)
def test_a_metadata_endpoint_is_refused_at_registration_even_with_local_endpoints(
    local_endpoints: None, server: Server, endpoint: str
) -> None:
    before = server.log()
    with server.client("operator") as client:
        refused = client.post("/api/models/register", json={**PROBE, "endpoint": endpoint})
    assert refused.status_code == 422, refused.text
    assert "cloud metadata service" in refused.text
    assert server.log() == before
