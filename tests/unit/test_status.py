"""Status and its conditions for each situation of the registry (reconciling.build_status,
the pure part of ``grove status`` and ``/api/status``), and the Stalled message."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.base.diagnostics import Diagnostic
from reconciler.gitops import reconciling
from reconciler.planning import status
from reconciler.planning.status import Health, Sync
from tests.unit import fleet
from tests.unit.fleet import model, rule

M = "AIModel"
OLD = "2020-01-01T00:00:00+00:00"


def stored(kind: str, state: bool, reason: str, message: str = "", time: str = OLD) -> Any:
    return status.Condition(kind, "True" if state else "False", reason, message, time).to_json()


invalid = stored("Stalled", True, "ManifestsInvalid", "1 manifest error(s); first: a.yaml:3: S001")
refused = stored("Stalled", True, "PlanRefused", "safety checks refused the plan: P006")

# name -> (live state, sync, pending, problem) and the expected
# (health, Ready, Drifted, Stalled, Reconciling) as (status, reason) pairs
SITUATIONS: dict[str, tuple[tuple[Any, Sync, int, str], Health, list[tuple[str, str]]]] = {
    "in sync": (
        (fleet.live([model("a")]), Sync.SYNCED, 0, ""),
        Health.HEALTHY,
        [
            ("True", "ReconciliationSucceeded"),
            ("False", "NoDrift"),
            ("False", "NotStalled"),
            ("False", "Idle"),
        ],
    ),
    "changes pending": (
        (fleet.live([model("a")]), Sync.OUT_OF_SYNC, 2, ""),
        Health.PROGRESSING,
        [("False", "OutOfSync"), ("False", "NoDrift"), ("False", "NotStalled"), ("False", "Idle")],
    ),
    "drifted": (
        (fleet.live([model("a")], drifted={(M, "a"): model("a", priority=1)}), Sync.SYNCED, 0, ""),
        Health.DEGRADED,
        [
            ("False", "DriftDetected"),
            ("True", "DriftDetected"),
            ("False", "NotStalled"),
            ("False", "Idle"),
        ],
    ),
    "stalled on invalid manifests": (
        (fleet.live([model("a")], conditions={"Stalled": invalid}), Sync.UNKNOWN, 0, ""),
        Health.DEGRADED,
        [
            ("False", "ManifestsInvalid"),
            ("False", "NoDrift"),
            ("True", "ManifestsInvalid"),
            ("False", "Idle"),
        ],
    ),
    "stalled on a refused plan": (
        (fleet.live([model("a")], conditions={"Stalled": refused}), Sync.OUT_OF_SYNC, 1, ""),
        Health.DEGRADED,
        [
            ("False", "PlanRefused"),
            ("False", "NoDrift"),
            ("True", "PlanRefused"),
            ("False", "Idle"),
        ],
    ),
    "a stall that ended": (
        (
            fleet.live([model("a")], conditions={"Stalled": stored("Stalled", False, "Succeeded")}),
            Sync.SYNCED,
            0,
            "",
        ),
        Health.HEALTHY,
        [
            ("True", "ReconciliationSucceeded"),
            ("False", "NoDrift"),
            ("False", "Succeeded"),
            ("False", "Idle"),
        ],
    ),
    "source unreachable": (
        (fleet.live([model("a")]), Sync.UNKNOWN, 0, "git fetch failed"),
        Health.HEALTHY,
        [
            ("False", "SourceOrManifestError"),
            ("False", "NoDrift"),
            ("False", "NotStalled"),
            ("False", "Idle"),
        ],
    ),
    "never applied": (
        (fleet.live([], applied_revision=None), Sync.OUT_OF_SYNC, 3, ""),
        Health.UNKNOWN,
        [("False", "OutOfSync"), ("False", "NoDrift"), ("False", "NotStalled"), ("False", "Idle")],
    ),
    "suspended": (
        (fleet.live([model("a")], suspended=True), Sync.SYNCED, 0, ""),
        Health.HEALTHY,
        [
            ("True", "ReconciliationSucceeded"),
            ("False", "NoDrift"),
            ("False", "NotStalled"),
            ("False", "Suspended"),
        ],
    ),
    "drifted and stalled": (
        (
            fleet.live(
                [rule("r")],
                drifted={("RoutingRule", "r"): rule("r", enabled=False)},
                conditions={"Stalled": refused},
            ),
            Sync.OUT_OF_SYNC,
            1,
            "",
        ),
        Health.DEGRADED,
        [
            ("False", "PlanRefused"),
            ("True", "DriftDetected"),
            ("True", "PlanRefused"),
            ("False", "Idle"),
        ],
    ),
}


@pytest.mark.parametrize(("inputs", "health", "expected"), SITUATIONS.values(), ids=SITUATIONS)
def test_conditions(
    inputs: tuple[Any, Sync, int, str], health: Health, expected: list[tuple[str, str]]
) -> None:
    live, sync, pending, problem = inputs
    found = reconciling.build_status(live, "c" * 40, sync, pending, problem)
    assert found.sync is sync
    assert found.health is health
    assert [c.type for c in found.conditions] == ["Ready", "Drifted", "Stalled", "Reconciling"]
    assert [(c.status, c.reason) for c in found.conditions] == expected
    ready = found.condition("Ready")
    assert ready is not None
    assert (ready.status == "True") is (sync is Sync.SYNCED and health is Health.HEALTHY)


def test_ready_says_what_was_applied() -> None:
    found = reconciling.build_status(fleet.live([model("a")]), "a" * 40, Sync.SYNCED, 0, "")
    ready = found.condition("Ready")
    assert ready is not None and ready.message == f"applied {'a' * 40}"


def test_out_of_sync_counts_the_pending_changes() -> None:
    found = reconciling.build_status(fleet.live([model("a")]), "c" * 40, Sync.OUT_OF_SYNC, 4, "")
    ready = found.condition("Ready")
    assert ready is not None and ready.message == "4 change(s) pending"
    assert found.pending_changes == 4


def test_drifted_names_the_objects() -> None:
    live = fleet.live(
        [model("a"), model("b"), rule("r")],
        drifted={(M, "b"): model("b", priority=1), ("RoutingRule", "r"): rule("r", minScore=0.3)},
    )
    found = reconciling.build_status(live, "a" * 40, Sync.SYNCED, 0, "")
    assert found.drifted == ("AIModel/b", "RoutingRule/r")
    drifted = found.condition("Drifted")
    assert drifted is not None and drifted.message == "AIModel/b, RoutingRule/r"
    ready = found.condition("Ready")
    assert ready is not None and ready.message == "live objects differ from what was applied"


def test_drifted_lists_at_most_twenty() -> None:
    documents = [model(f"m{n:02}") for n in range(25)]
    live = fleet.live(
        documents,
        drifted={(M, d["meta"]["id"]): model(d["meta"]["id"], priority=1) for d in documents},
    )
    found = reconciling.build_status(live, None, Sync.UNKNOWN, 0, "")
    drifted = found.condition("Drifted")
    assert drifted is not None and drifted.message.count("AIModel/") == 20
    assert len(found.drifted) == 25


def test_a_problem_is_the_ready_message() -> None:
    found = reconciling.build_status(fleet.live([model("a")]), None, Sync.UNKNOWN, 0, "no ref main")
    ready = found.condition("Ready")
    assert ready is not None and ready.message == "no ref main"
    assert found.desired_revision is None


def test_a_stall_is_kept_with_its_time_and_message() -> None:
    live = fleet.live([model("a")], conditions={"Stalled": refused})
    found = reconciling.build_status(live, "c" * 40, Sync.OUT_OF_SYNC, 1, "")
    stalled = found.condition("Stalled")
    assert stalled is not None and stalled.time == OLD
    ready = found.condition("Ready")
    assert ready is not None and ready.message == "safety checks refused the plan: P006"


@pytest.mark.parametrize(
    ("previous", "kept"),
    [
        (stored("Ready", True, "ReconciliationSucceeded"), True),
        (stored("Ready", False, "OutOfSync"), False),
    ],
    ids=["same status keeps its time", "a flip takes a new time"],
)
def test_ready_transition_time(previous: Any, kept: bool) -> None:
    live = fleet.live([model("a")], conditions={"Ready": previous})
    found = reconciling.build_status(live, "a" * 40, Sync.SYNCED, 0, "")
    ready = found.condition("Ready")
    assert ready is not None
    assert (ready.time == OLD) is kept


def test_status_document() -> None:
    live = fleet.live(
        [model("a")], attempted_revision="d" * 40, last_error="PlanRefused: P006", suspended=True
    )
    document = reconciling.build_status(live, "c" * 40, Sync.OUT_OF_SYNC, 2, "").to_json()
    assert {k: v for k, v in document.items() if k != "conditions"} == {
        "sync": "OutOfSync",
        "health": "Progressing",
        "desiredRevision": "c" * 40,
        "lastAppliedRevision": "a" * 40,
        "lastAttemptedRevision": "d" * 40,
        "stateSerial": 3,
        "objects": 1,
        "pendingChanges": 2,
        "drifted": [],
        "suspended": True,
        "lastError": "PlanRefused: P006",
        "rollouts": [],
    }
    assert [status.Condition.from_json(c).to_json() for c in document["conditions"]] == document[
        "conditions"
    ]
    assert set(document["conditions"][0]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
    }


@pytest.mark.parametrize(
    ("value", "text"), [(True, "True"), (False, "False"), (None, "Unknown")], ids=str
)
def test_condition_status_words(value: bool | None, text: str) -> None:
    assert status.condition("Ready", value, "Why").status == text


def _error(file: str, line: int) -> Diagnostic:
    return Diagnostic(file, line, "S001", "not valid YAML")


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        ([], "0 manifest error(s)"),
        ([_error("b.yaml", 2)], "1 manifest error(s); first: b.yaml:2: S001 not valid YAML"),
        (
            [_error("b.yaml", 9), _error("a.yaml", 5), _error("b.yaml", 2)],
            "3 manifest error(s); first: a.yaml:5: S001 not valid YAML; "
            "b.yaml:2: S001 not valid YAML; b.yaml:9: S001 not valid YAML",
        ),
        (
            [_error(f"m{n}.yaml", 1) for n in range(5)],
            "5 manifest error(s); first: m0.yaml:1: S001 not valid YAML; "
            "m1.yaml:1: S001 not valid YAML; m2.yaml:1: S001 not valid YAML; "
            "and 2 more (grove validate lists them all)",
        ),
        (
            [_error("a\x1b[31m.yaml", 1)],
            "1 manifest error(s); first: a\\x1b[31m.yaml:1: S001 not valid YAML",
        ),
    ],
    ids=["none", "one", "file and line order", "three then how many more", "escaped"],
)
def test_stalled_message_of_invalid_manifests(found: list[Diagnostic], expected: str) -> None:
    assert reconciling.invalid_message(found) == expected
