"""The rule editor's pure helpers (`reconciler.web.ruleedit`): the merge patch a save sends,
the form field a diagnostic points at, what a typed number becomes, and a simulation
over a routing table built here."""

from __future__ import annotations

import datetime as dt

import pytest

from reconciler.manifests import kinds as manifests
from reconciler.manifests import loading
from reconciler.routing import ranking
from reconciler.web import ruleedit as editing

LIMITS = loading.Limits(
    max_file_bytes=1_000_000, max_tree_bytes=10_000_000, max_files=1000, max_depth=20
)
TODAY = dt.date(2026, 12, 5)


def model(ident: str, priority: int, **payload: object) -> manifests.AIModel:
    return manifests.AIModel.model_validate(
        {
            "meta": {"id": ident, "type": "AIModel", "version": "1"},
            "payload": {
                "name": ident,
                "provider": "mock",
                "capabilities": {"reasoning": 0.9},
                "priority": priority,
                **payload,
            },
        }
    )


RULE = manifests.RoutingRule.model_validate(
    {
        "meta": {"id": "think", "type": "RoutingRule", "version": "1"},
        "payload": {"taskType": "think", "requires": ["reasoning"], "minScore": 0.5},
    }
)
MODELS = {
    "alpha": model("alpha", 90),
    "beta": model("beta", 50, contextWindow=200_000),
}


def posted(**changes: str) -> dict[str, str]:
    form = {
        "requires[]": "reasoning",
        "minScore": "0.5",
        "strategy": "priority",
        "chain": "",
        "failover-on[]": "\n".join(editing.FAILURES),
        "failover-maxAttempts": "3",
        "failover-cooldownS": "30",
        "enabled": "true",
    }
    form.update(changes)
    return form


def edit(**changes: str) -> editing.Edit:
    return editing.edit_of(
        posted(**changes), RULE, MODELS, limits=LIMITS, allow_local_endpoints=False, today=TODAY
    )


def test_the_merge_patch_removes_what_the_form_left_empty() -> None:
    before = {"a": 1, "c": {"x": 1, "y": 2}, "gone": [1], "same": [1, 2]}
    after = {"a": 2, "c": {"x": 1}, "new": "n", "same": [1, 2]}
    assert editing.changes_of(before, after) == {
        "a": 2,
        "c": {"y": None},
        "gone": None,
        "new": "n",
    }


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("payload.chain[3]", "chain"),
        ("payload.minScore", "minScore"),
        ("payload.failover.maxAttempts", "failover-maxAttempts"),
        ("payload.failover.on[1]", "failover-on"),
        ("payload.weights", "weights"),
        ("payload.weights.cost", "weights-cost"),
        ("payload.constraints.minContextWindow", "constraints-minContextWindow"),
        ("payload.requires", "requires"),
        ("meta.id", "form"),
        ("", "form"),
    ],
)
def test_a_diagnostic_path_names_its_form_field(path: str, field: str) -> None:
    assert editing.field_of(path) == field


def test_an_untouched_form_is_no_change() -> None:
    found = edit()
    assert found.ok, found.errors
    before = manifests.to_document(RULE)["payload"]
    assert editing.changes_of(before, found.payload) == {}


@pytest.mark.parametrize(
    ("field", "text", "code"),
    [
        ("minScore", "5", "S004"),
        ("minScore", "nan", "S003"),
        ("minScore", "1e999", "S003"),
        ("weights-capability", "-1", "S004"),
        ("failover-maxAttempts", str(10**9), "S004"),
        ("constraints-maxLatencyMs", "0.5", "S003"),
    ],
)
def test_an_absurd_number_is_the_validators_error_at_its_field(
    field: str, text: str, code: str
) -> None:
    found = edit(**{field: text, "strategy": "balanced"})
    assert not found.ok
    assert found.errors[field].startswith(code), found.errors


def test_a_chain_of_unknown_models_is_r003_and_a_long_one_is_refused_unread() -> None:
    assert edit(chain="nobody").errors["chain"].startswith("R003")
    long = edit(chain="\n".join(f"m-{i}" for i in range(10_000)))
    assert "at most 16 models" in long.errors["chain"]
    assert long.values["chain"].count("\n") < editing.MAX_CHAIN_LINES


def test_a_rule_no_model_can_serve_is_r006_at_requires() -> None:
    assert edit(minScore="0.95").errors["requires"].startswith("R006")


def test_the_simulation_follows_the_edit_and_the_request_profile() -> None:
    table = ranking.RoutingTable(MODELS, {"think": RULE}, revision=None, serial=1)
    dynamic = ranking.Dynamic(blocked=lambda key: None, p95_ms=lambda key: None, today=TODAY)
    now = editing.simulate(table, dynamic, RULE)
    assert now.decision is not None and now.decision.model_id == "alpha"
    edited = edit(chain="beta\nalpha").rule
    assert edited is not None
    after = editing.simulate(table, dynamic, edited)
    assert after.decision is not None and after.decision.chain == ("beta", "alpha")
    big = editing.simulate(table, dynamic, RULE, editing.Profile(context_tokens=100_000))
    assert big.decision is not None and big.decision.model_id == "beta"
    assert [c.model_id for c in big.excluded] == ["alpha"]
