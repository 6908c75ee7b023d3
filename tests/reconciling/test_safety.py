"""Every safety violation refuses the plan, applies nothing, names its way out,
and --force overrides it with the override recorded."""

from __future__ import annotations

import json

import pytest

from tests.conftest import model_yaml, rule_yaml
from tests.reconciling.conftest import Registry, small_fleet

# the same flows on PostgreSQL: in CI, not in the inner loop (`pytest -m "not slow"`)
pytestmark = pytest.mark.slow_on_pg


def _start(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0


def _refused(registry: Registry, code: str) -> dict[str, object]:
    """Plan, expect a refusal with ``code``; then check reconcile applies nothing."""
    before = registry.content_hash()
    planned = registry.run("plan", "--json")
    assert planned.code == 1, planned.out + planned.err
    plan = json.loads(planned.out)
    assert plan["refused"] is True
    codes = [v["code"] for v in plan["violations"]]
    assert code in codes, codes
    text = registry.run("plan")
    assert text.code == 1
    assert f"{code} " in text.out
    assert "way out:" in text.out
    result = registry.run("reconcile")
    assert result.code == 1
    assert "was not applied" in result.err
    assert registry.content_hash() == before
    status = json.loads(registry.run("status", "--json").out)
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    assert code in stalled["message"]
    violation: dict[str, object] = next(v for v in plan["violations"] if v["code"] == code)
    return violation


def test_p001_content_changed_without_a_version_bump(registry: Registry) -> None:
    _start(registry)
    registry.fleet.commit("prio", {"models/beta.yaml": model_yaml("beta", priority="55")})
    violation = _refused(registry, "P001")
    assert violation["objects"] == ["AIModel/beta"]
    assert "bump meta.version" in str(violation["wayOut"])


def test_p002_a_version_reused_with_other_content(registry: Registry) -> None:
    _start(registry)
    v2 = model_yaml("beta", priority="60").replace('"1"', '"2"')
    registry.fleet.commit("beta v2", {"models/beta.yaml": v2})
    assert registry.run("reconcile").code == 0
    v1_again = model_yaml("beta", priority="70")  # version "1" with new content
    registry.fleet.commit("beta back to 1", {"models/beta.yaml": v1_again})
    _refused(registry, "P002")


def test_reapplying_an_old_version_with_its_old_content_is_fine(registry: Registry) -> None:
    _start(registry)
    v2 = model_yaml("beta", priority="60").replace('"1"', '"2"')
    registry.fleet.commit("beta v2", {"models/beta.yaml": v2})
    assert registry.run("reconcile").code == 0
    registry.fleet.commit("beta back", {"models/beta.yaml": model_yaml("beta", priority="50")})
    assert registry.run("plan").code == 2


def test_p003_a_quarantined_version(registry: Registry) -> None:
    _start(registry)
    registry.sql(
        "INSERT INTO quarantined_versions (object_kind, object_id, version, reason) "
        "VALUES ('AIModel', 'beta', '2', 'bad latency')"
    )
    v2 = model_yaml("beta", priority="60").replace('"1"', '"2"')
    registry.fleet.commit("beta v2", {"models/beta.yaml": v2})
    _refused(registry, "P003")


def test_p004_disabling_the_last_model_that_serves_a_rule(registry: Registry) -> None:
    registry.fleet.commit(
        "fleet",
        {
            "models/only.yaml": model_yaml("only", capabilities="{reasoning: 0.9}"),
            "models/fast.yaml": model_yaml("fast", capabilities="{speed: 0.9}"),
            "rules/think.yaml": rule_yaml("think"),
        },
    )
    assert registry.run("reconcile").code == 0
    registry.fleet.commit(
        "disable",
        {"models/only.yaml": model_yaml("only", capabilities="{reasoning: 0.9}", state="disabled")},
    )
    violation = _refused(registry, "P004")
    assert "rule think" in str(violation["message"])
    assert violation["objects"] == ["RoutingRule/think", "AIModel/only"]


def test_p005_removing_a_model_still_named_as_a_fallback(registry: Registry) -> None:
    _start(registry)
    registry.fleet.commit(
        "retire beta", {"models/beta.yaml": model_yaml("beta", priority="50", state="retired")}
    )
    result = registry.run("reconcile")
    assert result.code == 0
    assert "R008 warning" in result.err  # alpha falls back to a retired model
    registry.fleet.delete("models/beta.yaml")
    registry.fleet.commit("remove beta")
    violation = _refused(registry, "P005")
    assert "AIModel/alpha still names beta in its fallbacks" in str(violation["message"])


def test_p006_retire_before_remove(registry: Registry) -> None:
    _start(registry)
    registry.fleet.delete("models/gamma.yaml")
    registry.fleet.commit("remove gamma")
    violation = _refused(registry, "P006")
    assert "retire before remove" in str(violation["message"])


def test_p007_a_protected_object(registry: Registry) -> None:
    _start(registry)
    assert registry.run("protect", "think", "--reason", "production rule").out == (
        "RoutingRule/think protected\n"
    )
    assert "(no change)" in registry.run("protect", "think").out
    registry.fleet.delete("rules/think.yaml")
    registry.fleet.commit("drop rule")
    violation = _refused(registry, "P007")
    assert "grove unprotect think" in str(violation["wayOut"])
    assert registry.run("unprotect", "think").code == 0
    assert registry.run("reconcile").code == 0


def test_protect_needs_a_live_object(registry: Registry) -> None:
    _start(registry)
    result = registry.run("protect", "ghost")
    assert result.code == 1
    assert result.err == "grove: no live object has the id 'ghost'\n"


def test_p008_an_empty_manifests_folder(registry: Registry) -> None:
    _start(registry)
    for name in ["models/alpha.yaml", "models/beta.yaml", "models/gamma.yaml", "rules/think.yaml"]:
        registry.fleet.delete(name)
    registry.fleet.commit("empty")
    _refused(registry, "P008")


def test_p009_deleting_most_of_the_fleet(registry: Registry) -> None:
    files = {f"models/m{i}.yaml": model_yaml(f"m{i}", state="retired") for i in range(10)}
    files["models/keep.yaml"] = model_yaml("keep")
    registry.fleet.commit("ten retired", files)
    assert registry.run("reconcile").code == 0
    registry.fleet.delete(*[f"models/m{i}.yaml" for i in range(7)])
    registry.fleet.commit("delete 60%")
    violation = _refused(registry, "P009")
    assert "removes 7 of 11" in str(violation["message"])


def test_p010_a_force_push_that_rewrites_the_applied_commit(registry: Registry) -> None:
    _start(registry)
    registry.fleet.commit("more", {"models/delta.yaml": model_yaml("delta")})
    assert registry.run("reconcile").code == 0
    registry.fleet.git("reset", "-q", "--hard", "HEAD~1")
    registry.fleet.commit("rewritten", {"models/epsilon.yaml": model_yaml("epsilon")})
    _refused(registry, "P010")


def test_force_applies_and_records_the_override(registry: Registry) -> None:
    _start(registry)
    registry.fleet.delete("models/gamma.yaml")
    revision = registry.fleet.commit("remove gamma without retiring")
    result = registry.run("reconcile", "--force")
    assert result.code == 0, result.err
    assert "AIModel/gamma" not in registry.live()
    forced = registry.sql(
        "SELECT event_type, forced, details FROM lifecycle_events WHERE object_id = 'gamma' "
        "ORDER BY id DESC"
    )[0]
    assert forced[0] == "model_removed"
    assert bool(forced[1]) is True
    details = forced[2] if isinstance(forced[2], dict) else json.loads(forced[2])
    assert details["forcedOver"] == ["P006"]
    row = registry.sql("SELECT forced FROM revisions WHERE revision = :r", r=revision)
    assert bool(row[0][0]) is True


def test_invalid_manifests_are_not_planned_and_not_forceable(registry: Registry) -> None:
    _start(registry)
    registry.fleet.commit("broken", {"models/beta.yaml": "meta: &x {}\n"})
    before = registry.content_hash()
    for command in (["plan"], ["reconcile"], ["reconcile", "--force"], ["apply", "--force"]):
        result = registry.run(*command)
        assert result.code == 1
        assert "manifests/models/beta.yaml:1: Y002" in result.err
        assert "nothing was planned" in result.err
    assert registry.content_hash() == before


def test_a_new_rule_nobody_can_serve_is_a_validation_error_not_a_safety_one(
    registry: Registry,
) -> None:
    _start(registry)
    registry.fleet.commit("rule", {"rules/draw.yaml": rule_yaml("draw", requires="[creativity]")})
    result = registry.run("plan")
    assert result.code == 1
    assert "R006 rule draw" in result.err
