"""``GET /api/models`` (issue 14): every live model in any state, filtered and paged by
a keyset cursor, and ``grove get models -o json`` printing the very same items. A real
server on loopback over a registry reconciled from a real git repository (SQLite: the
listing is read from the router's snapshot, the same on every backend)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.api.bodies import ModelSummary
from reconciler.manifests import kinds as manifests
from reconciler.planning import listings
from tests.api.conftest import Server
from tests.conftest import FleetRepo, model_yaml, rule_yaml

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

STATES = ("enabled", "disabled", "retired", "enabled")
CAPABILITIES = ("{reasoning: 0.9, speed: 0.8}", "{reasoning: 0.85, context: 0.7}")


def _fleet() -> dict[str, str | bytes]:
    """Twelve models: every state, two providers, two sets of capabilities; one rule."""
    files: dict[str, str | bytes] = {"rules/think.yaml": rule_yaml("think")}
    for i in range(12):
        ident = f"m{i:02d}"
        extra = (
            {
                "provider": "openai",
                "endpoint": "https://api.openai.com/v1",
                "providerModel": ident,
                "credentials": "{env: OPENAI_API_KEY}",
            }
            if i % 3 == 0
            else {}
        )
        files[f"models/{ident}.yaml"] = model_yaml(
            ident, state=STATES[i % 4], capabilities=CAPABILITIES[i % 2], **extra
        )
    return files


@pytest.fixture
def bare_fleet(fleet: FleetRepo, tmp_path: Path) -> Path:
    fleet.commit("fleet", _fleet())
    bare = tmp_path / "fleet.git"
    fleet.git("clone", "-q", "--bare", str(fleet.root), str(bare))
    return bare


def _ids(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()["items"]]


def _walk(client: httpx.Client, **params: Any) -> list[list[str]]:
    """Every page, following nextCursor to the end."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        body = client.get("/api/models", params={**params, "cursor": cursor}).json()
        pages.append([item["id"] for item in body["items"]])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages


def _expected(keep: Any) -> list[str]:
    return [f"m{i:02d}" for i in range(12) if keep(i)]


@SQLITE
def test_every_state_filters_paging_and_refusals(server: Server) -> None:
    with server.client("viewer") as client:
        everything = client.get("/api/models")
        assert _ids(everything) == _expected(lambda i: True)
        assert everything.json()["nextCursor"] is None
        for item in everything.json()["items"]:  # the fields of a plain read, in its order
            read = client.get(f"/api/models/{item['id']}").json()
            del read["manifest"]
            assert list(item.items()) == list(read.items())
        assert {i["state"] for i in everything.json()["items"]} == set(STATES)

        filters: list[tuple[dict[str, Any], list[str]]] = [
            ({"state": "disabled"}, _expected(lambda i: i % 4 == 1)),
            ({"state": ["retired", "disabled"]}, _expected(lambda i: i % 4 in (1, 2))),
            ({"provider": "openai"}, _expected(lambda i: i % 3 == 0)),
            ({"capability": ["speed", "reasoning"]}, _expected(lambda i: i % 2 == 0)),
            ({"capability": ["speed", "context"]}, []),
            (
                {"state": "enabled", "provider": "mock", "capability": "context"},
                _expected(lambda i: i % 4 == 3 and i % 3 and i % 2),
            ),
        ]
        for params, ids in filters:
            assert _ids(client.get("/api/models", params=params)) == ids, params

        # pages of 5, 5 and 2: nothing twice, nothing missed, the last says so
        assert _walk(client, limit=5) == [
            _expected(lambda i: i < 5),
            _expected(lambda i: 5 <= i < 10),
            ["m10", "m11"],
        ]
        assert _walk(client, limit=6) == [_expected(lambda i: i < 6), _expected(lambda i: i >= 6)]
        enabled = _walk(client, limit=2, state="enabled")
        assert [i for page in enabled for i in page] == _expected(lambda i: i % 4 in (0, 3))
        assert [len(page) for page in enabled] == [2, 2, 2]

        refusals = [
            ({"limit": 0}, "query.limit"),
            ({"limit": listings.MAX_LIMIT + 1}, "query.limit"),
            ({"limit": "ten"}, "query.limit"),
            ({"cursor": "not a cursor"}, "query.cursor"),
            ({"cursor": base64.urlsafe_b64encode(b"xx:m03").decode()}, "query.cursor"),
            ({"cursor": listings.encode_cursor("m03") + "A"}, "query.cursor"),
            ({"state": "gone"}, "query.state.0"),  # the field, and which of its values
            ({"capability": ["speed", "telepathy"]}, "query.capability.1"),
        ]
        for params, field in refusals:
            refused = client.get("/api/models", params=params)
            assert refused.status_code == 422, params
            assert refused.headers["content-type"] == "application/problem+json"
            assert [e["path"] for e in refused.json()["errors"]] == [field], params
        # the neighbours are not shadowed
        found = client.get("/api/models/discover", params={"capability": "speed"})
        assert found.status_code == 200 and len(found.json()) == 3
        assert client.get("/api/models/health").status_code == 200
    with server.client() as anonymous:
        assert anonymous.get("/api/models").status_code == 401


@SQLITE
def test_grove_get_json_is_the_api_items(server: Server) -> None:
    with server.client("viewer") as client:
        for params, options in [
            ({}, []),
            ({"state": ["disabled", "retired"]}, ["--state", "disabled", "--state", "retired"]),
            (
                {"provider": "mock", "capability": "speed"},
                ["--provider", "mock", "--capability", "speed"],
            ),
        ]:
            items: list[Any] = []
            cursor = None
            while True:  # the API's pages, put together
                body = client.get(
                    "/api/models", params={**params, "limit": 4, "cursor": cursor}
                ).json()
                items += body["items"]
                cursor = body["nextCursor"]
                if cursor is None:
                    break
            printed = server.registry.run("get", "models", "-o", "json", *options)
            assert printed.code == 0, printed.err
            assert printed.out == json.dumps(items, indent=2) + "\n"
        detail = server.registry.run("get", "models", "m03", "-o", "json")
        assert json.loads(detail.out) == client.get("/api/models/m03").json()
        rules = server.registry.run("get", "rules", "-o", "json")
        assert rules.out == json.dumps(client.get("/api/rules").json()["items"], indent=2) + "\n"
        rule = server.registry.run("get", "rules", "think", "-o", "json")
        assert json.loads(rule.out) == client.get("/api/rules/think").json()


def test_items_have_the_fields_of_model_summary() -> None:
    """listings builds what ModelSummary would: the list and a plain read agree."""
    model = manifests.parse_document(
        {
            "meta": {"id": "x", "type": "AIModel", "version": "3"},
            "payload": {
                "name": "X",
                "provider": "openai",
                "endpoint": "https://api.openai.com/v1",
                "providerModel": "x-1",
                "credentials": {"env": "OPENAI_API_KEY"},
                "capabilities": {"reasoning": 0.9, "speed": 0.35},
                "state": "retired",
            },
        },
        allow_local_endpoints=False,
    )
    assert isinstance(model, manifests.AIModel)
    summary = ModelSummary.of(model).model_dump(mode="json", by_alias=True)
    assert list(listings.model_item(model).items()) == list(summary.items())
