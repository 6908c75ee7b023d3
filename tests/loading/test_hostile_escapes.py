"""NUL and bidirectional controls written as escapes are refused like the raw bytes (F005).

The byte screen (F005) reads the file's text; a double-quoted YAML string can spell
the same characters as escapes. A NUL in a string that passes the schema (a mock
model's ``reply``) reached the registry and PostgreSQL refused the JSON value, so
the reconcile cycle failed inside (found by the fuzz in ``test_fuzz.py``).
"""

from __future__ import annotations

import json
import os

import pytest

from reconciler.manifests import yamlsafe
from tests.conftest import Registry, model_yaml


@pytest.mark.parametrize(
    ("escape", "what"),
    [
        ("\\0", "a NUL byte"),
        ("\\x00", "a NUL byte"),
        ("\\u0000", "a NUL byte"),
        ("\\U00000000", "a NUL byte"),
        ("\\u202E", "the bidirectional control U+202E"),
        ("\\u2066", "the bidirectional control U+2066"),
        ("\\u061c", "the bidirectional control U+061C"),
    ],
)
def test_an_escaped_forbidden_character_is_f005_on_its_line(escape: str, what: str) -> None:
    for text in (f'a: 1\nb: "ok{escape}"\n', f'a: 1\n"k{escape}": x\n', f'a: 1\nb: ["{escape}"]\n'):
        with pytest.raises(yamlsafe.YamlRefused) as refused:
            yamlsafe.parse(text, max_depth=8)
        problem = refused.value.problem
        assert (problem.code, problem.line) == ("F005", 2)
        assert problem.message == f"contains {what}, written as an escape"


def test_other_escapes_and_single_quotes_stay_text() -> None:
    (doc,) = yamlsafe.parse("a: \"\\t\\x01\\u00e9\"\nb: '\\0'\n", max_depth=8)
    assert doc.value == {"a": "\t\x01\u00e9", "b": "\\0"}


def test_a_reply_with_an_escaped_nul_is_refused_before_the_registry(registry: Registry) -> None:
    registry.fleet.commit("nul", {"models/m.yaml": model_yaml("m", mock='{reply: "ok\\0"}')})
    result = registry.run("reconcile")
    assert result.code == 1
    assert "manifests/models/m.yaml:6: F005 contains a NUL byte, written as an escape" in result.err
    assert "internal error" not in result.err
    assert registry.live() == {}


def test_a_file_name_that_is_not_utf8_is_f004_in_validate_and_reconcile(
    registry: Registry,
) -> None:
    """git and the file system take any bytes in a name; the registry, JSON and terminals
    do not. Such a name reached the database and failed the apply inside."""
    models = registry.fleet.root / "manifests" / "models"
    models.mkdir(parents=True)
    (models / os.fsdecode(b"\xff\xfe.yaml")).write_text(model_yaml("m"), encoding="utf-8")
    registry.fleet.write({"models/a\nb.yaml": model_yaml("n"), "models/ok.yaml": model_yaml("o")})
    registry.fleet.commit("names")
    expected = (
        "manifests/models/\\xff\\xfe.yaml:1: F004 the file name is not valid UTF-8; rename it"
    )
    result = registry.run("reconcile")
    assert (result.code, "internal error" in result.err) == (1, False)
    assert expected in result.err
    status = json.loads(registry.run("status", "--json").out)
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["message"] == "1 manifest error(s); first: " + expected
    validated = registry.run("validate", str(registry.fleet.root / "manifests"), "--format", "json")
    assert [d["code"] for d in json.loads(validated.out)["diagnostics"]] == ["F004"]
