"""diffing.diff: one change kind per situation, over in-memory live states."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.planning import diffing
from reconciler.planning.plans import ChangeKind, FieldDiff
from tests.unit import fleet
from tests.unit.fleet import model, rule

M, R = "AIModel", "RoutingRule"

# (live documents, desired documents, drifted {key: live content}) -> changes as
# (kind, address, version from, version to, state from, state to, corrects drift)
CASES: dict[str, tuple[list[Any], list[Any], dict[Any, Any], list[tuple[Any, ...]]]] = {
    "nothing": ([model("a"), rule("r")], [model("a"), rule("r")], {}, []),
    "create model": (
        [],
        [model("a")],
        {},
        [(ChangeKind.CREATE, "AIModel/a", None, "1", None, "enabled", False)],
    ),
    "create disabled rule": (
        [],
        [rule("r", enabled=False)],
        {},
        [(ChangeKind.CREATE, "RoutingRule/r", None, "1", None, "disabled", False)],
    ),
    "version": (
        [model("a")],
        [model("a", "2", priority=5)],
        {},
        [(ChangeKind.VERSION, "AIModel/a", "1", "2", "enabled", "enabled", False)],
    ),
    "version not bumped": (
        [model("a")],
        [model("a", priority=5)],
        {},
        [(ChangeKind.VERSION, "AIModel/a", "1", "1", "enabled", "enabled", False)],
    ),
    "version and state": (
        [model("a")],
        [model("a", "2", priority=5, state="disabled")],
        {},
        [(ChangeKind.VERSION, "AIModel/a", "1", "2", "enabled", "disabled", False)],
    ),
    "content and state, same version": (
        [model("a")],
        [model("a", priority=5, state="disabled")],
        {},
        [(ChangeKind.VERSION, "AIModel/a", "1", "1", "enabled", "disabled", False)],
    ),
    "update rule": (
        [rule("r")],
        [rule("r", "2", minScore=0.5)],
        {},
        [(ChangeKind.UPDATE, "RoutingRule/r", "1", "2", "enabled", "enabled", False)],
    ),
    "enable model": (
        [model("a", state="disabled")],
        [model("a")],
        {},
        [(ChangeKind.ENABLE, "AIModel/a", "1", "1", "disabled", "enabled", False)],
    ),
    "disable model": (
        [model("a")],
        [model("a", state="disabled")],
        {},
        [(ChangeKind.DISABLE, "AIModel/a", "1", "1", "enabled", "disabled", False)],
    ),
    "retire model": (
        [model("a", state="disabled")],
        [model("a", state="retired")],
        {},
        [(ChangeKind.RETIRE, "AIModel/a", "1", "1", "disabled", "retired", False)],
    ),
    "disable rule": (
        [rule("r")],
        [rule("r", enabled=False)],
        {},
        [(ChangeKind.DISABLE, "RoutingRule/r", "1", "1", "enabled", "disabled", False)],
    ),
    "enable rule": (
        [rule("r", enabled=False)],
        [rule("r")],
        {},
        [(ChangeKind.ENABLE, "RoutingRule/r", "1", "1", "disabled", "enabled", False)],
    ),
    "remove model": (
        [model("a", state="retired")],
        [],
        {},
        [(ChangeKind.REMOVE, "AIModel/a", "1", None, "retired", None, False)],
    ),
    "remove rule": (
        [rule("r")],
        [],
        {},
        [(ChangeKind.REMOVE, "RoutingRule/r", "1", None, "enabled", None, False)],
    ),
    "restore drift": (
        [model("a")],
        [model("a")],
        {(M, "a"): model("a", priority=999)},
        [(ChangeKind.RESTORE, "AIModel/a", "1", "1", "enabled", "enabled", True)],
    ),
    "restore a drifted state": (
        [rule("r")],
        [rule("r")],
        {(R, "r"): rule("r", enabled=False)},
        [(ChangeKind.RESTORE, "RoutingRule/r", "1", "1", "disabled", "enabled", True)],
    ),
    "restore a drifted version column": (
        [model("a")],
        [model("a")],
        {(M, "a"): model("a", "9")},
        [(ChangeKind.RESTORE, "AIModel/a", "1", "1", "enabled", "enabled", True)],
    ),
    "version over drift": (
        [model("a")],
        [model("a", "2", priority=5)],
        {(M, "a"): model("a", priority=999)},
        [(ChangeKind.VERSION, "AIModel/a", "1", "2", "enabled", "enabled", True)],
    ),
    "disable over drift": (
        [model("a")],
        [model("a", state="disabled")],
        {(M, "a"): model("a", priority=999)},
        [(ChangeKind.DISABLE, "AIModel/a", "1", "1", "enabled", "disabled", True)],
    ),
    "ordered by type then id": (
        [model("b"), rule("q")],
        [model("c"), model("a"), rule("p")],
        {},
        [
            (ChangeKind.CREATE, "AIModel/a", None, "1", None, "enabled", False),
            (ChangeKind.REMOVE, "AIModel/b", "1", None, "enabled", None, False),
            (ChangeKind.CREATE, "AIModel/c", None, "1", None, "enabled", False),
            (ChangeKind.CREATE, "RoutingRule/p", None, "1", None, "enabled", False),
            (ChangeKind.REMOVE, "RoutingRule/q", "1", None, "enabled", None, False),
        ],
    ),
}


@pytest.mark.parametrize(("have", "want", "drifted", "expected"), CASES.values(), ids=CASES)
def test_diff_kind(
    have: list[Any], want: list[Any], drifted: dict[Any, Any], expected: list[tuple[Any, ...]]
) -> None:
    changes = diffing.diff(fleet.desired(want), fleet.live(have, drifted=drifted))
    assert [
        (
            c.kind,
            c.address,
            c.version_from,
            c.version_to,
            c.state_from,
            c.state_to,
            c.corrects_drift,
        )
        for c in changes
    ] == expected


def test_every_change_kind_is_in_the_table() -> None:
    seen = {change[0] for *_, expected in CASES.values() for change in expected}
    assert seen == set(ChangeKind)


def test_a_state_change_after_a_version_history_is_still_state_only() -> None:
    """The version hash compared is that of the live version, not of an older one."""
    have = fleet.live([model("a", "2", priority=5)], history=[model("a", "1")])
    (change,) = diffing.diff(fleet.desired([model("a", "2", priority=5, state="disabled")]), have)
    assert change.kind is ChangeKind.DISABLE
    assert [f.path for f in change.fields] == ["payload.state"]


def test_create_carries_the_document_and_every_field() -> None:
    want = model("a", priority=7)
    (change,) = diffing.diff(fleet.desired([want]), fleet.live())
    assert change.document == want
    assert change.source_path == "a.yaml"
    paths = {f.path for f in change.fields}
    assert {"meta.id", "meta.version", "payload.priority", "payload.capabilities.speed"} <= paths
    assert all(f.before is None for f in change.fields)


def test_remove_carries_no_document() -> None:
    (change,) = diffing.diff({}, fleet.live([rule("r")]))
    assert change.document is None
    assert change.fields == ()


def test_version_lists_only_the_fields_that_differ() -> None:
    (change,) = diffing.diff(fleet.desired([model("a", "2", priority=5)]), fleet.live([model("a")]))
    assert change.fields == (
        FieldDiff("meta.version", "1", "2"),
        FieldDiff("payload.priority", 100, 5),
    )


def test_restore_lists_what_the_out_of_band_edit_changed() -> None:
    have = fleet.live([model("a")], drifted={(M, "a"): model("a", priority=999)})
    (change,) = diffing.diff(fleet.desired([model("a")]), have)
    assert change.fields == (FieldDiff("payload.priority", 999, 100),)
    assert change.document == model("a")


FIELD_CASES = {
    "same": ({"a": 1}, {"a": 1}, []),
    "changed leaf": ({"a": {"b": 1}}, {"a": {"b": 2}}, [("a.b", 1, 2)]),
    "added": ({}, {"a": {"b": 1}}, [("a.b", None, 1)]),
    "removed": ({"a": 1, "z": 2}, {"z": 2}, [("a", 1, None)]),
    "lists are whole values": ({"l": [1, 2]}, {"l": [2, 1]}, [("l", [1, 2], [2, 1])]),
    "null to absent": ({"a": None}, {}, [("a", None, None)]),
    "empty dict is a leaf": ({"a": {}}, {"a": {"b": 1}}, [("a", {}, None), ("a.b", None, 1)]),
    "sorted by path": ({"b": 1, "a": 1}, {"b": 2, "a": 2}, [("a", 1, 2), ("b", 1, 2)]),
}


@pytest.mark.parametrize(("before", "after", "expected"), FIELD_CASES.values(), ids=FIELD_CASES)
def test_field_diff(
    before: dict[str, Any], after: dict[str, Any], expected: list[tuple[str, Any, Any]]
) -> None:
    assert diffing.field_diff(before, after) == [FieldDiff(*row) for row in expected]
