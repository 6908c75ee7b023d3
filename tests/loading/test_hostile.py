"""The hostile corpus: every file under hostile/ is refused with the codes and lines it marks.

A case marks each expected error with a trailing ``# expect: CODE`` comment on
the line the error must name; files that cannot carry a comment (an empty
file) are listed in UNMARKED. Generated cases (huge, deep, binary, links) are
built in a temporary folder. Every case runs through the real CLI, and stderr
must hold nothing but well-formed error lines.
"""

from __future__ import annotations

import os
import re
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.base import settings
from reconciler.gitops import validating
from tests.conftest import GroveRunner, model_yaml, write_tree

HOSTILE = Path(__file__).parent / "hostile"
MARK = re.compile(r"#\s*expect:\s*([A-Z]\d{3})")
ERROR_LINE = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+): (?P<code>[A-Z]\d{3}) (?P<msg>.+)$")
UNMARKED: dict[str, set[tuple[str, int]]] = {"empty.yaml": {("Y006", 1)}}


def _expected(case: Path) -> set[tuple[str, str, int]]:
    """(file, code, line) for every mark in the case (a file or a folder of files)."""
    files = sorted(case.rglob("*.yaml")) if case.is_dir() else [case]
    found: set[tuple[str, str, int]] = set()
    for file in files:
        name = file.relative_to(HOSTILE).as_posix()
        for code, line in UNMARKED.get(name, set()):
            found.add((name, code, line))
        text = file.read_bytes().decode("utf-8", errors="replace")
        for number, line_text in enumerate(text.splitlines(), start=1):
            for code in MARK.findall(line_text):
                found.add((name, code, number))
    return found


def _errors(stderr: str) -> set[tuple[str, str, int]]:
    found: set[tuple[str, str, int]] = set()
    for line in stderr.splitlines():
        match = ERROR_LINE.match(line)
        assert match, f"stderr holds something other than an error line: {line!r}"
        found.add((match["file"], match["code"], int(match["line"])))
    return found


STATIC_CASES = sorted(p.name for p in HOSTILE.iterdir() if p.suffix == ".yaml" or p.is_dir())


def test_corpus_is_large_and_every_case_is_marked() -> None:
    assert len(STATIC_CASES) >= 40
    for name in STATIC_CASES:
        assert _expected(HOSTILE / name), f"{name} marks no expected error"


@pytest.mark.parametrize("case", STATIC_CASES)
def test_static_case_is_refused_with_its_codes_and_lines(
    case: str, grove: GroveRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(HOSTILE)
    result = grove("validate", case)
    assert result.code == 1, result.out + result.err
    assert _errors(result.err) == _expected(HOSTILE / case)
    assert "error(s)" in result.out


# ---------------------------------------------------------------- generated cases

Builder = Callable[[Path], tuple[str, set[tuple[str, int]]]]


def _deep_flow(tmp: Path) -> tuple[str, set[tuple[str, int]]]:
    write_tree(tmp, {"deep.yaml": "meta: " + "[" * 10_000 + "]" * 10_000 + "\n"})
    return "deep.yaml", {("Y005", 1)}


def _deep_mapping(tmp: Path) -> tuple[str, set[tuple[str, int]]]:
    write_tree(tmp, {"deep.yaml": "a: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n"})
    return "deep.yaml", {("Y005", 1)}


def _fifty_megabytes(tmp: Path) -> tuple[str, set[tuple[str, int]]]:
    with (tmp / "huge.yaml").open("wb") as handle:
        handle.write(b"meta: {id: m}\n")
        handle.write(b"x" * (50 * 1024 * 1024))
    return "huge.yaml", {("F001", 1)}


def _invalid_utf8(tmp: Path) -> tuple[str, set[tuple[str, int]]]:
    write_tree(tmp, {"latin1.yaml": b"meta: {id: m}\npayload:\n  name: caf\xe9\n"})
    return "latin1.yaml", {("F004", 3)}


def _utf16(tmp: Path) -> tuple[str, set[tuple[str, int]]]:
    write_tree(tmp, {"utf16.yaml": model_yaml("m").encode("utf-16")})
    return "utf16.yaml", {("F004", 1)}


def _nul_byte(tmp: Path) -> tuple[str, set[tuple[str, int]]]:
    write_tree(tmp, {"nul.yaml": model_yaml("m").replace("Name: M", "Name: M") + "x: \x00\n"})
    return "nul.yaml", {("F005", 6)}


def _bidi_override(tmp: Path) -> tuple[str, set[tuple[str, int]]]:
    text = model_yaml("m", name='"admin\u202e\u2066 // trusted"')
    write_tree(tmp, {"bidi.yaml": text})
    return "bidi.yaml", {("F005", 3)}


def _symlink_outside(tmp: Path) -> tuple[str, set[tuple[str, int]]]:
    outside = tmp.parent / f"{tmp.name}-outside"
    write_tree(outside, {"secret.yaml": model_yaml("stolen")})
    (tmp / "fleet").mkdir()
    write_tree(tmp / "fleet", {"ok.yaml": model_yaml("ok")})
    (tmp / "fleet" / "link.yaml").symlink_to(outside / "secret.yaml")
    return "fleet", {("F003", 1)}


def _symlinked_folder(tmp: Path) -> tuple[str, set[tuple[str, int]]]:
    write_tree(tmp / "elsewhere", {"m.yaml": model_yaml("m")})
    (tmp / "fleet").mkdir()
    (tmp / "fleet" / "models").symlink_to(tmp / "elsewhere", target_is_directory=True)
    return "fleet", {("F003", 1)}


def _fifo(tmp: Path) -> tuple[str, set[tuple[str, int]]]:
    (tmp / "fleet").mkdir()
    os.mkfifo(tmp / "fleet" / "pipe.yaml")
    return "fleet", {("F008", 1)}


def _nested_repository(tmp: Path) -> tuple[str, set[tuple[str, int]]]:
    write_tree(tmp / "fleet", {"ok.yaml": model_yaml("ok"), "vendored/m.yaml": model_yaml("v")})
    (tmp / "fleet" / "vendored" / ".git").write_text("gitdir: ../../.git/modules/vendored\n")
    return "fleet", {("F009", 1)}


def _missing_path(tmp: Path) -> tuple[str, set[tuple[str, int]]]:
    return "no-such-folder", {("F007", 1)}


GENERATED: dict[str, Builder] = {
    "nesting_10000_deep_flow_sequence": _deep_flow,
    "nesting_10000_deep_flow_mapping": _deep_mapping,
    "file_of_50_megabytes": _fifty_megabytes,
    "invalid_utf8": _invalid_utf8,
    "utf16_with_bom": _utf16,
    "nul_byte": _nul_byte,
    "bidirectional_override": _bidi_override,
    "symlink_to_file_outside": _symlink_outside,
    "symlinked_folder": _symlinked_folder,
    "fifo": _fifo,
    "missing_path": _missing_path,
    "submodule_folder": _nested_repository,
}


@pytest.mark.parametrize("case", sorted(GENERATED))
def test_generated_case_is_refused(
    case: str, tmp_path: Path, grove: GroveRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, marks = GENERATED[case](tmp_path)
    monkeypatch.chdir(tmp_path)
    result = grove("validate", target)
    assert result.code == 1
    found = {(code, line) for _, code, line in _errors(result.err)}
    assert found == marks, result.err


def test_symlink_target_is_never_read(tmp_path: Path, grove: GroveRunner) -> None:
    _symlink_outside(tmp_path)
    result = grove("validate", "--list", str(tmp_path / "fleet"), "--format", "json")
    assert "stolen" not in result.out
    assert '"id": "ok"' in result.out


def test_alias_bomb_is_refused_before_it_expands(capsys: pytest.CaptureFixture[str]) -> None:
    """A billion-laughs file is refused at its first anchor with bounded memory.

    The time is printed for the record; the benchmark, not this test, judges speed.
    """
    tracemalloc.start()
    started = time.perf_counter()
    report = validating.validate_paths([str(HOSTILE / "alias_bomb.yaml")], settings.load())
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [(d.code, d.line) for d in report.errors] == [("Y002", 1)]
    assert peak < 20 * 1024 * 1024
    with capsys.disabled():
        print(f"\nalias bomb refused in {elapsed * 1000:.2f} ms, peak {peak / 1024:.0f} KiB")


def test_fifty_megabyte_file_is_never_read_into_memory(tmp_path: Path) -> None:
    _fifty_megabytes(tmp_path)
    tracemalloc.start()
    report = validating.validate_paths([str(tmp_path / "huge.yaml")], settings.load())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [d.code for d in report.errors] == ["F001"]
    assert peak < 5 * 1024 * 1024


def test_tree_over_the_byte_cap_is_refused(
    tmp_path: Path, grove: GroveRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tree(tmp_path, {f"m{i}.yaml": model_yaml(f"m{i}") for i in range(5)})
    monkeypatch.setenv("GROVE_MAX_TREE_BYTES", "300")
    result = grove("validate", str(tmp_path))
    assert result.code == 1
    assert "F002" in result.err
    assert "were not read" in result.err


def test_too_many_files_is_refused(
    tmp_path: Path, grove: GroveRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tree(tmp_path, {f"m{i}.yaml": model_yaml(f"m{i}") for i in range(3)})
    monkeypatch.setenv("GROVE_MAX_FILES", "2")
    result = grove("validate", str(tmp_path))
    assert result.code == 1
    assert "F002 more than 2 manifest files" in result.err


def test_literal_secret_is_never_echoed(
    grove: GroveRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(HOSTILE)
    for case in sorted(HOSTILE.glob("secret_*.yaml")):
        text = case.read_text(encoding="utf-8")
        secret_line = next(line for line in text.splitlines() if "expect: K001" in line)
        key, _, rest = secret_line.partition(":")
        value = key.strip() if key.strip().startswith("sk-") else rest.split("#")[0].strip()
        value = value.strip("{}").split(":")[-1].strip().strip('"')
        assert len(value) > 20
        for fmt in ("text", "json", "github"):
            result = grove("validate", case.name, "--format", fmt)
            assert result.code == 1
            assert value not in result.out + result.err
            assert value[:12] not in result.out + result.err
