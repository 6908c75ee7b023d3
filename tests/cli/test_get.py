"""``grove get models|rules|versions ID|events|rollouts`` (issue 14): what is live in
the registry, as a table, JSON or YAML; read-only. A real git repository and registry
reconciled from it (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import GroveRunner, model_yaml
from tests.reconciling.conftest import Registry, small_fleet

SUBCOMMANDS = [
    ["models"],
    ["models", "beta"],
    ["rules"],
    ["rules", "think"],
    ["versions", "beta"],
    ["events"],
    ["rollouts"],
]


UNKNOWN = [
    ["models", "nope"],
    ["rules", "nope"],
    ["versions", "nope"],
    ["rollouts", "canary-1"],
    ["models", "alpha", "--state", "enabled"],  # filters are for a list
]


def _lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


@pytest.mark.slow
def test_every_subcommand_as_text_json_and_yaml(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    registry.fleet.commit(
        "beta v2, gamma off",
        {
            "models/beta.yaml": model_yaml("beta", priority="55").replace('"1"', '"2"'),
            "models/gamma.yaml": model_yaml("gamma", priority="10", state="disabled"),
        },
    )
    assert registry.run("reconcile").code == 0
    registry.sql(
        "INSERT INTO quarantined_versions (object_kind, object_id, version, reason, created_at)"
        " VALUES ('AIModel', 'beta', '1', 'test', CURRENT_TIMESTAMP)"
    )
    head = registry.fleet.head()

    models = registry.run("get", "models")
    assert models.code == 0 and models.err == ""
    table = _lines(models.out)
    assert table[0] == ["ID", "VERSION", "STATE", "PROVIDER", "PRIORITY", "CAPABILITIES", "UPDATED"]
    assert [row[:5] for row in table[1:]] == [
        ["alpha", "1", "enabled", "mock", "90"],
        ["beta", "2", "enabled", "mock", "55"],
        ["gamma", "1", "disabled", "mock", "10"],
    ]
    assert table[1][5] == "reasoning=0.9,speed=0.8" and table[1][6].endswith("Z")
    listed = json.loads(registry.run("get", "models", "-o", "json").out)
    assert [(m["id"], m["state"]) for m in listed] == [
        ("alpha", "enabled"),
        ("beta", "enabled"),
        ("gamma", "disabled"),
    ]
    assert yaml.safe_load(registry.run("get", "models", "-o", "yaml").out) == listed
    assert (
        registry.run("get", "models", "--json").out
        == registry.run("get", "models", "-o", "json").out
    )
    disabled = registry.run("get", "models", "--state", "disabled", "--capability", "speed")
    assert [row[0] for row in _lines(disabled.out)[1:]] == ["gamma"]
    none = registry.run("get", "models", "--provider", "openai")
    assert (none.code, none.out) == (0, "no models match the filters\n")

    one = registry.run("get", "models", "beta")
    assert [row[:3] for row in _lines(one.out)] == [
        ["ID", "VERSION", "STATE"],
        ["beta", "2", "enabled"],
    ]
    detail = json.loads(registry.run("get", "models", "beta", "-o", "json").out)
    assert detail["manifest"]["payload"]["priority"] == 55 and detail["version"] == "2"

    rules = _lines(registry.run("get", "rules").out)
    assert rules[0][:5] == ["ID", "TASK", "STRATEGY", "REQUIRES", "CHAIN"]
    assert rules[1][:7] == ["think", "think", "priority", "reasoning", "(any)", "yes", "1"]
    rule = json.loads(registry.run("get", "rules", "-o", "json").out)
    assert [(r["id"], r["taskType"], r["enabled"]) for r in rule] == [("think", "think", True)]
    assert json.loads(registry.run("get", "rules", "think", "-o", "json").out) == rule[0]

    versions = registry.run("get", "versions", "beta")
    assert _lines(versions.out)[:2] == [
        ["AIModel/beta"],
        ["VERSION", "REVISION", "APPLIED", "STATUS"],
    ]
    assert [(row[0], row[3:5]) for row in _lines(versions.out)[2:]] == [
        ("1", ["quarantined"]),
        ("2", ["live", "since"]),
    ]
    history = json.loads(registry.run("get", "versions", "beta", "-o", "json").out)
    assert (history["kind"], history["id"]) == ("AIModel", "beta")
    assert [(v["version"], v["live"], v["quarantined"]) for v in history["versions"]] == [
        ("1", False, True),
        ("2", True, False),
    ]
    assert history["versions"][1]["revision"] == head
    assert history["versions"][1]["liveSince"] == history["versions"][1]["appliedAt"]

    events = json.loads(registry.run("get", "events", "--limit", "2", "-o", "json").out)
    assert {(e["type"], e["objectId"]) for e in events} == {  # the newest: one apply's
        ("model_disabled", "gamma"),
        ("model_versioned", "beta"),
    }
    shown = _lines(registry.run("get", "events", "--limit", "2").out)
    assert (
        shown[0] == ["TIME", "EVENT", "OBJECT", "VERSION", "REVISION", "ACTOR"] and len(shown) == 3
    )
    assert ["AIModel/beta", "1", "->", "2", head[:12]] == next(
        row[2:7] for row in shown if row[1] == "model_versioned"
    )

    rollouts = registry.run("get", "rollouts")
    assert rollouts.code == 0 and rollouts.out.startswith("no rollouts: ")
    assert registry.run("get", "rollouts", "-o", "json").out == "[]\n"

    for args in UNKNOWN:
        done = registry.run("get", *args, "-o", "json")
        assert (done.code, done.out) == (1, ""), args
        assert done.err.startswith("grove: ") and done.err.count("\n") == 1, args


def test_get_in_an_empty_folder_creates_nothing(
    grove: GroveRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    expected = grove("status").err
    assert "there is no registry database" in expected
    for args in SUBCOMMANDS:
        done = grove("get", *args)
        assert (done.code, done.out, done.err) == (1, "", expected), args
        assert grove("get", *args, "--db", "sqlite:///x.db", "-o", "json").code == 1
    assert list(tmp_path.iterdir()) == []
