"""Numbers no value stands for: a diagnostic with file, line and code, never an exception.

Python refuses to convert an integer of more than 4,300 digits (ValueError), and
``1e400`` silently becomes infinity. Before Y009 one such integer anywhere in a
committed manifest crashed ``grove validate`` ("internal error") and the reconcile
loop. Every other scalar form that a YAML library could turn into an exception or
a surprise (hex, octal, sexagesimal, timestamps out of range, binary) must end as
a diagnostic too.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from reconciler.manifests import yamlsafe
from tests.conftest import GroveRunner, Registry, model_yaml, rule_yaml, write_tree

HUGE = "1" * 5000


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (f"a: {HUGE}\n", 1),
        (f"a: -{HUGE}\n", 1),
        (f"a: +{HUGE}\n", 1),
        (f"a: 1\nb: [1, {HUGE}]\n", 2),
        (f"a:\n  - x\n  - {HUGE}\n", 3),
        (f"{HUGE}: x\n", 1),
        (f"a: {{{HUGE}: x}}\n", 1),
        ("a: 9223372036854775808\n", 1),
        ("a: -9223372036854775808\n", 1),
        ("a: 1e400\n", 1),
        ("a: -1e400\n", 1),
        (f"a: {HUGE}.5\n", 1),
        ("a: ok\n---\nb: [1e999]\n", 3),
    ],
)
def test_numbers_without_a_value_are_refused_as_y009(text: str, line: int) -> None:
    with pytest.raises(yamlsafe.YamlRefused) as refused:
        yamlsafe.parse(text, max_depth=8)
    problem = refused.value.problem
    assert (problem.code, problem.line) == ("Y009", line)
    assert len(problem.message) < 300  # never the 5,000 digits


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775807", -(2**63 - 1)),
        ("0" * 5000 + "1", 1),  # leading zeros are not digits of the value
        ("-" + "0" * 5000, 0),
        ("1e-400", 0.0),
        ("1e308", 1e308),
        ("0x" + "f" * 5000, "0x" + "f" * 5000),  # hex, octal, sexagesimal: strings
        ("0o" + "7" * 5000, "0o" + "7" * 5000),
        ("1:" + "2" * 5000, "1:" + "2" * 5000),
        ("99999-01-01", "99999-01-01"),
    ],
)
def test_numbers_in_range_and_other_forms_resolve_without_raising(text: str, value: object) -> None:
    assert yamlsafe.resolve_plain(text) == value


def test_non_finite_numbers_written_as_such_are_numbers() -> None:
    assert math.isinf(yamlsafe.resolve_plain(".inf"))
    assert math.isnan(yamlsafe.resolve_plain(".NaN"))


@pytest.mark.parametrize("value", [HUGE, f"-{HUGE}", "1e400", "9223372036854775808"])
def test_the_writer_quotes_strings_that_read_as_unrepresentable_numbers(value: str) -> None:
    (doc,) = yamlsafe.parse(yamlsafe.dump([{"v": value, value: "k"}]), max_depth=4)
    assert doc.value == {"v": value, value: "k"}


# ---------------------------------------------------------------- through grove validate

INFINITE_PRICE = model_yaml("a", pricing="{inputPerMTok: 1e400, outputPerMTok: 1}")
RULE_WITH_HUGE_ITEM = rule_yaml("think", requires="[reasoning]", chain=f"[a, {HUGE}]")
CASES: dict[str, tuple[str, int, str]] = {
    "value": (model_yaml("a", priority=HUGE), 6, "Y009"),
    "negative": (model_yaml("a", timeoutMs=f"-{HUGE}"), 6, "Y009"),
    "key": (model_yaml("a", labels=f"{{{HUGE}: x}}"), 6, "Y009"),
    "list item": (model_yaml("a", fallbacks=f"[b, {HUGE}]"), 6, "Y009"),
    "routing rule": (RULE_WITH_HUGE_ITEM, 5, "Y009"),
    "in meta": (model_yaml("a").replace('version: "1"', f"version: {HUGE}"), 1, "Y009"),
    "infinite price": (INFINITE_PRICE, 6, "Y009"),
    "nan priority": (model_yaml("a", priority=".nan"), 6, "S003"),
    "inf score": (model_yaml("a", capabilities="{reasoning: .inf}"), 5, "S004"),
    "hex timeout": (model_yaml("a", timeoutMs="0x" + "f" * 5000), 6, "S003"),
    "sexagesimal timeout": (model_yaml("a", timeoutMs="1:" + "2" * 5000), 6, "S003"),
    "year zero": (model_yaml("a", lifecycle="{sunsetDate: 0000-01-01}"), 6, "S010"),
    "year 99999": (model_yaml("a", lifecycle="{sunsetDate: 99999-01-01}"), 6, "S010"),
    "binary": (model_yaml("a", name="!!binary aGVsbG8="), 3, "Y004"),
    "timestamp tag": (model_yaml("a", lifecycle="{sunsetDate: !!timestamp 0000-01-01}"), 6, "Y004"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_grove_validate_reports_the_number_with_file_line_and_code(
    case: str, tmp_path: Path, grove: GroveRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, line, code = CASES[case]
    write_tree(tmp_path, {"bad.yaml": text})
    monkeypatch.chdir(tmp_path)
    for fmt in ("text", "json", "github"):
        result = grove("validate", "bad.yaml", "--format", fmt)
        assert result.code == 1, result.err
        assert "internal error" not in result.out + result.err
        assert HUGE not in result.out + result.err
    result = grove("validate", "bad.yaml")
    assert f"bad.yaml:{line}: {code} " in result.err


def test_grove_reconcile_refuses_the_commit_and_names_the_line(registry: Registry) -> None:
    registry.fleet.commit("good", {"models/a.yaml": model_yaml("a")})
    assert registry.run("reconcile").code == 0
    registry.fleet.commit("huge", {"models/b.yaml": model_yaml("b", priority=HUGE)})
    result = registry.run("reconcile")
    assert result.code == 1
    assert "internal error" not in result.err
    assert "manifests/models/b.yaml:6: Y009 number 111111111111..." in result.err
    assert set(registry.live()) == {"AIModel/a"}
