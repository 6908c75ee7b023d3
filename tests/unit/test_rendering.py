"""A plan in every format: text (``grove plan``/``diff``/``apply``), JSON (``-o json``,
``plan --out``) and Markdown (the pull-request comment).

The assertions are on what each format must carry (addresses, versions, states,
fields, counts, codes and ways out), not on the layout around them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler.planning import plans
from reconciler.planning.plans import ChangeKind, Plan
from tests.unit import fleet
from tests.unit.fleet import model, rule

M, R = "AIModel", "RoutingRule"
BASE, HEAD = "a" * 40, "b" * 40


def every_kind() -> Plan:
    """One plan with one change of each kind."""
    have = fleet.live(
        [
            model("a"),
            model("b", state="retired"),
            model("c", state="disabled"),
            model("d"),
            model("e"),
            model("g", state="disabled"),
            rule("r"),
        ],
        drifted={(M, "e"): model("e", priority=1)},
    )
    want = [
        model("a", "2", priority=5),
        model("c"),
        model("d", state="disabled"),
        model("e"),
        model("f"),
        model("g", state="retired"),
        rule("r", "2", minScore=0.5),
    ]
    return fleet.plan(want, have, revision=HEAD)


def refused() -> Plan:
    return fleet.plan([model("b")], fleet.live([model("a"), model("b")]), revision=HEAD)


def test_the_fixture_has_every_kind() -> None:
    assert {c.kind for c in every_kind().changes} == set(ChangeKind)
    assert not every_kind().refused


HEADLINES = {
    "AIModel/a": "version 1 -> 2",
    "AIModel/b": "remove (version 1, retired)",
    "AIModel/c": "enable (disabled -> enabled)",
    "AIModel/d": "disable (enabled -> disabled)",
    "AIModel/e": "restore git's content over an out-of-band edit (drift)",
    "AIModel/f": "create (version 1)",
    "AIModel/g": "retire (disabled -> retired)",
    "RoutingRule/r": "update 1 -> 2",
}


def test_headlines() -> None:
    assert {c.address: plans.headline(c) for c in every_kind().changes} == HEADLINES


def test_a_version_that_changes_the_state_says_both() -> None:
    plan = fleet.plan([model("a", "2", state="disabled")], fleet.live([model("a")]))
    assert plans.headline(plan.changes[0]) == "version 1 -> 2, enabled -> disabled"


def _line_of(text: str, address: str) -> str:
    (line,) = [line for line in text.splitlines() if f" {address} " in line]
    return line


# ---------------------------------------------------------------- text


def test_text_names_every_change_with_its_marker() -> None:
    text = plans.render_text(every_kind())
    assert text.splitlines()[0] == f"Plan: {BASE[:12]} -> {HEAD[:12]} (registry serial 3)"
    for address, headline in HEADLINES.items():
        line = _line_of(text, address)
        assert headline in line
        marker = {"AIModel/f": "+", "AIModel/b": "-"}.get(address, "~")
        assert line.split()[0] == marker


def test_text_lists_changed_fields_but_not_those_of_a_create_or_remove() -> None:
    text = plans.render_text(every_kind())
    assert "payload.priority: 100 -> 5" in text
    assert 'meta.version: "1" -> "2"' in text
    assert "payload.minScore: 0.0 -> 0.5" in text
    assert "payload.priority: 1 -> 100" in text  # the drift restored
    assert "payload.name" not in text  # only the created model has it as a change


def test_text_counts_and_verdict() -> None:
    text = plans.render_text(every_kind())
    counts = "1 create, 1 version, 1 update, 1 enable, 1 disable, 1 retire, 1 restore, 1 remove"
    assert f"Changes: {counts}." in text
    assert text.rstrip().endswith("Safety: ok.")


def test_text_marks_a_change_that_also_corrects_drift() -> None:
    have = fleet.live([model("a")], drifted={(M, "a"): model("a", priority=1)})
    text = plans.render_text(fleet.plan([model("a", "2", priority=5)], have))
    assert "[corrects drift]" in _line_of(text, "AIModel/a")
    assert "[corrects drift]" not in plans.render_text(every_kind())  # a restore says it itself


def test_text_of_a_refused_plan() -> None:
    text = plans.render_text(refused())
    assert "Safety: REFUSED (1 violation(s); nothing will be applied)." in text
    assert "P006 retire-before-remove: AIModel/a is enabled live" in text
    assert "way out: set payload.state: retired for a" in text
    assert "Safety: ok." not in text


def test_text_of_a_forced_plan() -> None:
    text = plans.render_text(refused(), forced=True)
    assert "OVERRIDDEN by --force" in text
    assert "nothing will be applied" not in text
    assert "P006" in text


@pytest.mark.parametrize(
    ("title", "first", "empty"),
    [
        (
            "Plan",
            f"Plan: {BASE[:12]} -> {HEAD[:12]} (registry serial 3)",
            "No changes. The registry matches git.",
        ),
        ("Diff", f"Diff: {BASE[:12]} -> {HEAD[:12]}", "No changes between the two revisions."),
    ],
    ids=["plan", "diff"],
)
def test_text_of_an_empty_plan(title: str, first: str, empty: str) -> None:
    plan = fleet.plan([rule("r")], fleet.live([rule("r")]), revision=HEAD)
    text = plans.render_text(plan, title=title)
    assert text.splitlines()[0] == first
    assert empty in text
    assert "Changes:" not in text


def test_text_of_a_first_apply_says_from_nothing() -> None:
    plan = fleet.plan([rule("r")], fleet.live([], applied_revision=None), revision=HEAD)
    assert plans.render_text(plan).startswith(f"Plan: nothing -> {HEAD[:12]}")


def test_text_values_are_escaped_and_shortened() -> None:
    have = fleet.live([model("a")])
    plan = fleet.plan([model("a", "2", mock={"reply": "x\u2028\x9b2J" + "y" * 100})], have)
    line = next(line for line in plans.render_text(plan).splitlines() if "mock.reply" in line)
    assert "\u2028" not in line and "\x9b" not in line
    assert "\\u2028" in line and "\\x9b" in line
    assert line.endswith("...")


def test_paint_colours_each_line_by_its_tone() -> None:
    def paint(text: str, tone: str) -> str:
        return f"<{tone}>{text}</{tone}>"

    text = plans.render_text(every_kind(), paint=paint)
    assert _line_of(text, "AIModel/f").startswith("<create>")
    assert _line_of(text, "AIModel/b").startswith("<remove>")
    assert _line_of(text, "AIModel/a").startswith("<change>")
    assert "<refused>Safety: REFUSED" in plans.render_text(refused(), paint=paint)
    plain = plans.render_text(every_kind())
    assert "<" not in plain
    assert plans.render_text(every_kind(), paint=lambda text, _tone: text) == plain


# ---------------------------------------------------------------- json


@pytest.mark.parametrize("make", [every_kind, refused], ids=["every kind", "refused"])
def test_json_round_trip(make: Any) -> None:
    plan = make()
    data = json.loads(plan.dumps())
    assert Plan.from_json(data) == plan
    assert data["formatVersion"] == plans.FORMAT_VERSION
    assert data["refused"] is plan.refused
    assert data["counts"] == plan.counts()
    assert [c["objectKind"] + "/" + c["objectId"] for c in data["changes"]] == [
        c.address for c in plan.changes
    ]


def test_json_carries_versions_states_and_violations() -> None:
    data = refused().to_json()
    (change,) = data["changes"]
    assert change["kind"] == "remove"
    assert (change["versionFrom"], change["versionTo"]) == ("1", None)
    assert (change["stateFrom"], change["stateTo"]) == ("enabled", None)
    assert change["document"] is None
    (violation,) = data["violations"]
    assert violation["code"] == "P006"
    assert violation["objects"] == ["AIModel/a"]
    assert "retired" in violation["wayOut"]


def test_json_of_another_format_is_refused() -> None:
    data = every_kind().to_json() | {"formatVersion": plans.FORMAT_VERSION + 1}
    with pytest.raises(ValueError, match="plan format"):
        Plan.from_json(data)


def test_same_changes_ignores_the_verdict() -> None:
    plan = refused()
    assert plan.same_changes(Plan(HEAD, None, 0, plan.changes))
    assert not plan.same_changes(every_kind())


# ---------------------------------------------------------------- markdown


@pytest.mark.parametrize(
    ("make", "verdict"),
    [
        (every_kind, "safe to apply"),
        (refused, "refused"),
        (lambda: fleet.plan([rule("r")], fleet.live([rule("r")])), "no changes"),
    ],
    ids=["safe", "refused", "empty"],
)
def test_markdown_verdict(make: Any, verdict: str) -> None:
    assert plans.render_markdown(make()).splitlines()[0] == f"### Grove plan: {verdict}"


def test_markdown_table_and_field_changes() -> None:
    text = plans.render_markdown(every_kind())
    assert f"`{BASE[:12]}` → `{HEAD[:12]}`" in text
    for address, headline in HEADLINES.items():
        assert f"`{address}` | {headline} |" in text
    assert "| `+` | `AIModel/f` |" in text
    assert "| `-` | `AIModel/b` |" in text
    assert '@@ AIModel/a @@\n- meta.version: "1"\n+ meta.version: "2"' in text
    assert "- payload.priority: 100\n+ payload.priority: 5" in text
    assert "@@ AIModel/f @@" not in text  # a create's fields are not listed


def test_markdown_violations_are_escaped_prose() -> None:
    text = plans.render_markdown(
        fleet.plan(
            [rule("s")],
            fleet.live([rule("r"), rule("s")], protections={(R, "r"): "ask @ops <b>`now`</b>"}),
        )
    )
    assert "**Safety checks refused this plan:**" in text
    (line,) = [line for line in text.splitlines() if line.startswith("- **P007 protected**")]
    assert "@&#8203;ops" in line
    assert "<b>" not in line and "\\<b\\>" in line
    assert "*Way out:* run \\`grove unprotect r\\`" in line
