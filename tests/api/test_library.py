"""DESIGN section 9 in Python: MultiModelRegistry writes through git, RoutingEngine routes."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

import reconciler
from reconciler import CapabilityType, MultiModelRegistry, RoutingEngine, TaskRequest
from reconciler.gitops import authoring
from tests.conftest import GroveRunner, Registry


def test_the_registry_api_round_trip(
    registry: Registry, bare_fleet: Path, monkeypatch: pytest.MonkeyPatch, grove: GroveRunner
) -> None:
    monkeypatch.setenv("GROVE_REPO", str(bare_fleet))
    assert grove("reconcile").code == 0
    fleet = MultiModelRegistry.open(db=registry.url, repo=str(bare_fleet), author="sdk-user")
    try:
        model = {
            "meta": {"id": "sdk-model", "type": "AIModel", "version": "1"},
            "payload": {"name": "SDK", "provider": "mock", "capabilities": {"reasoning": 0.99}},
        }
        created = asyncio.run(fleet.register_model(model))
        assert (created.change, created.applied) == ("created", True)
        found = asyncio.run(fleet.discover_models([CapabilityType.REASONING]))
        assert found[0].id == "sdk-model"
        updated = asyncio.run(fleet.update_model("sdk-model", {"priority": 95}))
        assert updated.object is not None and updated.object.meta.version == "2"
        with pytest.raises(authoring.Refused):
            asyncio.run(fleet.remove_model("sdk-model"))
        removed = asyncio.run(fleet.remove_model("sdk-model", force=True))
        assert removed.change == "removed"
    finally:
        fleet.close()
    log = subprocess.run(
        ["git", "log", "--format=%an|%s", "-3"],
        cwd=bare_fleet,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert log == [
        "sdk-user|grove: remove AIModel sdk-model",
        "sdk-user|grove: update AIModel sdk-model (version 2)",
        "sdk-user|grove: register AIModel sdk-model (version 1)",
    ]

    engine = RoutingEngine.open(db=registry.url)
    try:
        decision = engine.get_routing_decision(
            TaskRequest(task_type="think", required_capability=CapabilityType.REASONING)
        )
        assert "priority match" in decision.reason
    finally:
        engine.close()
    assert set(reconciler.__all__) >= {
        "CapabilityType",
        "MultiModelRegistry",
        "RoutingEngine",
        "TaskRequest",
        "match_capabilities",
    }
