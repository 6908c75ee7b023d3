"""``grove status`` exits non-zero unless Synced and Healthy, as flux and argocd checks
do (docs/reconciling.md's exit-code table): 0 Synced and Healthy, 3 not synced, 4
Degraded, 1 when no status can be read. ``-o json`` prints the same document with
the same code. A real git repository and registry (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import GroveRunner, model_yaml
from tests.reconciling.conftest import Registry, small_fleet
from tests.reconciling.test_flows import _drift as drift


def _codes(registry: Registry) -> tuple[int, int, dict[str, object]]:
    text = registry.run("status")
    as_json = registry.run("status", "-o", "json")
    return text.code, as_json.code, json.loads(as_json.out)


def test_synced_and_healthy_is_zero(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("apply").code == 0
    text, as_json, status = _codes(registry)
    assert (text, as_json) == (0, 0)
    assert (status["sync"], status["health"]) == ("Synced", "Healthy")


def test_changes_not_yet_applied_are_three(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("apply").code == 0
    registry.fleet.commit("bump", {"models/beta.yaml": model_yaml("beta", priority="51")})
    text, as_json, status = _codes(registry)
    assert (text, as_json) == (3, 3)
    assert status["sync"] == "OutOfSync"


def test_nothing_applied_yet_is_three(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert _codes(registry)[:2] == (3, 3)


def test_stalled_on_an_invalid_head_is_four(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("apply").code == 0
    registry.fleet.commit("break", {"models/beta.yaml": model_yaml("beta", priority='"x"')})
    assert registry.run("reconcile").code == 1
    text, as_json, status = _codes(registry)
    assert (text, as_json) == (4, 4)
    assert status["health"] == "Degraded"


def test_drift_is_four(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("apply").code == 0
    drift(registry, "beta", priority=999)
    text, _, status = _codes(registry)
    assert text == 4 and status["drifted"] == ["AIModel/beta"]


def test_no_registry_is_one(grove: GroveRunner, tmp_path: Path) -> None:
    done = grove("status", "--db", f"sqlite:///{tmp_path / 'missing.db'}", "--repo", str(tmp_path))
    assert done.code == 1 and done.err.startswith("grove: ")
    assert not (tmp_path / "missing.db").exists()


def test_output_spellings_are_synonyms(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("apply").code == 0
    shapes = set()
    for option in (["-o", "json"], ["--output", "json"], ["--format", "json"], ["--json"]):
        done = registry.run("status", *option)
        assert done.code == 0
        shapes.add(tuple(json.loads(done.out)))
    assert shapes == {
        (
            "sync",
            "health",
            "conditions",
            "desiredRevision",
            "lastAppliedRevision",
            "lastAttemptedRevision",
            "stateSerial",
            "objects",
            "pendingChanges",
            "drifted",
            "suspended",
            "lastError",
            "rollouts",
        )
    }
