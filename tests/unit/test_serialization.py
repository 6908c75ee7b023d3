"""The JSON of every serialized type: exact output (keys, their order, values) and round trips.

`reconciler.base.serial` writes most of them from declarations on the dataclasses;
a few stay hand-written on an answer's hot path (routing decisions, attempts, listing
pages). Either way the output is what API answers, ``grove ... -o json``, saved plan
files and the snapshot cache have always carried, so each golden below compares the
key order too (``json.dumps`` of both), not only equality.
"""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest

from reconciler.base import diagnostics, serial
from reconciler.gitops import authoring, reconciling
from reconciler.planning import listings, status
from reconciler.planning.plans import Change, ChangeKind, FieldDiff, Plan, Violation
from reconciler.providers.base import FailureKind
from reconciler.routing import analysis, ranking, snapshots
from reconciler.routing import engine as routing
from reconciler.store import integrity
from tests.unit import fleet

A, B, C = "a" * 40, "b" * 40, "c" * 40


def same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got == expected
    assert json.dumps(got) == json.dumps(expected), "same content, keys in another order"


# ---------------------------------------------------------------- objects


def field_diff() -> FieldDiff:
    return FieldDiff("payload.priority", 1, 5)


def version_change() -> Change:
    return Change(
        kind=ChangeKind.VERSION,
        object_kind="AIModel",
        object_id="a",
        version_from="1",
        version_to="2",
        state_from="enabled",
        state_to="enabled",
        fields=(field_diff(),),
        document={"meta": {"id": "a", "version": "2"}, "payload": {"priority": 5}},
        source_path="models/a.yaml",
        source_blob="f" * 40,
        corrects_drift=True,
    )


def remove_change() -> Change:
    return Change(ChangeKind.REMOVE, "RoutingRule", "r", "3", None, "enabled", None)


def violation() -> Violation:
    return Violation("P001", "mass-removal", "removes 1 of 1 rules", ("RoutingRule/r",), "split it")


def plan() -> Plan:
    return Plan(B, A, 3, (version_change(), remove_change()), (violation(),), tree=C)


def condition() -> status.Condition:
    return status.Condition(
        "Ready", status.ConditionStatus.TRUE, "Applied", "applied bbbb", "2026-01-01T00:00:00Z"
    )


def preview() -> authoring.Preview:
    return authoring.Preview("rollback: AIModel/a to 1", "diff --git a/a.yaml", plan())


def rolled_back() -> authoring.Rollback:
    result = authoring.WriteResult(
        C, None, authoring.WriteChange.ROLLED_BACK, True, "rolled back", preview()
    )
    return authoring.Rollback(
        "AIModel",
        "a",
        authoring.RollbackChange.ROLLED_BACK,
        "2",
        "1",
        authoring.RollbackMethod.REVERT,
        A,
        "undone",
        result,
        preview(),
    )


def nothing_to_roll_back() -> authoring.Rollback:
    return authoring.Rollback(
        "AIModel",
        "a",
        authoring.RollbackChange.NOTHING,
        "2",
        "1",
        None,
        None,
        "live since",
        live_since=A,
        reverted_in=B,
    )


def snapshot() -> snapshots.Snapshot:
    model, rule = fleet.parse(fleet.model("a")), fleet.parse(fleet.rule("r"))
    return snapshots.Snapshot(
        7, B, MappingProxyType({"a": model}), MappingProxyType({"r": rule}), 12.5
    )


def candidates() -> tuple[ranking.CandidateReport, ...]:
    return (
        ranking.CandidateReport("a", True, 1, 0.123456789, "primary"),
        ranking.CandidateReport("b", False, None, None, "disabled"),
    )


# ---------------------------------------------------------------- goldens

CHANGE_JSON = {
    "kind": "version",
    "objectKind": "AIModel",
    "objectId": "a",
    "versionFrom": "1",
    "versionTo": "2",
    "stateFrom": "enabled",
    "stateTo": "enabled",
    "fields": [{"path": "payload.priority", "before": 1, "after": 5}],
    "document": {"meta": {"id": "a", "version": "2"}, "payload": {"priority": 5}},
    "sourcePath": "models/a.yaml",
    "sourceBlob": "f" * 40,
    "correctsDrift": True,
}
REMOVE_JSON = {
    "kind": "remove",
    "objectKind": "RoutingRule",
    "objectId": "r",
    "versionFrom": "3",
    "versionTo": None,
    "stateFrom": "enabled",
    "stateTo": None,
    "fields": [],
    "document": None,
    "sourcePath": "",
    "sourceBlob": "",
    "correctsDrift": False,
}
VIOLATION_JSON = {
    "code": "P001",
    "name": "mass-removal",
    "message": "removes 1 of 1 rules",
    "objects": ["RoutingRule/r"],
    "wayOut": "split it",
}
PLAN_JSON = {
    "formatVersion": 1,
    "revision": B,
    "baseRevision": A,
    "stateSerial": 3,
    "tree": C,
    "counts": {"version": 1, "remove": 1},
    "changes": [CHANGE_JSON, REMOVE_JSON],
    "refused": True,
    "violations": [VIOLATION_JSON],
}
CONDITION_JSON = {
    "type": "Ready",
    "status": "True",
    "reason": "Applied",
    "message": "applied bbbb",
    "lastTransitionTime": "2026-01-01T00:00:00Z",
}


def test_field_diff() -> None:
    same(serial.dump(field_diff()), {"path": "payload.priority", "before": 1, "after": 5})


def test_changes() -> None:
    same(version_change().to_json(), CHANGE_JSON)
    same(remove_change().to_json(), REMOVE_JSON)


def test_violation() -> None:
    same(violation().to_json(), VIOLATION_JSON)


def test_plan_and_its_saved_file() -> None:
    same(plan().to_json(), PLAN_JSON)
    assert plan().dumps() == json.dumps(PLAN_JSON, indent=2) + "\n"  # grove plan --out


def test_an_empty_plan() -> None:
    same(
        Plan(B, None, 0, ()).to_json(),
        {
            "formatVersion": 1,
            "revision": B,
            "baseRevision": None,
            "stateSerial": 0,
            "tree": None,
            "counts": {},
            "changes": [],
            "refused": False,
            "violations": [],
        },
    )


def test_condition_and_status() -> None:
    same(condition().to_json(), CONDITION_JSON)
    report = status.Status(
        status.Sync.OUT_OF_SYNC,
        status.Health.DEGRADED,
        (condition(),),
        B,
        A,
        None,
        4,
        12,
        2,
        ("AIModel/e",),
        last_error="boom",
    )
    same(
        report.to_json(),
        {
            "sync": "OutOfSync",
            "health": "Degraded",
            "conditions": [CONDITION_JSON],
            "desiredRevision": B,
            "lastAppliedRevision": A,
            "lastAttemptedRevision": None,
            "stateSerial": 4,
            "objects": 12,
            "pendingChanges": 2,
            "drifted": ["AIModel/e"],
            "suspended": False,
            "lastError": "boom",
            "rollouts": [],
        },
    )


def test_rollbacks() -> None:
    same(
        rolled_back().to_json(),
        {
            "kind": "AIModel",
            "id": "a",
            "change": "rolled-back",
            "fromVersion": "2",
            "toVersion": "1",
            "method": "revert",
            "undoes": A,
            "detail": "undone",
            "revision": C,
            "applied": True,
            "quarantined": ["2"],
            "refused": True,
            "message": "rollback: AIModel/a to 1",
            "diff": "diff --git a/a.yaml",
            "plan": PLAN_JSON,
            "liveSince": None,
            "revertedIn": None,
        },
    )
    same(
        nothing_to_roll_back().to_json(),
        {
            "kind": "AIModel",
            "id": "a",
            "change": "nothing",
            "fromVersion": "2",
            "toVersion": "1",
            "method": None,
            "undoes": None,
            "detail": "live since",
            "revision": None,
            "applied": False,
            "quarantined": [],
            "refused": False,
            "message": None,
            "diff": None,
            "plan": None,
            "liveSince": A,
            "revertedIn": B,
        },
    )


def test_model_metrics() -> None:
    metrics = analysis.ModelMetrics(
        "a", 600, 3, 2, 1.26, 2.34, 3.45, 1 / 3, {"timeout": 1}, [{"t": "x", "requests": 3}]
    )
    same(
        metrics.to_json(),
        {
            "modelId": "a",
            "window": "600s",
            "requests": 3,
            "successRate": 0.666667,
            "latency": {"p50": 1.3, "p95": 2.3, "p99": 3.5},
            "costUsd": 0.33333333,
            "errors": {"timeout": 1},
            "series": [{"t": "x", "requests": 3}],
        },
    )
    assert analysis.ModelMetrics("b", 60, 0, 0, 0, 0, 0, 0, {}, []).to_json()["successRate"] == 0


def test_integrity_report() -> None:
    findings = (integrity.Finding("schema", True, "at head"), integrity.Finding("rows", False, "x"))
    same(findings[0].to_json(), {"name": "schema", "ok": True, "detail": "at head"})
    same(
        integrity.Report("sqlite", "/tmp/r.db", findings, "grove db upgrade").to_json(),
        {
            "healthy": False,
            "backend": "sqlite",
            "location": "/tmp/r.db",
            "checks": [
                {"name": "schema", "ok": True, "detail": "at head"},
                {"name": "rows", "ok": False, "detail": "x"},
            ],
            "recovery": "grove db upgrade",
        },
    )


def test_diagnostic() -> None:
    found = diagnostics.warning("a.yaml", 3, "S001", "unknown field x", path="payload.x")
    same(
        found.to_json(),
        {
            "file": "a.yaml",
            "line": 3,
            "column": 0,
            "code": "S001",
            "name": "unknown-field",
            "severity": "warning",
            "path": "payload.x",
            "message": "unknown field x",
        },
    )


def test_snapshot() -> None:
    same(
        snapshot().to_json(),
        {
            "serial": 7,
            "revision": B,
            "objects": [fleet.model("a"), fleet.rule("r")],
            "rolloutSerial": 0,
            "canaries": {},
        },
    )


# the hand-written ones (hot paths: see their to_json)


def test_routing_decision_and_candidates() -> None:
    reports = candidates()
    decision = ranking.RoutingDecision(
        "a", ("a", "c"), "r", "chat", "priority", "best", B, 3, 2, explain=lambda: reports
    )
    candidate_json = [
        {"modelId": "a", "eligible": True, "rank": 1, "score": 0.123457, "reason": "primary"},
        {"modelId": "b", "eligible": False, "rank": None, "score": None, "reason": "disabled"},
    ]
    same(
        decision.to_json(),
        {
            "modelId": "a",
            "chain": ["a", "c"],
            "ruleId": "r",
            "taskType": "chat",
            "strategy": "priority",
            "reason": "best",
            "revision": B,
            "serial": 3,
            "maxAttempts": 2,
            "degraded": False,
            "candidates": candidate_json,
        },
    )


def test_attempt() -> None:
    same(
        routing.AttemptReport("a", FailureKind.TIMEOUT, 12.3456, "slow", "2").to_json(),
        {
            "modelId": "a",
            "version": "2",
            "outcome": "timeout",
            "latencyMs": 12.3,
            "message": "slow",
        },
    )


def test_listing_page() -> None:
    same(
        listings.Page([{"id": "a"}], "abc").to_json(), {"items": [{"id": "a"}], "nextCursor": "abc"}
    )


# ---------------------------------------------------------------- round trips

READABLE = [
    pytest.param(version_change, id="Change"),
    pytest.param(remove_change, id="Change-remove"),
    pytest.param(violation, id="Violation"),
    pytest.param(plan, id="Plan"),
    pytest.param(lambda: Plan(B, None, 0, ()), id="Plan-empty"),
    pytest.param(condition, id="Condition"),
]


@pytest.mark.parametrize("make", READABLE)
def test_dump_then_load_is_the_object(make: Any) -> None:
    obj = make()
    assert serial.load(type(obj), serial.dump(obj)) == obj
    assert type(obj).from_json(json.loads(json.dumps(obj.to_json()))) == obj


def test_a_plan_built_by_diffing_round_trips() -> None:
    built = fleet.plan([fleet.model("a", "2", priority=5)], fleet.live([fleet.model("a")]))
    assert Plan.from_json(json.loads(built.dumps())) == built


def test_a_plan_of_another_format_is_refused() -> None:
    with pytest.raises(ValueError, match="plan format 2 is not 1"):
        Plan.from_json(plan().to_json() | {"formatVersion": 2})
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        Plan.from_json({"formatVersion": 1, "revision": B})


def test_a_stored_condition_may_lack_its_reason_message_and_time() -> None:
    assert status.Condition.from_json({"type": "Stalled", "status": "False"}) == (
        status.Condition("Stalled", status.ConditionStatus.FALSE, "", "", "")
    )


def test_snapshot_round_trip() -> None:
    saved = snapshot()
    loaded = snapshots.Snapshot.from_json(
        json.loads(json.dumps(saved.to_json())), allow_local_endpoints=False
    )
    assert (loaded.serial, loaded.revision) == (saved.serial, saved.revision)
    assert dict(loaded.models) == dict(saved.models)
    assert dict(loaded.rules) == dict(saved.rules)


# ---------------------------------------------------------------- outcome words


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lambda: rolled_back().to_json(), id="Rollback"),
        pytest.param(lambda: condition().to_json(), id="Condition"),
        pytest.param(lambda: plan().to_json(), id="Plan"),
        pytest.param(
            lambda: routing.AttemptReport("a", routing.AttemptOutcome.SUCCESS, 1.0).to_json(),
            id="AttemptReport",
        ),
        pytest.param(
            lambda: routing.AttemptReport("a", FailureKind.TIMEOUT, 1.0).to_json(),
            id="AttemptReport-failed",
        ),
        pytest.param(lambda: snapshot().to_json(), id="Snapshot"),
    ],
)
def test_outcome_words_are_written_as_plain_strings(data: Any) -> None:
    """Not StrEnum members: equal in JSON, but YAML's safe dumper (``-o yaml``) refuses one."""
    assert _types(data()) <= {dict, list, str, int, float, bool, type(None)}


def _types(data: Any) -> set[type]:
    if isinstance(data, dict):
        return {dict}.union(*(_types(k) | _types(v) for k, v in data.items()))
    if isinstance(data, list):
        return {list}.union(*(_types(v) for v in data))
    return {type(data)}


def test_the_words_keep_their_values() -> None:
    assert [s.value for s in reconciling.CycleState] == [
        "applied",
        "already-applied",
        "in-sync",
        "refused",
        "invalid",
    ]
    assert [c.value for c in authoring.RollbackChange] == [
        "rolled-back",
        "dry-run",
        "nothing",
        "pending",
        "committed",
        "unchanged",
    ]
    assert [m.value for m in authoring.RollbackMethod] == ["revert", "restore"]
    assert [s.value for s in status.ConditionStatus] == ["True", "False", "Unknown"]
    assert {o.value for o in routing.AttemptOutcome} == {"success", "skipped"}
    assert {c.value for c in authoring.WriteChange} >= {
        "created",
        "updated",
        "enabled",
        "disabled",
        "retired",
        "removed",
        "unchanged",
    }
    assert [s for s in reconciling.CycleState if s.live] == [
        reconciling.CycleState.APPLIED,
        reconciling.CycleState.ALREADY_APPLIED,
        reconciling.CycleState.IN_SYNC,
    ]
