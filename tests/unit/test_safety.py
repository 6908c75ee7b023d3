"""safety.check: every rule of the catalogue, one plan it refuses and one it lets through.

Each failing case asserts the one code found, the objects named and the key words of
the message and of the way out; each passing case is the nearest plan with no
violation at all.
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.planning import safety
from tests.unit import fleet
from tests.unit.fleet import model, rule

M, R = "AIModel", "RoutingRule"
APPLIED = "a" * 40

two_servers = [model("a"), model("b"), rule("r")]

# name -> (live state, desired documents, context)
Case = tuple[Any, list[Any], dict[str, Any]]

FAILING: dict[str, tuple[Case, str, list[str], list[str], list[str]]] = {
    # name: (case, code, objects, words of the message, words of the way out)
    "P001 model content without a bump": (
        (fleet.live([model("a")]), [model("a", priority=5)], {}),
        "P001",
        ["AIModel/a"],
        ["AIModel/a", "changed content", "kept version 1"],
        ["bump meta.version of a"],
    ),
    "P001 rule content without a bump": (
        (fleet.live([rule("r")]), [rule("r", minScore=0.5)], {}),
        "P001",
        ["RoutingRule/r"],
        ["kept version 1"],
        ["bump meta.version of r", "immutable"],
    ),
    "P002 version reused": (
        (
            fleet.live([model("a", "3")], history=[model("a", "2", priority=1)]),
            [model("a", "2", priority=5)],
            {},
        ),
        "P002",
        ["AIModel/a"],
        ["AIModel/a version 2", "applied before", "different content"],
        ["version string never used"],
    ),
    "P002 version reused by a re-created object": (
        (fleet.live([], history=[rule("r", "1", minScore=0.2)]), [rule("r", minScore=0.5)], {}),
        "P002",
        ["RoutingRule/r"],
        ["RoutingRule/r version 1", "applied before"],
        ["never used"],
    ),
    "P003 quarantined version": (
        (
            fleet.live([model("a")], quarantined=[(M, "a", "2")]),
            [model("a", "2", priority=5)],
            {},
        ),
        "P003",
        ["AIModel/a"],
        ["AIModel/a version 2 is quarantined"],
        ["new version", "revert to the previous version"],
    ),
    "P003 quarantined version enabled again": (
        (
            fleet.live(
                [model("a", state="disabled"), model("b"), rule("r")], quarantined=[(M, "a", "1")]
            ),
            [model("a"), model("b"), rule("r")],
            {},
        ),
        "P003",
        ["AIModel/a"],
        ["version 1 is quarantined"],
        ["new version"],
    ),
    "P004 disabling the last server": (
        (fleet.live([model("a"), rule("r")]), [model("a", state="disabled"), rule("r")], {}),
        "P004",
        ["RoutingRule/r", "AIModel/a"],
        ["rule r", "taskType r", "no enabled model", "a (disable)"],
        ["enable another model", "disable the rule r"],
    ),
    "P004 a version that drops the capability": (
        (
            fleet.live([model("a"), rule("r")]),
            [model("a", "2", capabilities={"speed": 0.8}), rule("r")],
            {},
        ),
        "P004",
        ["RoutingRule/r", "AIModel/a"],
        ["rule r", "a (version)"],
        ["enable another model"],
    ),
    "P004 retiring the last server of a chain": (
        (
            fleet.live([model("a"), model("b"), rule("r", chain=["a"])]),
            [model("a", state="retired"), model("b"), rule("r", chain=["a"])],
            {},
        ),
        "P004",
        ["RoutingRule/r", "AIModel/a"],
        ["a (retire)"],
        ["disable the rule r"],
    ),
    "P005 fallbacks name a removed model": (
        (
            fleet.live([model("a", state="retired"), model("b", fallbacks=["a"])]),
            [model("b", fallbacks=["a"])],
            {},
        ),
        "P005",
        ["AIModel/b", "AIModel/a"],
        ["AIModel/b still names a in its fallbacks"],
        ["remove a from b's fallbacks", "bump its meta.version"],
    ),
    "P005 a chain names a removed model": (
        (
            fleet.live([model("a", state="retired"), model("b"), rule("r", chain=["a", "b"])]),
            [model("b"), rule("r", chain=["a", "b"])],
            {},
        ),
        "P005",
        ["RoutingRule/r", "AIModel/a"],
        ["RoutingRule/r still names a in its chain"],
        ["remove a from r's chain"],
    ),
    "P006 removing an enabled model": (
        (fleet.live([model("a"), model("b")]), [model("b")], {}),
        "P006",
        ["AIModel/a"],
        ["AIModel/a is enabled live", "retire before remove"],
        ["payload.state: retired for a", "then delete the file"],
    ),
    "P006 removing a disabled model": (
        (fleet.live([model("a", state="disabled"), model("b")]), [model("b")], {}),
        "P006",
        ["AIModel/a"],
        ["is disabled live"],
        ["retired"],
    ),
    "P007 removing a protected object": (
        (
            fleet.live([rule("r"), rule("s")], protections={(R, "r"): "billing depends on it"}),
            [rule("s")],
            {},
        ),
        "P007",
        ["RoutingRule/r"],
        ["RoutingRule/r is protected (billing depends on it)"],
        ["grove unprotect r"],
    ),
    "P008 empty desired": (
        (fleet.live([rule("r")]), [], {}),
        "P008",
        [],
        ["git holds no objects", "registry holds 1"],
        ["manifests path and ref", "never applied implicitly"],
    ),
    "P009 mass delete": (
        (fleet.live([rule("r"), rule("s"), rule("t")]), [rule("r")], {}),
        "P009",
        [],
        ["removes 2 of 3 live objects (67%)", "maxDeleteRatio 50%"],
        ["smaller steps", "--force"],
    ),
    "P009 mass delete under a lower ratio": (
        (
            fleet.live([rule("r"), rule("s"), rule("t")]),
            [rule("r"), rule("s")],
            {"max_delete_ratio": 0.2},
        ),
        "P009",
        [],
        ["removes 1 of 3", "maxDeleteRatio 20%"],
        ["smaller steps"],
    ),
    "P010 history rewritten": (
        (fleet.live([rule("r")]), [rule("r")], {"descends": False}),
        "P010",
        [],
        ["does not descend", APPLIED[:12], "force-push"],
        ["contains the applied commit", "--force"],
    ),
    "P011 unrelated history": (
        (
            fleet.live([rule("r")]),
            [rule("r")],
            {"descends": False, "related": False, "source": "/tmp/checkout"},
        ),
        "P011",
        [],
        ["revision bbbbbbbbbbbb of /tmp/checkout", "shares no history", APPLIED[:12]],
        ["point grove at the fleet repository", "--repo or GROVE_REPO", "--force"],
    ),
}

PASSING: dict[str, Case] = {
    "P001 content with a bump": (fleet.live([model("a")]), [model("a", "2", priority=5)], {}),
    "P001 a state change needs no bump": (
        fleet.live([rule("r")]),
        [rule("r", enabled=False)],
        {},
    ),
    "P002 an earlier version with its own content (a rollback)": (
        fleet.live([model("a", "3")], history=[model("a", "2", priority=5)]),
        [model("a", "2", priority=5)],
        {},
    ),
    "P002 restoring drift is not a reuse": (
        fleet.live([model("a")], drifted={(M, "a"): model("a", priority=9)}),
        [model("a")],
        {},
    ),
    "P003 another version than the quarantined one": (
        fleet.live([model("a")], quarantined=[(M, "a", "2")]),
        [model("a", "3", priority=5)],
        {},
    ),
    "P003 disabling a quarantined version": (
        fleet.live([model("a"), model("b"), rule("r")], quarantined=[(M, "a", "1")]),
        [model("a", state="disabled"), model("b"), rule("r")],
        {},
    ),
    "P004 another model still serves": (
        fleet.live(two_servers),
        [model("a", state="disabled"), model("b"), rule("r")],
        {},
    ),
    "P004 the rule is disabled in the same change": (
        fleet.live([model("a"), rule("r")]),
        [model("a", state="disabled"), rule("r", enabled=False)],
        {},
    ),
    "P004 the model served no rule": (
        fleet.live([model("a", capabilities={"speed": 0.8}), model("b"), rule("r")]),
        [model("a", state="disabled", capabilities={"speed": 0.8}), model("b"), rule("r")],
        {},
    ),
    "P005 fallbacks cleaned in the same change": (
        fleet.live([model("a", state="retired"), model("b", fallbacks=["a"])]),
        [model("b", "2")],
        {},
    ),
    "P006 removing a retired model": (
        fleet.live([model("a", state="retired"), model("b")]),
        [model("b")],
        {},
    ),
    "P007 a protected object kept": (
        fleet.live([rule("r"), rule("s")], protections={(R, "r"): ""}),
        [rule("r", "2", minScore=0.5)],
        {},
    ),
    "P008 nothing live, nothing desired": (fleet.live([]), [], {}),
    "P009 removing half": (fleet.live([rule("r"), rule("s")]), [rule("r")], {}),
    "P009 under a higher ratio": (
        fleet.live([rule("r"), rule("s"), rule("t")]),
        [rule("r")],
        {"max_delete_ratio": 0.7},
    ),
    "P010 a descendant": (fleet.live([rule("r")]), [rule("r")], {"descends": True}),
    "P010 a first apply": (fleet.live([], applied_revision=None), [rule("r")], {"descends": None}),
    "P011 a related rewrite is P010, not P011": (
        fleet.live([rule("r")]),
        [rule("r")],
        {"descends": True, "related": False},
    ),
}


@pytest.mark.parametrize(
    ("case", "code", "objects", "message", "way_out"), FAILING.values(), ids=FAILING
)
def test_refused(
    case: Case, code: str, objects: list[str], message: list[str], way_out: list[str]
) -> None:
    have, want, context = case
    plan = fleet.plan(want, have, **context)
    assert [v.code for v in plan.violations] == [code]
    (found,) = plan.violations
    assert found.name == safety.CATALOG[code][0]
    assert list(found.objects) == objects
    for words in message:
        assert words in found.message
    for words in way_out:
        assert words in found.way_out
    assert plan.refused


@pytest.mark.parametrize("case", PASSING.values(), ids=PASSING)
def test_allowed(case: Case) -> None:
    have, want, context = case
    plan = fleet.plan(want, have, **context)
    assert plan.violations == ()
    assert not plan.refused


def test_every_rule_has_a_failing_and_a_passing_case() -> None:
    codes = set(safety.CATALOG)
    assert codes == {f"P{n:03}" for n in range(1, 12)}
    assert {name[:4] for name in FAILING} == codes
    assert {name[:4] for name in PASSING} == codes


def test_unrelated_history_comes_first_and_replaces_p010() -> None:
    """P011 is the cause of whatever else the plan finds: listed first, and no P010."""
    plan = fleet.plan([], fleet.live([rule("r")]), descends=False, related=False)
    assert [v.code for v in plan.violations] == ["P011", "P008"]


def test_p010_comes_after_the_other_findings() -> None:
    plan = fleet.plan([], fleet.live([rule("r")]), descends=False)
    assert [v.code for v in plan.violations] == ["P008", "P010"]


def test_one_removal_can_break_several_rules() -> None:
    have = fleet.live([model("a"), model("b", fallbacks=["a"])], protections={(M, "a"): "pinned"})
    plan = fleet.plan([model("b", fallbacks=["a"])], have)
    assert sorted(v.code for v in plan.violations) == ["P005", "P006", "P007"]


def test_last_servers_names_the_rules_it_judged() -> None:
    """The rule ids P004 returns are those whose R006 validation error it replaces."""
    have = fleet.live([model("a"), rule("r"), rule("s", requires=["speed"])])
    want = [model("a", state="disabled"), rule("r"), rule("s", requires=["speed"])]
    changes = fleet.plan(want, have).changes
    found, judged = safety.last_servers(
        safety.Context(desired=fleet.objects(want), live=have, changes=changes)
    )
    assert judged == {"r", "s"}
    assert [v.objects[0] for v in found] == ["RoutingRule/r", "RoutingRule/s"]


def test_removed_models_counts_only_model_removals() -> None:
    have = fleet.live([model("a", state="retired"), model("b"), rule("r")])
    changes = fleet.plan([model("b")], have).changes
    assert safety.removed_models(changes) == {"a"}
