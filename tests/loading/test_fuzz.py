"""Hostile YAML, generated: ``grove validate`` and a reconcile cycle never fail inside.

Two generators. Structured: a valid model or rule whose fields, one or a few at a
time, are replaced by hostile values (numbers no value stands for, wrong types,
nesting near the cap, look-alike and control characters, NULs written as escapes,
tags, anchors and aliases, duplicate keys, very long strings, odd keys), written
as YAML text by hand so nothing quotes them. Raw: the text of a valid manifest
with characters inserted, deleted, replaced and lines repeated or cut.

Whatever comes out, ``grove validate`` (every format, in this process, with
GROVE_DEBUG=1 so an internal error raises instead of printing one line) exits 0
or 1, and every problem is a diagnostic with the file and a known rule code. One
reconcile cycle of the real loop, against a real git repository and a real
registry database made once per test, never ends in an unexpected error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import cli
from reconciler.base import diagnostics
from reconciler.base import settings as grove_settings
from reconciler.gitops import watching
from tests.conftest import Registry, model_yaml, rule_yaml


@dataclasses.dataclass(frozen=True)
class Raw:
    """YAML text written as it is (a scalar, a flow collection, a tagged or anchored node)."""

    text: str


def _quoted(value: str) -> Raw:
    return Raw(json.dumps(value))  # a JSON string is a YAML double-quoted scalar


def _skeleton_model(ident: str) -> dict[Raw, Any]:
    fields: dict[str, Any] = {
        "meta": {"id": ident, "type": "AIModel", "version": _quoted("1"), "labels": {"team": "a"}},
        "payload": {
            "name": "Fuzz",
            "provider": "mock",
            "capabilities": {"reasoning": Raw("0.9"), "speed": Raw("0.5")},
            "priority": Raw("50"),
            "timeoutMs": Raw("1000"),
            "maxRetries": Raw("1"),
            "pricing": {"inputPerMTok": Raw("1.5"), "outputPerMTok": Raw("2")},
            "lifecycle": {"deprecationDate": "2098-01-01", "sunsetDate": "2099-01-01"},
            "mock": {"latencyMs": Raw("0"), "failureRate": Raw("0.0"), "reply": "ok"},
            "slo": {"minSuccessRate": Raw("0.9"), "minSamples": Raw("5")},
        },
    }
    return _as_raw(fields)


def _skeleton_rule(ident: str) -> dict[Raw, Any]:
    fields: dict[str, Any] = {
        "meta": {"id": ident, "type": "RoutingRule", "version": _quoted("1")},
        "payload": {
            "taskType": ident,
            "requires": ["reasoning"],
            "minScore": Raw("0.5"),
            "strategy": "balanced",
            "weights": {"capability": Raw("0.6"), "latency": Raw("0.2"), "cost": Raw("0.2")},
            "chain": ["fuzz-a"],
            "constraints": {"maxLatencyMs": Raw("10000"), "minContextWindow": Raw("1")},
            "failover": {"on": ["timeout"], "maxAttempts": Raw("3"), "cooldownS": Raw("30")},
            "enabled": Raw("true"),
        },
    }
    return _as_raw(fields)


def _as_raw(value: Any) -> Any:
    if isinstance(value, dict):
        return {Raw(k) if isinstance(k, str) else k: _as_raw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_raw(item) for item in value]
    if isinstance(value, str):
        return Raw(value)
    return value


def render(value: Any, indent: int = 0) -> str:
    """Block-style YAML; flow collections and every leaf as their Raw text."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = ""
        for key, child in value.items():
            if isinstance(child, dict | list) and child:
                out += f"{pad}{key.text}:\n{render(child, indent + 1)}"
            else:
                out += f"{pad}{key.text}: {render(child).strip()}\n"
        return out
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        return "".join(
            f"{pad}- {render(item, indent + 1).strip()}\n"
            if not isinstance(item, dict | list) or not item
            else f"{pad}-\n{render(item, indent + 1)}"
            for item in value
        )
    assert isinstance(value, Raw)
    return pad + value.text + "\n"


DEEP = 33  # one over the default cap of 32 levels, and two under: depth as it opens
HOSTILE_VALUES = [
    # numbers no value stands for, and their neighbours
    "1" * 5000,
    "-" + "9" * 4301,
    "+" + "7" * 4400,
    "0" * 5000 + "1",
    "9223372036854775808",
    "-9223372036854775808",
    "9223372036854775807",
    "1e400",
    "-1e400",
    "1e-400",
    "1" * 400 + ".5",
    ".nan",
    ".inf",
    "-.inf",
    "-0",
    "00012",
    "1.10",
    "1e5",
    "0x" + "f" * 5000,
    "0o777",
    "0b101",
    "1:30:00",
    "1:" + "2" * 5000,
    "1_000",
    "2027-02-30",
    "0000-01-01",
    "99999-01-01",
    "2027-06-01T00:00:00Z",
    "-2027-01-01",
    "2027-6-1",
    # wrong types and words YAML 1.1 would retype
    "[]",
    "{}",
    "~",
    "null",
    "true",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "''",
    '""',
    "[1, [2, [3]]]",
    "{a: 1}",
    "[a, {b: [c]}]",
    # look-alikes, controls and NULs written as escapes, very long text
    '"\\u0430"',
    '"fuzz-\\u0430"',
    '"\\u0000"',
    '"a\\u0000b"',
    '"\\x01\\x7f\\x9b"',
    '"\\u202e"',
    '"\\u2066x\\u2069"',
    '"\\ufeff"',
    '"a\\nb\\rc"',
    '"\\t"',
    '"\\e[31mred"',
    '"\\uffff"',
    '"\\U0001F600"',
    '"\\ud800"',
    '"x' + "\\u00e9" * 2000 + '"',
    '"' + "x" * 200_000 + '"',
    "é" * 100,
    "😀" * 50,
    "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    # tags, anchors, aliases, merge keys
    "!!binary aGVsbG8=",
    "!!int 5",
    "!!float 1",
    "!!timestamp 2020-01-01",
    "!!str 5",
    "!!null ''",
    "!!python/object/apply:os.system [id]",
    "!Ref x",
    "!!set {a}",
    "!!omap [{a: 1}]",
    "&a 1",
    "*a",
    "&a [1, 2]",
    "{<<: {a: 1}}",
    # duplicate and odd keys inside flow mappings, depth near the cap
    "{a: 1, a: 2}",
    "{? [a]: b}",
    "{[a]: b}",
    "{1: x}",
    "{null: x}",
    "{true: x}",
    "{'': x}",
    "{? a}",
    "[" * DEEP + "]" * DEEP,
    "[" * (DEEP - 2) + "]" * (DEEP - 2),
    "{a: " * DEEP + "1" + "}" * DEEP,
    "[" * 2000 + "]" * 2000,
    # indicators and broken syntax
    "-",
    "?",
    ":",
    "%",
    "@x",
    "`x`",
    "'unterminated",
    '"unterminated',
    "{",
    "]",
    "a: b",
    "- a",
    "# only a comment",
    "|",
    ">",
    "\\",
    "&",
    "*",
    "!",
]
HOSTILE_KEYS = [
    '"a\\nb"',
    '"\\u0000"',
    '"\\u202e"',
    '"' + "k" * 5000 + '"',
    "idd",
    "Id",
    '"\\u0456d"',
    "1",
    "1" * 5000,
    "null",
    "true",
    "<<",
    '"<<"',
    "__proto__",
    "meta",
    "? [a]",
    '""',
    "'x y'",
    "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    '"\\x1b]0;title\\x07"',
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _set(value: Any, path: tuple[Any, ...], new: Any) -> None:
    for part in path[:-1]:
        value = value[part]
    value[path[-1]] = new


def _hostile_value() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(HOSTILE_VALUES).map(Raw),
        st.text(max_size=40).map(_quoted),
        st.integers(-(10**30), 10**30).map(lambda n: Raw(str(n))),
        st.floats().map(lambda f: Raw(repr(f).replace("inf", ".inf").replace("nan", ".nan"))),
        st.lists(st.sampled_from(HOSTILE_VALUES).map(Raw), max_size=3),
        st.dictionaries(
            st.sampled_from(HOSTILE_KEYS).map(Raw),
            st.sampled_from(HOSTILE_VALUES).map(Raw),
            max_size=3,
        ),
    )


@st.composite
def structured(draw: st.DrawFn) -> str:
    """One or two documents: valid skeletons with fields replaced, added or deleted."""
    documents = []
    for index in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["model", "rule"]))
        doc = _skeleton_model(f"fuzz-{index}") if kind == "model" else _skeleton_rule(f"r{index}")
        for _ in range(draw(st.integers(1, 3))):
            paths = _paths(doc)
            if not paths:  # every field deleted already: nothing left to change
                break
            path = draw(st.sampled_from(paths))
            action = draw(st.sampled_from(["replace", "replace", "add-key", "delete"]))
            parent = doc
            for part in path[:-1]:
                parent = parent[part]
            if action == "replace":
                _set(doc, path, draw(_hostile_value()))
            elif action == "add-key" and isinstance(parent, dict):
                parent[Raw(draw(st.sampled_from(HOSTILE_KEYS)))] = draw(_hostile_value())
            elif action == "delete" and isinstance(parent, dict) and len(paths) > 3:
                del parent[path[-1]]
        documents.append(render(doc))
    return "---\n".join(documents)


YAML_CHARS = ":{}[],&*!|>'\"#%@`-?\n\t \\~.0123456789eE+"


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid manifest's text with characters and lines inserted, deleted or repeated."""
    text = draw(
        st.sampled_from([model_yaml("fuzz-a"), rule_yaml("fuzz-r"), render(_skeleton_model("m"))])
    )
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "insert", "delete", "replace", "repeat", "cut"]))
        piece = draw(st.text(alphabet=st.sampled_from(YAML_CHARS) | st.characters(), max_size=4))
        if action == "insert":
            text = text[:at] + piece + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 5)) :]
        elif action == "replace":
            text = text[:at] + piece + text[at + len(piece) :]
        elif action == "repeat" and text:
            lines = text.splitlines(keepends=True)
            line = lines[draw(st.integers(0, len(lines) - 1))]
            text = text[:at] + line + text[at:]
        elif action == "repeat":
            continue
        else:
            text = text[:at]
    return text


def hostile_yaml() -> st.SearchStrategy[str]:
    return st.one_of(structured(), mutated())


# names git and the file system accept: control characters, bytes that are not UTF-8
HOSTILE_NAMES = [
    "hostile.yaml",
    "a\nb.yaml",
    "\x1b[31m.yaml",
    "\u00e9 \u202e.yaml",
    "x" * 200 + ".yaml",
    "--help.yaml",
    os.fsdecode(b"\xff\xfe.yaml"),
]


# ---------------------------------------------------------------- grove validate


def _validate(path: Path, fmt: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.run(["validate", str(path), "--format", fmt])
    return code, out.getvalue(), err.getvalue()


def _check_validate(folder: Path, name: str, text: str) -> None:
    (folder / name).write_bytes(text.encode("utf-8", errors="surrogatepass"))
    code, out, err = _validate(folder, "json")
    assert code in (0, 1), err
    report = json.loads(out)
    assert report["valid"] is (code == 0)
    for found in report["diagnostics"]:
        assert found["file"].startswith(str(folder))
        assert found["code"] in diagnostics.CATALOG
        assert isinstance(found["line"], int) and found["line"] >= 1
    if code == 1:
        assert report["diagnostics"], "invalid without a diagnostic"
    assert err == ""
    for fmt in ("text", "github"):
        code_again, out, err = _validate(folder, fmt)
        assert code_again == code
        assert "internal error" not in out + err
        assert "Traceback" not in out + err


FUZZ = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


@pytest.mark.slow
@settings(FUZZ, max_examples=200)
@given(text=hostile_yaml(), name=st.sampled_from(HOSTILE_NAMES))
def test_grove_validate_answers_every_hostile_file_with_diagnostics(
    text: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROVE_DEBUG", "1")  # an internal error raises, with its traceback
    with tempfile.TemporaryDirectory() as folder:
        _check_validate(Path(folder), name, text)


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_every_hostile_value_in_every_field_kind_is_a_diagnostic(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixed list, deterministically: each value as a number, text, list item and key."""
    monkeypatch.setenv("GROVE_DEBUG", "1")
    doc = _skeleton_model("fuzz-a")
    payload = doc[Raw("payload")]
    payload[Raw("priority")] = Raw(value)
    payload[Raw("name")] = Raw(value)
    doc[Raw("meta")][Raw("labels")] = {Raw("team"): Raw(value)}
    rule = _skeleton_rule("r")
    rule[Raw("payload")][Raw("chain")] = [Raw("fuzz-a"), Raw(value)]
    for text in (render(doc), render(rule), render(_skeleton_model("k")) + f"{value}: 1\n"):
        _check_validate(tmp_path, "hostile.yaml", text)


# ---------------------------------------------------------------- one reconcile cycle


@contextlib.contextmanager
def _loop() -> Iterator[watching.Watcher]:
    options = watching.Options(interval_s=60.0, poll_s=0.05, lease_ttl_s=30.0)
    loop = watching.Watcher(grove_settings.load(), options, holder=f"fuzz-{time.monotonic_ns()}")
    try:
        yield loop
    finally:
        loop._shutdown()


@pytest.mark.slow
def test_a_reconcile_cycle_survives_hostile_commits(registry: Registry) -> None:
    base = {"models/fuzz-a.yaml": model_yaml("fuzz-a"), "rules/r.yaml": rule_yaml("r")}
    registry.fleet.commit("base", base)
    seen: dict[str, int] = {}
    with _loop() as loop:
        loop.tick()
        assert "AIModel/fuzz-a" in registry.live()

        @settings(FUZZ, max_examples=25)
        @given(text=hostile_yaml(), name=st.sampled_from(["fuzz-a.yaml", *HOSTILE_NAMES]))
        def cycle(text: str, name: str) -> None:
            where = f"models/{name}"
            registry.fleet.commit("hostile", {where: text.encode("utf-8", errors="surrogatepass")})
            loop._cycle(triggered=True)
            assert not loop.failed_unexpectedly
            state = registry.sql("SELECT conditions FROM reconciler_state")[0][0]
            conditions = json.loads(state) if isinstance(state, str) else state
            stalled = conditions.get("Stalled", {})
            assert stalled.get("reason") != "UnexpectedError", stalled
            seen[stalled.get("reason", "")] = seen.get(stalled.get("reason", ""), 0) + 1
            if name != "fuzz-a.yaml":
                registry.fleet.delete(where)
            registry.fleet.commit("restore", base)  # the next example starts from the base

        cycle()
    assert seen, "no cycle ran"
    assert not any(r.startswith("Unexpected") for r in seen), seen
