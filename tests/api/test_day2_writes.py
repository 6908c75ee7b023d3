"""Day-2 writes (issue 14) against a real server and real git: a PATCH after a revert gets a
version never used, a change freeze refuses every write but an admin's forced one, the
brief's flat PATCH body, ``routingDecision`` in routing answers, discover's rounded scores."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import MultiModelRegistry
from reconciler.api import bodies
from reconciler.gitops import authoring
from reconciler.manifests import kinds as manifests
from reconciler.store import registry as queries
from reconciler.store.engine import Database
from tests.api.conftest import Server
from tests.conftest import GroveRunner, Registry

# A test of something no database takes part in runs on SQLite only.
ONE_DATABASE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
NEW_MODEL = {"name": "Frozen", "provider": "mock", "capabilities": ["speed"], "priority": 5}


def revert_head(registry: Registry, bare: Path) -> None:
    """As an operator would: pull the fleet repository, ``git revert`` its head, push."""
    fleet = registry.fleet
    fleet.git("pull", "-q", "--ff-only", str(bare), "main")
    fleet.git("revert", "--no-edit", "HEAD")
    fleet.git("push", "-q", str(bare), "HEAD:main")


def subjects(server: Server, count: int) -> list[str]:
    return [line.split("|", 1)[1] for line in server.log()[:count]]


# ---------------------------------------------------------------- versions never collide


@pytest.mark.parametrize(
    ("version", "used", "expected"),
    [
        ("4", (), "5"),
        ("1", ("1", "2"), "3"),  # v1 -> v2 -> revert to v1
        ("2", ("1", "2", "10", "beta"), "11"),
        ("1", ("1", "7"), "8"),  # 7 quarantined, never applied: still used
        ("1.10", (), "1.11"),
        ("1.10", ("1.11", "1.12"), "1.13"),
        ("beta", (), "beta-2"),
        ("beta", ("beta-2",), "beta-3"),
        ("\u00b2", (), "\u00b2-2"),  # a digit to str.isdigit, not to int
    ],
)
def test_the_automatic_bump_never_picks_a_used_version(
    version: str, used: tuple[str, ...], expected: str
) -> None:
    assert authoring.bump(version, used) == expected


def test_versions_ever_used_are_applied_and_quarantined_ones(
    registry: Registry, bare_fleet: Path, monkeypatch: pytest.MonkeyPatch, grove: GroveRunner
) -> None:
    monkeypatch.setenv("GROVE_REPO", str(bare_fleet))
    assert grove("reconcile").code == 0
    db = Database(registry.url)
    try:
        with db.transaction(write=True) as connection:
            queries.quarantine(connection, manifests.KIND_MODEL, "beta", "9", "a test")
            queries.quarantine(connection, manifests.KIND_MODEL, "gamma", "4", "a test")
        with db.transaction() as connection:
            used = queries.versions_ever_used(connection, manifests.KIND_MODEL, "beta")
            rules = queries.versions_ever_used(connection, manifests.KIND_RULE, "beta")
    finally:
        db.dispose()
    assert (used, rules) == ({"1", "9"}, frozenset())


@pytest.mark.slow
def test_a_patch_after_a_revert_gets_a_version_never_used(server: Server) -> None:
    with server.client("operator") as client:
        first = client.patch("/api/models/beta", json={"priority": 55})
        assert first.json()["model"]["version"] == "2", first.text
        revert_head(server.registry, server.bare)
        assert client.post("/api/reconcile").json()["outcome"] == "applied"
        assert client.get("/api/models/beta").json()["version"] == "1"
        again = client.patch("/api/models/beta", json={"payload": {"priority": 60}})
        assert again.status_code == 200, again.text  # was 409 P002: version 2 used before
        assert (again.json()["model"]["version"], again.json()["applied"]) == ("3", True)
    assert subjects(server, 1) == ["grove: update AIModel beta (version 3)"]


@pytest.mark.slow
def test_the_python_api_bumps_past_a_revert_too(server: Server) -> None:
    with server.client("operator") as client:
        assert client.patch("/api/models/gamma", json={"priority": 15}).status_code == 200
        revert_head(server.registry, server.bare)
        assert client.post("/api/reconcile").json()["outcome"] == "applied"
    fleet = MultiModelRegistry.open(db=server.registry.url, repo=str(server.bare))
    try:
        updated = asyncio.run(fleet.update_model("gamma", {"priority": 12}))
    finally:
        fleet.close()
    assert updated.object is not None
    assert (updated.object.meta.version, updated.applied) == ("3", True)


# ---------------------------------------------------------------- a change freeze


def _every_write(client: httpx.Client, **params: str) -> list[httpx.Response]:
    return [
        client.post("/api/models/register", json=NEW_MODEL, params=params),
        client.patch("/api/models/beta", json={"priority": 56}, params=params),
        client.post("/api/models/gamma/disable", params=params),
        client.post("/api/models/gamma/enable", params=params),
        client.delete("/api/models/gamma", params=params),
    ]


@pytest.mark.slow
def test_a_change_freeze_refuses_every_write_but_an_admins_forced_one(server: Server) -> None:
    before = server.log()
    assert server.registry.run("suspend").code == 0
    with server.client("operator") as operator:
        refused = _every_write(operator)
        assert [r.status_code for r in refused] == [409] * 5, [r.text for r in refused]
        problem = refused[0].json()
        assert problem["code"] == "suspended"
        assert "suspended since 20" in problem["detail"]
        assert "grove resume" in problem["detail"]
        assert "nothing was committed" in problem["detail"]
        assert {r.json()["code"] for r in refused} == {"suspended"}
        forced = _every_write(operator, force="true")
        assert [r.status_code for r in forced] == [403] * 5
    assert server.log() == before
    with server.client("admin") as admin:
        created = admin.post("/api/models/register", json=NEW_MODEL, params={"force": "true"})
        assert created.status_code == 201, created.text
    message = server.registry.fleet.git("--git-dir", str(server.bare), "log", "-1", "--format=%B")
    assert message.startswith("grove: register AIModel frozen (version 1)\n\n")
    assert "Change freeze overridden by admin-token with force (suspended since 20" in message
    assert server.registry.run("resume").code == 0
    with server.client("operator") as operator:
        assert operator.patch("/api/models/frozen", json={"priority": 6}).status_code == 200
    events = [e for e in server.registry.events() if e[1] == "reconcile"]
    assert events == [("reconciler_suspended", "reconcile"), ("reconciler_resumed", "reconcile")]


@pytest.mark.slow
def test_the_python_api_is_frozen_too(
    registry: Registry, bare_fleet: Path, monkeypatch: pytest.MonkeyPatch, grove: GroveRunner
) -> None:
    monkeypatch.setenv("GROVE_REPO", str(bare_fleet))
    assert grove("reconcile").code == 0
    assert grove("suspend").code == 0
    head = registry.fleet.git("--git-dir", str(bare_fleet), "rev-parse", "HEAD")
    fleet = MultiModelRegistry.open(db=registry.url, repo=str(bare_fleet))
    model = {
        "meta": {"id": "sdk-model", "type": "AIModel", "version": "1"},
        "payload": {"name": "SDK", "provider": "mock", "capabilities": {"reasoning": 0.99}},
    }
    try:
        with pytest.raises(authoring.Suspended, match="grove resume"):
            asyncio.run(fleet.update_model("beta", {"priority": 1}))
        with pytest.raises(authoring.Suspended):
            asyncio.run(fleet.register_model(model))
        assert registry.fleet.git("--git-dir", str(bare_fleet), "rev-parse", "HEAD") == head
        forced = asyncio.run(fleet.register_model(model, force=True))
    finally:
        fleet.close()
    assert (forced.change, forced.applied) == ("created", True)
    message = registry.fleet.git("--git-dir", str(bare_fleet), "log", "-1", "--format=%B")
    assert "Change freeze overridden by python with force" in message


# ---------------------------------------------------------------- the flat PATCH body


def test_a_patch_body_declares_every_payload_field_flat() -> None:
    declared = {f.alias for f in bodies.PatchBody.model_fields.values()}
    payload = {f.alias for f in manifests.ModelSpec.model_fields.values()}
    assert declared - {"payload", "labels", "version"} == payload


def test_the_brief_flat_patch_body(server: Server) -> None:
    with server.client("operator") as client:
        flat = client.patch("/api/models/alpha", json={"priority": 95, "fallbacks": None})
        assert flat.status_code == 200, flat.text
        manifest = flat.json()["model"]["manifest"]
        assert (manifest["meta"]["version"], manifest["payload"]["priority"]) == ("2", 95)
        assert "fallbacks" not in manifest["payload"] or manifest["payload"]["fallbacks"] == []
        before = server.log()
        mixed = client.patch("/api/models/alpha", json={"payload": {"priority": 1}, "priority": 2})
        unknown = client.patch("/api/models/alpha", json={"priority": 3, "bogus": 1})
        invalid = client.patch("/api/models/alpha", json={"priority": "high"})
    assert (mixed.status_code, mixed.json()["errors"][0]["path"]) == (422, "priority")
    assert "not both" in mixed.json()["detail"]
    assert (unknown.status_code, unknown.json()["errors"][0]["path"]) == (422, "bogus")
    assert (invalid.status_code, invalid.json()["code"]) == (422, "invalid-manifest")
    assert server.log() == before


# ---------------------------------------------------------------- routing answers


def _schema(openapi: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = openapi["components"]["schemas"][name]
    return schema


@pytest.mark.slow
@ONE_DATABASE  # the answer's shape, not the database
@pytest.mark.parametrize("lean", [True, False])
def test_routing_answers_carry_the_routing_decision(server: Server, lean: bool) -> None:
    server.lean_routes(lean)
    with server.client("operator") as client:
        recommended = client.get("/api/routing/recommend", params={"taskType": "think"}).json()
        executed = client.post("/api/routing/execute", json={"taskType": "think", "prompt": "hi"})
        openapi = client.get("/openapi.json").json()
    decision = {k: v for k, v in recommended.items() if k != "routingDecision"}
    assert recommended["routingDecision"] == decision
    assert decision["modelId"] == "alpha"
    answer = executed.json()
    assert executed.status_code == 200, executed.text
    assert answer["routingDecision"] == answer["decision"]
    assert answer["routingDecision"]["modelId"] == answer["modelId"] == "alpha"
    assert "routingDecision" in _schema(openapi, "ExecuteOut")["required"]
    assert "routingDecision" in _schema(openapi, "RecommendOut")["required"]


@ONE_DATABASE  # the rounding, not the database
def test_discover_rounds_scores_for_display(server: Server) -> None:
    with server.client("viewer") as client:
        found = client.get(
            "/api/models/discover", params=[("capability", "reasoning"), ("capability", "speed")]
        ).json()
    assert (0.9 + 0.8) / 2 == 0.8500000000000001  # what routing computes, and keeps
    assert {m["id"]: m["score"] for m in found} == {"alpha": 0.85, "beta": 0.85, "gamma": 0.85}
