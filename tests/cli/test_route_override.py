"""``grove route`` reports a ``ROUTING_OVERRIDE_MODEL`` it ignores (one warning line on
stderr, and in the decision's reason) and takes ``-o text|json|yaml`` (``--json`` kept)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from tests.conftest import model_yaml
from tests.reconciling.conftest import Registry, small_fleet


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def fleet(registry: Registry) -> Registry:
    files = small_fleet()
    files["models/gamma.yaml"] = model_yaml("gamma", priority="10", state="disabled")
    registry.fleet.commit("fleet", files)
    assert registry.run("reconcile").code == 0
    return registry


@pytest.mark.parametrize(
    ("name", "why"),
    [("alhpa", "no model alhpa in the registry"), ("gamma", "gamma is disabled")],
)
def test_an_override_that_cannot_apply_is_a_warning_and_part_of_the_reason(
    fleet: Registry, monkeypatch: pytest.MonkeyPatch, name: str, why: str
) -> None:
    monkeypatch.setenv("ROUTING_OVERRIDE_MODEL", name)
    ignored = f"ROUTING_OVERRIDE_MODEL={name} is ignored: {why}; routing normally"
    done = fleet.run("route", "--task", "think")
    assert done.code == 0
    assert done.err == f"grove: warning: override-ignored: {ignored}\n"
    first = done.out.splitlines()[0]
    assert first.startswith("priority match: alpha for rule think") and first.endswith(ignored)
    decision = json.loads(fleet.run("route", "--task", "think", "-o", "json").out)
    assert decision["modelId"] == "alpha" and decision["reason"].endswith(f"; {ignored}")


def test_an_override_that_applies_is_said_too(
    fleet: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTING_OVERRIDE_MODEL", "beta")
    done = fleet.run("route", "--task", "think")
    assert done.out.startswith("override: ROUTING_OVERRIDE_MODEL=beta\n")
    assert done.err == (
        "grove: warning: override-active: "
        "ROUTING_OVERRIDE_MODEL=beta sends every request to beta, no failover\n"
    )


def test_route_prints_json_yaml_or_text_and_leaves_logging_as_it_was(fleet: Registry) -> None:
    root = logging.getLogger("grove")
    before = (list(root.handlers), root.level, root.propagate)
    as_json = fleet.run("route", "--task", "think", "--json")
    assert as_json.code == 0 and as_json.err == ""
    assert json.loads(as_json.out) == json.loads(
        fleet.run("route", "--task", "think", "-o", "json").out
    )
    assert yaml.safe_load(fleet.run("route", "--task", "think", "-o", "yaml").out) == json.loads(
        as_json.out
    )
    assert fleet.run("route", "--task", "think").out.startswith("priority match: alpha")
    assert (list(root.handlers), root.level, root.propagate) == before
