"""Issue 13: a file name or a YAML key cannot print a line of its own (a forged
``::error`` workflow command, an ANSI sequence, reordered text) in any output of
``grove validate`` or ``grove diff``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.base import diagnostics
from tests.cli.test_validate import GITHUB_LINE
from tests.conftest import FleetRepo, GroveRunner, model_yaml, write_tree

FORGED_NAME = "ok\n::error file=x.yaml,line=1::forged by a file name\r\u2028.yaml"
FORGED_KEY = '"evil\\n::error file=y.yaml,line=2::forged by a key\\e[2J\\u2028\\x9b"'
HOSTILE = {
    FORGED_NAME: model_yaml("named", unknownField="1"),
    "keyed.yaml": model_yaml("keyed", **{FORGED_KEY: "1"}),
}
INVISIBLE = ("\x1b", "\u202e", "\x9b", "\u2028", "\r")


def _assert_one_line_each(output: str, starts: tuple[str, ...]) -> list[str]:
    lines = output.split("\n")[:-1]
    assert output.endswith("\n")
    for line in lines:
        assert line.startswith(starts), f"a line of its own: {line!r}"
        assert not any(char in line for char in INVISIBLE), repr(line)
    return lines


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "fleet", HOSTILE)


def test_text_shows_names_and_keys_escaped_on_their_own_line(
    grove: GroveRunner, hostile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(hostile.parent)
    result = grove("validate", "fleet")
    assert result.code == 1
    errors = _assert_one_line_each(result.err, ("fleet/keyed.yaml:", "fleet/ok\\n::error"))
    assert len(errors) == 2
    assert any(line.startswith("fleet/ok\\n::error file=x.yaml,line=1::forged") for line in errors)
    keyed = next(line for line in errors if line.startswith("fleet/keyed.yaml:"))
    assert "evil\\n::error file=y.yaml,line=2::forged by a key\\x1b[2J\\u2028\\x9b" in keyed
    _assert_one_line_each(result.out, ("checked ",))


def test_github_annotations_cannot_be_forged(
    grove: GroveRunner, hostile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(hostile.parent)
    result = grove("validate", "fleet", "--format", "github")
    assert result.code == 1
    lines = _assert_one_line_each(result.out, ("::error file=fleet/", "checked "))
    annotations = [line for line in lines if line.startswith("::")]
    assert len(annotations) == 2
    assert all(GITHUB_LINE.match(line) for line in annotations), annotations
    named = next(line for line in annotations if "forged by a file name" in line)
    # the name is one property value: its ':' and ',' escaped, its newline shown as \n
    assert named.startswith("::error file=fleet/ok\\n%3A%3Aerror file=x.yaml%2Cline=1%3A%3A")


def test_json_carries_the_exact_names_in_ascii(
    grove: GroveRunner, hostile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(hostile.parent)
    result = grove("validate", "fleet", "--format", "json")
    assert result.out.isascii()
    found = json.loads(result.out)["diagnostics"]
    assert {d["file"] for d in found} == {"fleet/keyed.yaml", f"fleet/{FORGED_NAME}"}


def test_grove_diff_escapes_names_keys_and_values(
    fleet: FleetRepo, grove: GroveRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.commit("fleet", {"models/alpha.yaml": model_yaml("alpha")})
    fleet.git("checkout", "-q", "-b", "hostile")
    fleet.commit("hostile", {f"models/{name}": text for name, text in HOSTILE.items()})
    monkeypatch.chdir(fleet.root)
    refused = grove("diff", "main", "hostile")
    assert refused.code == 1
    _assert_one_line_each(refused.err, ("manifests/", "grove: "))
    fleet.git("checkout", "-q", "main")
    fleet.git("checkout", "-q", "-b", "renamed")
    renamed = model_yaml("alpha", mock='{reply: "A\\u2028::error file=z::forged\\x9b\\x7f\\e"}')
    fleet.commit("rename", {"models/alpha.yaml": renamed.replace('"1"', '"2"')})
    for fmt in ("text", "markdown"):
        diff = grove("diff", "main", "renamed", "--format", fmt)
        assert diff.code == 2, diff.err
        assert not any(line.startswith("::") for line in diff.out.splitlines())
        assert not any(char in diff.out for char in (*INVISIBLE, "\x7f"))
        assert '"A\\u2028::error file=z::forged\\x9b\\x7f\\u001b"' in diff.out


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, é and 😀", "plain text, é and 😀"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x00\x1b[31m\x7f", "\\x00\\x1b[31m\\x7f"),
        ("\x85\x9b", "\\x85\\x9b"),  # C1: NEL and the 8-bit CSI
        ("\u2028\u2029", "\\u2028\\u2029"),
        ("\u202a\u202b\u202c\u202d\u202e", "\\u202a\\u202b\\u202c\\u202d\\u202e"),
        (
            "\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
            "\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c",
        ),
        ("\u200b\ufeff", "\\u200b\\ufeff"),  # invisible
        ("bad\udcff.yaml", "bad\\xff.yaml"),  # an undecodable byte of a file name
        ("\U000e0001", "\\U000e0001"),
    ],
)
def test_printable_escapes_every_control_character(raw: str, shown: str) -> None:
    assert diagnostics.printable(raw) == shown
