"""The hardened YAML reader: core-schema scalars, lines, refusals, and the writer."""

from __future__ import annotations

import math

import pytest

from reconciler.manifests import yamlsafe


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("~", None),
        ("null", None),
        ("", None),
        ("true", True),
        ("False", False),
        ("yes", "yes"),
        ("on", "on"),
        ("NO", "NO"),
        ("42", 42),
        ("-7", -7),
        ("0x1f", "0x1f"),
        ("0o17", "0o17"),
        ("1_000", "1_000"),
        ("1.10", 1.1),
        ("1e5", 100000.0),
        (".5", 0.5),
        ("-.inf", -math.inf),
        ("2027-06-01", "2027-06-01"),
        ("12:30", "12:30"),
        ("claude-sonnet", "claude-sonnet"),
    ],
)
def test_plain_scalars_follow_the_yaml_1_2_core_schema(text: str, value: object) -> None:
    assert yamlsafe.resolve_plain(text) == value
    assert type(yamlsafe.resolve_plain(text)) is type(value)


def test_nan_resolves_to_nan() -> None:
    assert math.isnan(yamlsafe.resolve_plain(".nan"))


def test_quoted_and_block_scalars_stay_strings() -> None:
    (doc,) = yamlsafe.parse("a: \"1\"\nb: 'true'\nc: |\n  3\nd: !!str 4\n", max_depth=8)
    assert doc.value == {"a": "1", "b": "true", "c": "3\n", "d": "4"}


def test_every_key_and_item_has_its_line() -> None:
    text = "meta:\n  id: a\npayload:\n  fallbacks:\n    - b\n    - c\n  list: [x, y]\n"
    (doc,) = yamlsafe.parse(text, max_depth=8)
    assert doc.lines[("meta", "id")] == 2
    assert doc.lines[("payload", "fallbacks", 1)] == 6
    assert doc.lines[("payload", "list", 0)] == 7
    assert doc.line_of(("payload", "fallbacks", 1, "deeper")) == 6
    assert doc.line_of(("nowhere",)) == 1


def test_source_text_of_numbers_is_kept_for_messages() -> None:
    (doc,) = yamlsafe.parse("version: 1.10\n", max_depth=8)
    assert doc.value == {"version": 1.1}
    assert doc.texts[("version",)] == "1.10"


def test_several_documents_have_their_own_start_lines() -> None:
    docs = yamlsafe.parse("a: 1\n---\nb: 2\n---\nc: 3\n", max_depth=8)
    assert [d.value for d in docs] == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert [d.index for d in docs] == [0, 1, 2]
    assert docs[2].line_of(("c",)) == 5


@pytest.mark.parametrize(
    ("text", "code", "line"),
    [
        ("a: &x 1\n", "Y002", 1),
        ("a: 1\nb: *x\n", "Y002", 2),
        ("a: 1\nb: 2\na: 3\n", "Y003", 3),
        ("a: !!set {x}\n", "Y004", 1),
        ("a: !!timestamp 2020-01-01\n", "Y004", 1),
        ("a: [[[[1]]]]\n", "Y005", 1),
        ("1: x\n", "Y008", 1),
        ("null: x\n", "Y008", 1),
        ("a: b: c\n", "Y001", 1),
    ],
)
def test_refusals_name_code_and_line(text: str, code: str, line: int) -> None:
    with pytest.raises(yamlsafe.YamlRefused) as refused:
        yamlsafe.parse(text, max_depth=4)
    assert (refused.value.problem.code, refused.value.problem.line) == (code, line)


def test_duplicate_key_message_names_both_lines() -> None:
    with pytest.raises(yamlsafe.YamlRefused) as refused:
        yamlsafe.parse("a: 1\nb: 2\na: 3\n", max_depth=4)
    assert "lines 1 and 3" in refused.value.problem.message


def test_the_same_key_in_different_mappings_is_fine() -> None:
    (doc,) = yamlsafe.parse("a: {x: 1}\nb: {x: 2}\n", max_depth=4)
    assert doc.value == {"a": {"x": 1}, "b": {"x": 2}}


@pytest.mark.parametrize(
    "value", ["yes", "1e5", "0o17", "null", "", "true", "12", "-.inf", "x: y", "- a", "#c", "1.10"]
)
def test_writer_quotes_strings_the_reader_would_retype(value: str) -> None:
    (doc,) = yamlsafe.parse(yamlsafe.dump([{"v": value}]), max_depth=4)
    assert doc.value == {"v": value}


def test_writer_separates_several_documents() -> None:
    text = yamlsafe.dump([{"a": 1}, {"b": [1, "2"]}])
    assert [d.value for d in yamlsafe.parse(text, max_depth=4)] == [{"a": 1}, {"b": [1, "2"]}]


def test_iter_scalars_walks_every_leaf() -> None:
    leaves = dict(yamlsafe.iter_scalars({"a": [1, {"b": "c"}], "d": None}))
    assert leaves == {("a", 0): 1, ("a", 1, "b"): "c", ("d",): None}
