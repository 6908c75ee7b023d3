"""The rules API (issue 14) against a real server and real git: every write is one commit
in the fleet repository, reconciled into the registry with its lifecycle event; a change
that would leave a rule unservable is a 409 that commits nothing; roles, the change
freeze, unknown ids and paging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.api import bodies
from reconciler.manifests import kinds as manifests
from tests.api.conftest import Server
from tests.conftest import FleetRepo, rule_yaml
from tests.reconciling.conftest import small_fleet

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def bare_fleet(fleet: FleetRepo, tmp_path: Path) -> Path:
    """The small fleet (three models, the rule ``think``) and two more rules, to page."""
    fleet.commit(
        "fleet",
        {
            **small_fleet(),
            "rules/ask.yaml": rule_yaml("ask"),
            "rules/write.yaml": rule_yaml("write", requires="[speed]", enabled="false"),
        },
    )
    bare = tmp_path / "fleet.git"
    fleet.git("clone", "-q", "--bare", str(fleet.root), str(bare))
    return bare


def head(server: Server) -> str:
    return server.registry.fleet.git("--git-dir", str(server.bare), "rev-parse", "HEAD")


def rule_events(server: Server, ident: str) -> list[str]:
    return [kind for kind, obj in server.registry.events() if obj == ident]


def test_rule_bodies_declare_every_payload_field_flat() -> None:
    payload = {f.alias for f in manifests.RuleSpec.model_fields.values()}
    patch = {f.alias for f in bodies.RulePatchBody.model_fields.values()}
    create = {f.alias for f in bodies.RuleBody.model_fields.values()}
    assert patch - {"payload", "labels", "version"} == payload
    assert create - {"meta", "payload", "id", "labels", "version"} == payload


# ---------------------------------------------------------------- writes are commits


@pytest.mark.slow
def test_create_patch_disable_and_delete_a_rule_each_one_commit(server: Server) -> None:
    commits = len(server.log())
    with server.client("operator") as client:
        created = client.post(
            "/api/rules", json={"taskType": "summarize", "requires": ["speed"], "minScore": 0.5}
        )
        assert created.status_code == 201, created.text
        answer = created.json()
        assert (answer["change"], answer["applied"]) == ("created", True)
        assert answer["rule"]["id"] == answer["rule"]["taskType"] == "summarize"
        assert answer["revision"] == head(server)
        assert len(server.log()) == commits + 1
        written = server.registry.fleet.git(
            "--git-dir", str(server.bare), "show", "HEAD:manifests/rules/summarize.yaml"
        )
        assert written.index("taskType") < written.index("requires") < written.index("minScore")
        live = server.registry.live()["RoutingRule/summarize"]
        assert (live["version"], live["payload"]["minScore"]) == ("1", 0.5)
        routed = client.get("/api/routing/recommend", params={"taskType": "summarize"})
        assert (routed.status_code, routed.json()["ruleId"]) == (200, "summarize")

        patched = client.patch("/api/rules/summarize", json={"minScore": 0.6})
        assert patched.status_code == 200, patched.text
        assert (patched.json()["change"], patched.json()["rule"]["version"]) == ("updated", "2")
        assert len(server.log()) == commits + 2
        assert server.registry.live()["RoutingRule/summarize"]["payload"]["minScore"] == 0.6

        disabled = client.post("/api/rules/summarize/disable").json()
        assert (disabled["change"], disabled["rule"]["enabled"]) == ("disabled", False)
        assert disabled["rule"]["version"] == "2"  # state is not content: no bump
        assert server.registry.live()["RoutingRule/summarize"]["state"] == "disabled"
        again = client.post("/api/rules/summarize/disable").json()
        assert (again["change"], again["revision"]) == ("unchanged", disabled["revision"])
        assert len(server.log()) == commits + 3

        removed = client.delete("/api/rules/summarize")
        assert removed.status_code == 200, removed.text
        assert (removed.json()["change"], removed.json()["rule"]) == ("removed", None)
        assert len(server.log()) == commits + 4
        assert "RoutingRule/summarize" not in server.registry.live()
        assert client.get("/api/rules/summarize").status_code == 404
    assert [line.split("|", 1)[1] for line in server.log()[:4]] == [
        "grove: remove RoutingRule summarize",
        "grove: disable RoutingRule summarize",
        "grove: update RoutingRule summarize (version 2)",
        "grove: register RoutingRule summarize (version 1)",
    ]
    assert {line.split("|", 1)[0] for line in server.log()[:4]} == {"operator-token"}
    assert rule_events(server, "summarize") == [
        "rule_created",
        "rule_updated",
        "rule_updated",
        "rule_removed",
    ]


@SQLITE
def test_create_takes_a_whole_document_and_names_bad_fields(server: Server) -> None:
    document = {
        "meta": {"id": "long-reads", "type": "RoutingRule", "version": "3", "labels": {"t": "a"}},
        "payload": {"taskType": "long-read", "requires": ["reasoning"], "strategy": "cost"},
    }
    with server.client("operator") as client:
        created = client.post("/api/rules", json=document)
        assert created.status_code == 201, created.text
        rule = created.json()["rule"]
        assert (rule["id"], rule["version"], rule["strategy"]) == ("long-reads", "3", "cost")
        assert rule["manifest"]["meta"]["labels"] == {"t": "a"}
        before = head(server)
        taken = client.post("/api/rules", json=document)
        both = client.post("/api/rules", json={**document, "minScore": 0.2})
        flat_bad = client.post(
            "/api/rules", json={"taskType": "x", "requires": ["telepathy"], "minScore": 2}
        )
        doc_bad = client.post(
            "/api/rules", json={"meta": {"id": "Bad Id", "version": "1"}, "payload": {}}
        )
        unknown = client.post("/api/rules", json={"taskType": "x", "requires": [], "bogus": 1})
    assert (taken.status_code, taken.json()["code"]) == (409, "conflict")
    assert (both.status_code, both.json()["errors"][0]["path"]) == (422, "minScore")
    assert (flat_bad.status_code, flat_bad.json()["code"]) == (422, "invalid-rule")
    assert {e["path"] for e in flat_bad.json()["errors"]} == {"requires.0", "minScore"}
    assert {e["path"] for e in doc_bad.json()["errors"]} >= {
        "meta.id",
        "payload.taskType",
        "payload.requires",
    }
    assert (unknown.status_code, unknown.json()["errors"][0]["path"]) == (422, "bogus")
    assert head(server) == before


# ---------------------------------------------------------------- refusals


@SQLITE
def test_a_change_that_leaves_a_rule_unservable_is_a_409_and_commits_nothing(
    server: Server,
) -> None:
    before = head(server)
    with server.client("operator") as operator, server.client("admin") as admin:
        refused = [
            operator.patch("/api/rules/think", json={"requires": ["creativity"]}),
            operator.patch("/api/rules/think", json={"payload": {"chain": ["nobody"]}}),
            operator.patch("/api/rules/think", json={"minScore": 0.95}),
            operator.post("/api/rules", json={"taskType": "poem", "requires": ["creativity"]}),
            operator.post("/api/rules", json={"taskType": "big", "requires": ["context"]}),
            # state is no escape: the disabled rule "write" enabled, once no model serves it
            admin.patch("/api/rules/write", json={"requires": ["context"]}),
            operator.post("/api/rules/write/enable"),
            # nor is force: the rule could not route a single call
            admin.patch("/api/rules/think", params={"force": "true"}, json={"minScore": 0.95}),
        ]
    answers = [(r.status_code, r.json().get("code")) for r in refused]
    assert answers[:5] == [(409, "unservable")] * 5, [r.text for r in refused]
    assert answers[5][0] == 200  # a disabled rule need not be servable
    assert answers[6:] == [(409, "unservable")] * 2
    problem = refused[0].json()
    assert "rule think (taskType think) cannot be served" in problem["detail"]
    assert "nothing was committed" in problem["detail"]
    assert [e["message"][:4] for e in problem["errors"]] == ["R006"]
    assert {e["message"][:4] for e in refused[1].json()["errors"]} == {"R003", "R006"}
    assert head(server) != before  # the one change allowed: rule "write" (disabled)
    assert [line.split("|", 1)[1] for line in server.log()[:1]] == [
        "grove: update RoutingRule write (version 2)"
    ]
    assert server.registry.live()["RoutingRule/think"]["version"] == "1"


@pytest.mark.slow
@SQLITE
def test_a_model_change_that_leaves_rules_unservable_is_refused_by_p004(server: Server) -> None:
    """The other side: the safety check P004 guards every enabled rule a model serves."""
    with server.client("operator") as client:
        for ident in ("beta", "gamma"):
            assert client.post(f"/api/models/{ident}/disable").status_code == 200
        before = head(server)
        refused = [
            client.post("/api/models/alpha/disable"),
            client.patch("/api/models/alpha", json={"capabilities": {"reasoning": None}}),
        ]
    assert [(r.status_code, r.json()["code"]) for r in refused] == [(409, "refused")] * 2
    for answer in refused:
        violations = answer.json()["violations"]
        assert {v["code"] for v in violations} == {"P004"}
        assert {v["objects"][0] for v in violations} == {"RoutingRule/ask", "RoutingRule/think"}
    assert head(server) == before


@SQLITE
def test_unknown_ids_are_404_and_a_viewer_only_reads(server: Server) -> None:
    before = head(server)
    with server.client("operator") as client:
        missing = [
            client.get("/api/rules/nope"),
            client.patch("/api/rules/nope", json={"minScore": 0.1}),
            client.delete("/api/rules/nope"),
            client.post("/api/rules/nope/enable"),
            client.post("/api/rules/alpha/disable"),  # a model's id
        ]
    assert [(r.status_code, r.json()["code"]) for r in missing] == [(404, "not-found")] * 5
    with server.client("viewer") as viewer:
        assert viewer.get("/api/rules/think").json()["taskType"] == "think"
        writes = _every_write(viewer)
        forced = _every_write(viewer, force="true")
    assert [r.status_code for r in writes + forced] == [403] * 10
    with server.client("operator") as operator:
        assert [r.status_code for r in _every_write(operator, force="true")] == [403] * 5
    assert head(server) == before


def _every_write(client: httpx.Client, **params: str) -> list[httpx.Response]:
    return [
        client.post("/api/rules", json={"taskType": "t", "requires": ["speed"]}, params=params),
        client.patch("/api/rules/think", json={"minScore": 0.4}, params=params),
        client.post("/api/rules/think/disable", params=params),
        client.post("/api/rules/write/enable", params=params),
        client.delete("/api/rules/ask", params=params),
    ]


@pytest.mark.slow
@SQLITE
def test_a_change_freeze_refuses_every_rule_write_but_an_admins_forced_one(
    server: Server,
) -> None:
    before = head(server)
    assert server.registry.run("suspend").code == 0
    with server.client("operator") as operator:
        refused = _every_write(operator)
    assert [(r.status_code, r.json()["code"]) for r in refused] == [(409, "suspended")] * 5
    assert head(server) == before
    with server.client("admin") as admin:
        forced = admin.delete("/api/rules/ask", params={"force": "true"})
    assert (forced.status_code, forced.json()["change"]) == (200, "removed")
    message = server.registry.fleet.git("--git-dir", str(server.bare), "log", "-1", "--format=%B")
    assert message.startswith("grove: remove RoutingRule ask\n\nChange freeze overridden by")


# ---------------------------------------------------------------- reads


@SQLITE
def test_rules_are_listed_by_id_a_page_at_a_time(server: Server) -> None:
    with server.client("viewer") as client:
        everything = client.get("/api/rules").json()
        first = client.get("/api/rules", params={"limit": 2}).json()
        second = client.get("/api/rules", params={"limit": 2, "cursor": first["nextCursor"]})
        one = client.get("/api/rules/write").json()
        bad: dict[str, Any] = {
            "zero": client.get("/api/rules", params={"limit": 0}),
            "over": client.get("/api/rules", params={"limit": 1001}),
            "cursor": client.get("/api/rules", params={"cursor": "not-a-cursor"}),
        }
    assert [r["id"] for r in everything["items"]] == ["ask", "think", "write"]
    assert everything["nextCursor"] is None
    assert [r["id"] for r in first["items"]] == ["ask", "think"]
    assert isinstance(first["nextCursor"], str)
    assert (second.json()["items"], second.json()["nextCursor"]) == ([one], None)
    assert (one["enabled"], one["requires"], one["manifest"]["payload"]["enabled"]) == (
        False,
        ["speed"],
        False,
    )
    assert {name: r.status_code for name, r in bad.items()} == dict.fromkeys(bad, 422)
    assert bad["cursor"].json()["errors"][0]["path"] == "query.cursor"
