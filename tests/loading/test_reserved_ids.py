"""Issue 13: an id that is a word of the API's or console's paths is refused at
validation (S013), so ``PATCH /api/models/health`` can never edit a model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.manifests import kinds as manifests
from tests.conftest import GroveRunner, model_yaml, rule_yaml, write_tree


@pytest.mark.parametrize("word", sorted(manifests.RESERVED_IDS))
@pytest.mark.parametrize("make", [model_yaml, rule_yaml], ids=["AIModel", "RoutingRule"])
def test_a_reserved_id_is_refused_with_file_line_and_code(
    grove: GroveRunner, tmp_path: Path, word: str, make: Callable[[str], str]
) -> None:
    write_tree(tmp_path, {"fleet/reserved.yaml": make(word)})
    result = grove("validate", str(tmp_path / "fleet"), "--format", "json")
    assert result.code == 1
    found = json.loads(result.out)["diagnostics"]
    assert [(d["code"], d["name"], d["line"], d["path"]) for d in found] == [
        ("S013", "reserved-id", 1, "meta.id")
    ]
    assert f"id '{word}' is reserved" in found[0]["message"]


@pytest.mark.parametrize("word", ["health-check", "new-model", "registered", "discovery", "news"])
def test_ids_that_only_contain_a_reserved_word_pass(
    grove: GroveRunner, tmp_path: Path, word: str
) -> None:
    write_tree(tmp_path, {"fleet/m.yaml": model_yaml(word)})
    assert grove("validate", str(tmp_path / "fleet")).code == 0


def test_the_json_schema_tells_editors_too() -> None:
    schema = manifests.AIModel.model_json_schema()
    meta = schema["$defs"][schema["properties"]["meta"]["$ref"].rsplit("/", 1)[1]]
    assert meta["properties"]["id"]["not"] == {"enum": sorted(manifests.RESERVED_IDS)}
