"""Every change kind, driven through the real CLI against a real git repository,
on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from tests.conftest import model_yaml, rule_yaml
from tests.reconciling.conftest import Registry, small_fleet

# the same flows on PostgreSQL: in CI, not in the inner loop (`pytest -m "not slow"`)
pytestmark = pytest.mark.slow_on_pg


def _start(registry: Registry) -> str:
    revision = registry.fleet.commit("fleet", small_fleet())
    result = registry.run("reconcile")
    assert result.code == 0, result.err
    return revision


def test_create_makes_objects_live_with_events_and_history(registry: Registry) -> None:
    revision = _start(registry)
    live = registry.live()
    assert sorted(live) == [
        "AIModel/alpha",
        "AIModel/beta",
        "AIModel/gamma",
        "RoutingRule/think",
    ]
    assert live["AIModel/alpha"]["payload"]["fallbacks"] == ["beta"]
    assert sorted(registry.events()) == [
        ("model_registered", "alpha"),
        ("model_registered", "beta"),
        ("model_registered", "gamma"),
        ("rule_created", "think"),
    ]
    assert registry.revisions() == [revision]
    versions = registry.sql("SELECT object_id, version FROM object_versions ORDER BY object_id")
    assert [tuple(v) for v in versions] == [
        ("alpha", "1"),
        ("beta", "1"),
        ("gamma", "1"),
        ("think", "1"),
    ]


def test_version_bump_keeps_the_old_version_in_history(registry: Registry) -> None:
    _start(registry)
    registry.fleet.commit(
        "alpha v2",
        {
            "models/alpha.yaml": model_yaml("alpha", priority="95", fallbacks="[beta]").replace(
                'version: "1"', 'version: "2"'
            )
        },
    )
    planned = registry.run("plan")
    assert planned.code == 2
    assert "~ AIModel/alpha" in planned.out
    assert "version 1 -> 2" in planned.out
    assert "payload.priority: 90 -> 95" in planned.out
    assert registry.run("reconcile").code == 0
    assert registry.live()["AIModel/alpha"]["version"] == "2"
    versions = registry.sql(
        "SELECT version FROM object_versions WHERE object_id = 'alpha' ORDER BY id"
    )
    assert [v[0] for v in versions] == ["1", "2"]
    assert ("model_versioned", "alpha") in registry.events()


def test_rule_update(registry: Registry) -> None:
    _start(registry)
    registry.fleet.commit(
        "think v2",
        {"rules/think.yaml": rule_yaml("think", minScore="0.6").replace('"1"', '"2"')},
    )
    result = registry.run("plan", "--json")
    assert result.code == 2
    plan = json.loads(result.out)
    assert [
        (c["kind"], c["objectId"], c["versionFrom"], c["versionTo"]) for c in plan["changes"]
    ] == [("update", "think", "1", "2")]
    assert {"path": "payload.minScore", "before": 0.5, "after": 0.6} in plan["changes"][0]["fields"]
    assert registry.run("apply").code == 0
    assert ("rule_updated", "think") in registry.events()


def test_disable_enable_and_retire_need_no_version_bump(registry: Registry) -> None:
    _start(registry)
    for state, event in [
        ("disabled", "model_disabled"),
        ("enabled", "model_enabled"),
        ("retired", "model_retired"),
    ]:
        registry.fleet.commit(
            state, {"models/gamma.yaml": model_yaml("gamma", priority="10", state=state)}
        )
        planned = registry.run("plan")
        assert planned.code == 2, planned.out + planned.err
        assert "Safety: ok." in planned.out
        assert registry.run("reconcile").code == 0
        assert registry.live()["AIModel/gamma"]["state"] == state
        assert registry.events()[-1] == (event, "gamma")
    versions = registry.sql("SELECT count(*) FROM object_versions WHERE object_id = 'gamma'")
    assert versions[0][0] == 1


def test_rule_disable_and_enable(registry: Registry) -> None:
    _start(registry)
    registry.fleet.commit(
        "off", {"rules/think.yaml": rule_yaml("think", minScore="0.5", enabled="false")}
    )
    plan = json.loads(registry.run("plan", "--json").out)
    assert [c["kind"] for c in plan["changes"]] == ["disable"]
    assert registry.run("reconcile").code == 0
    assert registry.live()["RoutingRule/think"]["state"] == "disabled"


def test_retire_then_remove(registry: Registry) -> None:
    _start(registry)
    registry.fleet.commit(
        "retire", {"models/gamma.yaml": model_yaml("gamma", priority="10", state="retired")}
    )
    assert registry.run("reconcile").code == 0
    registry.fleet.delete("models/gamma.yaml")
    registry.fleet.commit("remove gamma")
    planned = registry.run("plan")
    assert planned.code == 2
    assert "- AIModel/gamma" in planned.out
    assert registry.run("reconcile").code == 0
    assert "AIModel/gamma" not in registry.live()
    assert registry.events()[-1] == ("model_removed", "gamma")


def test_a_rule_can_be_removed_directly(registry: Registry) -> None:
    _start(registry)
    registry.fleet.delete("rules/think.yaml")
    registry.fleet.commit("drop rule")
    assert registry.run("reconcile").code == 0
    assert "RoutingRule/think" not in registry.live()
    assert registry.events()[-1] == ("rule_removed", "think")


def test_the_same_revision_twice_changes_nothing(registry: Registry) -> None:
    _start(registry)
    before = registry.content_hash()
    events = registry.events()
    second = registry.run("reconcile")
    assert second.code == 0
    assert "In sync" in second.out
    applied = registry.run("apply")
    assert applied.code == 0
    assert registry.content_hash() == before
    assert registry.events() == events
    assert len(registry.revisions()) == 1


def test_a_commit_outside_the_manifests_is_recorded_without_changes(registry: Registry) -> None:
    first = _start(registry)
    (registry.fleet.root / "README.md").write_text("docs\n")
    second = registry.fleet.commit("docs only")
    result = registry.run("reconcile")
    assert result.code == 0
    assert registry.revisions() == [first, second]
    serials = registry.sql("SELECT state_serial FROM revisions ORDER BY id")
    assert [s[0] for s in serials] == [1, 1]


def test_status_reports_sync_health_and_revisions(registry: Registry) -> None:
    revision = _start(registry)
    status = json.loads(registry.run("status", "--json").out)
    assert status["sync"] == "Synced"
    assert status["health"] == "Healthy"
    assert status["lastAppliedRevision"] == revision
    assert status["lastAttemptedRevision"] == revision
    assert status["stateSerial"] == 1
    assert status["objects"] == 4
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    registry.fleet.commit("more", {"models/delta.yaml": model_yaml("delta")})
    status = json.loads(registry.run("status", "--json").out)
    assert status["sync"] == "OutOfSync"
    assert status["pendingChanges"] == 1
    assert status["health"] == "Progressing"
    text = registry.run("status").out
    assert "sync:     OutOfSync" in text
