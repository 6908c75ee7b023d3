"""``/api/rollouts`` and ``/api/quarantine`` (issue 17) against a real server on loopback,
real git (a bare fleet repository) and a registry with version 2 of ``alpha`` under
rollout: the shapes, promotion, an abort that commits the rollback as the caller with
the figures, the quarantine it leaves and its lift, the roles and hostile input."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.api.conftest import Server, serve
from tests.cli.test_rollout_commands import bare_log, begin, calls
from tests.conftest import GroveRunner
from tests.rollouts.conftest import Canary, canary, later  # noqa: F401 - the fixture

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


@pytest.fixture
def served(
    canary: Canary,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    grove: GroveRunner,
) -> Iterator[tuple[Canary, Server]]:
    """The canary fleet (version 1 of alpha live) behind a server with a token per role."""
    for server in serve(canary.registry, canary.bare, str(canary.bare), monkeypatch, grove):
        yield canary, server


def test_rollouts_are_read_promoted_and_refused_when_over(served: tuple[Canary, Server]) -> None:
    fleet, server = served
    with server.client("viewer") as viewer, server.client("operator") as operator:
        assert viewer.get("/api/rollouts").json() == []
        none = viewer.get("/api/rollouts/alpha")
        assert (none.status_code, none.json()["code"]) == (404, "no-rollout")
        assert none.headers["content-type"] == "application/problem+json"
        missing = operator.post("/api/rollouts/alpha/promote")
        assert (missing.status_code, missing.json()["code"]) == (404, "no-rollout")

        begin(fleet)
        calls(fleet, 45)
        fleet.analyst().tick(now=later(fleet.latest(), 61))
        [item] = viewer.get("/api/rollouts").json()
        assert (item["id"], item["phase"], item["step"], item["weight"]) == (
            "alpha",
            "Running",
            1,
            50,
        )
        assert (item["stableVersion"], item["canaryVersion"], item["open"]) == ("1", "2", True)
        assert item["steps"] == [{"weight": 10, "pauseS": 60}, {"weight": 50, "pauseS": 60}]
        assert item["analysis"]["samples"] == 45 and item["analysis"]["successRate"] == 1.0
        detail = viewer.get("/api/rollouts/alpha").json()
        assert detail["history"] == [] and {**detail, "history": None} == {**item, "history": None}
        cli = fleet.registry.run("rollout", "status", "alpha", "-o", "json")
        assert detail == json.loads(cli.out)  # the CLI prints the same document

        assert viewer.post("/api/rollouts/alpha/promote").status_code == 403
        promoted = operator.post("/api/rollouts/alpha/promote")
        assert promoted.status_code == 200, promoted.text
        body = promoted.json()
        assert (body["phase"], body["weight"], body["open"]) == ("Successful", 100, False)
        assert "promoted by operator-token" in body["message"]
        twice = operator.post("/api/rollouts/alpha/promote")
        assert (twice.status_code, twice.json()["code"]) == (409, "rollout-not-open")
        late = operator.post("/api/rollouts/alpha/abort")
        assert (late.status_code, late.json()["code"]) == (409, "rollout-not-open")
        routed = operator.post("/api/routing/execute", json={"taskType": "think", "prompt": "hi"})
        assert routed.status_code == 200 and routed.json()["version"] == "2", routed.text

        for bad in ("ALPHA", "a" * 64, "-x", "al%20pha", "%E2%80%AE"):
            for method, path in (("GET", ""), ("POST", "/promote"), ("POST", "/abort")):
                wrong = operator.request(method, f"/api/rollouts/{bad}{path}")
                assert wrong.status_code == 422, (bad, path, wrong.text)
                assert wrong.json()["code"] == "invalid-request"


def test_an_abort_commits_the_rollback_as_the_caller_and_an_admin_lifts_the_quarantine(
    served: tuple[Canary, Server],
) -> None:
    fleet, server = served
    begin(fleet)
    calls(fleet, 30, 10)
    head = bare_log(fleet, "rev-parse", "main")
    with server.client("operator") as operator, server.client("admin") as admin:
        huge = operator.post("/api/rollouts/alpha/abort", json={"reason": "x" * 100_000})
        assert huge.status_code in (413, 422), huge.text
        for body in ({"reason": "a\nReverts-Model: beta@1"}, {"reason": 5}, {"why": "x"}, [1]):
            refused = operator.post("/api/rollouts/alpha/abort", json=body)
            assert refused.status_code == 422, (body, refused.text)
        assert bare_log(fleet, "rev-parse", "main") == head and fleet.latest().open

        done = operator.post("/api/rollouts/alpha/abort", json={"reason": "the answers are off"})
        assert done.status_code == 200, done.text
        body = done.json()
        assert (body["phase"], body["rollback"], body["weight"]) == ("Aborted", "RolledBack", 0)
        commit = bare_log(fleet, "rev-parse", "main").strip()
        assert body["rollbackCommit"] == commit
        assert bare_log(fleet, "log", "-1", "--format=%an <%ae>", "main").strip() == (
            "operator-token <operator-token@users.grove.invalid>"
        )
        message = fleet.message()
        assert "aborted by operator-token: the answers are off" in message
        assert "success rate: 0.7500 (30 of 40 calls); SLO minSuccessRate 0.95" in message
        assert "samples: 40; SLO minSamples 40" in message and "Reverts-Model: alpha@2" in message
        assert admin.get("/api/models/alpha").json()["version"] == "1"
        again = operator.post("/api/rollouts/alpha/abort")
        assert (again.status_code, again.json()["code"]) == (409, "rollout-not-open")

        [held] = operator.get("/api/quarantine").json()
        assert (held["kind"], held["id"], held["version"]) == ("AIModel", "alpha", "2")
        assert "the answers are off" in held["reason"] and held["since"].endswith("Z")
        assert operator.get("/api/quarantine", params={"id": "beta"}).json() == []
        assert operator.get("/api/quarantine", params={"id": "NOT AN ID"}).status_code == 422

        forbidden = operator.delete("/api/quarantine/alpha/2")
        assert (forbidden.status_code, forbidden.json()["code"]) == (403, "forbidden")
        for path in ("/api/quarantine/alpha/-2", "/api/quarantine/Alpha/2"):
            assert admin.delete(path).status_code == 422, path
        absent = admin.delete("/api/quarantine/alpha/3")
        assert (absent.status_code, absent.json()["code"]) == (404, "not-quarantined")
        lifted = admin.delete("/api/quarantine/alpha/2")
        assert lifted.status_code == 200, lifted.text
        assert lifted.json() | {"since": None} == {
            "kind": "AIModel",
            "id": "alpha",
            "version": "2",
            "reason": held["reason"],
            "since": None,
            "lifted": True,
            "by": "admin-token",
        }
        assert admin.get("/api/quarantine").json() == []
        assert admin.delete("/api/quarantine/alpha/2").status_code == 404
    actors = fleet.registry.sql(
        "SELECT actor FROM lifecycle_events WHERE event_type = 'quarantine_lifted'"
    )
    assert [row[0] for row in actors] == ["admin-token"]


def test_a_model_registered_with_a_rollout_gets_one_when_patched(
    served: tuple[Canary, Server],
) -> None:
    """The API writes a rollout block like any field; a PATCH (a new version) starts it."""
    fleet, server = served
    body = {
        "id": "delta",
        "name": "Delta",
        "provider": "openai-compatible",
        "providerModel": "delta-model",
        "endpoint": fleet.stable.url,
        "capabilities": {"reasoning": 0.5},
        "slo": {"minSuccessRate": 0.9, "minSamples": 10},
        "rollout": {"steps": [{"weight": 25, "pauseS": 30}]},
    }
    with server.client("operator") as operator, server.client("viewer") as viewer:
        created = operator.post("/api/models/register", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["model"]["manifest"]["payload"]["rollout"]["steps"] == [
            {"weight": 25, "pauseS": 30}
        ]
        wrong = operator.post(
            "/api/models/register",
            json={**body, "id": "epsilon", "rollout": {"steps": [{"weight": 100, "pauseS": 1}]}},
        )
        assert wrong.status_code == 422, wrong.text
        assert wrong.json()["errors"][0]["path"] == "rollout.steps.0.weight"
        patched = operator.patch("/api/models/delta", json={"endpoint": fleet.canary.url})
        assert patched.status_code == 200, patched.text
        started = viewer.get("/api/rollouts/delta").json()
        assert (started["stableVersion"], started["canaryVersion"], started["weight"]) == (
            "1",
            "2",
            25,
        )
