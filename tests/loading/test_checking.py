"""Cross-object checks: references, cycles, servability, duplicates, lifecycle dates."""

from __future__ import annotations

import datetime as dt

import pytest

from reconciler.base.diagnostics import Diagnostic
from reconciler.manifests import checking, loading
from tests.conftest import model_yaml, rule_yaml

LIMITS = loading.Limits(max_file_bytes=1 << 20, max_tree_bytes=1 << 24, max_files=100, max_depth=32)
TODAY = dt.date(2026, 11, 27)


def _check(*texts: str, today: dt.date = TODAY) -> list[Diagnostic]:
    files = [loading.SourceFile(f"f{i}.yaml", t.encode()) for i, t in enumerate(texts)]
    loaded = loading.load(files, LIMITS, allow_local_endpoints=False)
    assert loaded.diagnostics == [], loaded.diagnostics
    return checking.check(loaded, today)


def _codes(found: list[Diagnostic]) -> list[tuple[str, str]]:
    return sorted((d.code, d.severity.value) for d in found)


def test_a_coherent_fleet_has_no_findings() -> None:
    found = _check(
        model_yaml("a", fallbacks="[b]", priority="90"),
        model_yaml("b", fallbacks="[c]"),
        model_yaml("c"),
        rule_yaml("r", chain="[a, b]", minScore="0.8"),
    )
    assert found == []


def test_two_cycles_are_each_reported_once() -> None:
    found = _check(
        model_yaml("a", fallbacks="[b]"),
        model_yaml("b", fallbacks="[a]"),
        model_yaml("c", fallbacks="[d]"),
        model_yaml("d", fallbacks="[c, a]"),
    )
    messages = sorted(d.message for d in found if d.code == "R004")
    assert messages == [
        "fallbacks form a cycle: a -> b -> a; a failover chain must end",
        "fallbacks form a cycle: c -> d -> c; a failover chain must end",
    ]


def test_a_diamond_is_not_a_cycle() -> None:
    found = _check(
        model_yaml("a", fallbacks="[b, c]"),
        model_yaml("b", fallbacks="[d]"),
        model_yaml("c", fallbacks="[d]"),
        model_yaml("d"),
    )
    assert found == []


def test_falling_back_to_a_disabled_model_is_a_warning() -> None:
    found = _check(model_yaml("a", fallbacks="[b]"), model_yaml("b", state="disabled"))
    assert _codes(found) == [("R008", "warning")]


def test_chaining_a_retired_model_is_a_warning_and_the_rule_still_served() -> None:
    found = _check(
        model_yaml("a"),
        model_yaml("b", state="retired"),
        rule_yaml("r", chain="[a, b]"),
    )
    assert _codes(found) == [("R008", "warning")]


def test_a_chain_of_only_disabled_models_cannot_serve() -> None:
    found = _check(
        model_yaml("a"),
        model_yaml("b", state="disabled"),
        rule_yaml("r", chain="[b]"),
    )
    assert _codes(found) == [("R006", "error"), ("R008", "warning")]
    assert "no enabled model of its chain" in next(d.message for d in found if d.code == "R006")


def test_a_disabled_rule_need_not_be_served() -> None:
    assert _check(model_yaml("a", capabilities="{speed: 1}"), rule_yaml("r", enabled="false")) == []


@pytest.mark.parametrize(
    ("constraints", "served"),
    [
        ("{minContextWindow: 100000}", False),
        ("{minContextWindow: 1000}", True),
        ("{maxCostPerMTok: 1.0}", False),
        ("{maxCostPerMTok: 6.0}", True),
        ("{maxLatencyMs: 10}", True),  # latency is observed at run time, not judged here
    ],
)
def test_static_constraints_decide_servability(constraints: str, served: bool) -> None:
    found = _check(
        model_yaml("a", contextWindow="8000", pricing="{inputPerMTok: 3, outputPerMTok: 15}"),
        rule_yaml("r", constraints=constraints),
    )
    assert (found == []) is served
    if not served:
        assert "within its constraints" in found[0].message


def test_a_model_without_declared_context_window_fails_a_minimum() -> None:
    found = _check(model_yaml("a"), rule_yaml("r", constraints="{minContextWindow: 10}"))
    assert _codes(found) == [("R006", "error")]


def test_duplicate_ids_are_per_type() -> None:
    found = _check(model_yaml("same"), rule_yaml("same", chain="[same]"))
    assert found == []


def test_duplicate_ids_name_both_places() -> None:
    found = _check(model_yaml("a"), model_yaml("a"))
    assert sorted((d.file, d.message) for d in found) == [
        ("f0.yaml", "AIModel id a is defined more than once; also at f1.yaml:1"),
        ("f1.yaml", "AIModel id a is defined more than once; also at f0.yaml:1"),
    ]


@pytest.mark.parametrize(
    ("sunset", "expected"),
    [
        ("2026-11-26", [("L002", "error")]),
        ("2026-11-27", [("L001", "warning")]),
        ("2026-12-27", [("L001", "warning")]),
        ("2026-12-28", []),
    ],
)
def test_sunset_dates(sunset: str, expected: list[tuple[str, str]]) -> None:
    found = _check(model_yaml("a", lifecycle=f"{{sunsetDate: {sunset}}}"))
    assert _codes(found) == expected


def test_a_retired_model_past_sunset_is_fine() -> None:
    found = _check(model_yaml("a", state="retired", lifecycle="{sunsetDate: 2020-01-01}"))
    assert found == []


def test_deprecation_passed_is_a_warning() -> None:
    found = _check(
        model_yaml("a", lifecycle="{deprecationDate: 2026-01-01, sunsetDate: 2027-12-01}")
    )
    assert _codes(found) == [("L003", "warning")]


def test_reference_checks_wait_for_unparseable_files() -> None:
    files = [
        loading.SourceFile("a.yaml", model_yaml("a", fallbacks="[b]").encode()),
        loading.SourceFile("b.yaml", b"meta: &x {id: b}\n"),
    ]
    loaded = loading.load(files, LIMITS, allow_local_endpoints=False)
    assert checking.check(loaded, TODAY) == []


def test_references_to_an_invalid_document_are_not_dangling() -> None:
    files = [
        loading.SourceFile("a.yaml", model_yaml("a", fallbacks="[b]").encode()),
        loading.SourceFile("b.yaml", model_yaml("b", priority="-1").encode()),
    ]
    loaded = loading.load(files, LIMITS, allow_local_endpoints=False)
    assert [d.code for d in loaded.diagnostics] == ["S004"]
    assert checking.check(loaded, TODAY) == []


def test_servers_lists_the_models_that_can_serve_a_rule() -> None:
    files = [
        loading.SourceFile(
            "m.yaml",
            (model_yaml("a") + "---\n" + model_yaml("b", capabilities="{speed: 1}")).encode(),
        ),
        loading.SourceFile("r.yaml", rule_yaml("r").encode()),
    ]
    loaded = loading.load(files, LIMITS, allow_local_endpoints=False)
    models = {o.id: o for o in loaded.objects if o.kind == "AIModel"}
    rule = loaded.objects[-1].obj.payload
    assert checking.servers(rule, models) == ["a"]  # type: ignore[arg-type]


def test_servability_holds_across_rules_with_and_without_chains() -> None:
    found = _check(
        model_yaml("a"),
        model_yaml("b", capabilities="{speed: 0.9}"),
        rule_yaml("r1", chain="[a]"),
        rule_yaml("r2", requires="[speed]"),
        rule_yaml("r3", requires="[creativity]"),
    )
    assert [(d.code, d.message.split(" (")[0]) for d in found] == [("R006", "rule r3")]
