"""The loader: messages an operator can act on, every error of a run, nothing half-loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.base import settings
from reconciler.gitops import validating
from reconciler.manifests import kinds as manifests
from reconciler.manifests import loading
from tests.conftest import model_yaml, rule_yaml, write_tree

LIMITS = loading.Limits(max_file_bytes=1 << 20, max_tree_bytes=1 << 24, max_files=100, max_depth=32)


def _load(*texts: str, allow_local: bool = False) -> loading.LoadResult:
    files = [loading.SourceFile(f"f{i}.yaml", t.encode()) for i, t in enumerate(texts)]
    return loading.load(files, LIMITS, allow_local_endpoints=allow_local)


def _messages(result: loading.LoadResult) -> list[str]:
    return [f"{d.code} {d.message}" for d in result.diagnostics]


def test_a_valid_model_loads_with_defaults() -> None:
    result = _load(model_yaml("m"))
    assert result.diagnostics == []
    (item,) = result.objects
    assert isinstance(item.obj, manifests.AIModel)
    spec = item.obj.payload
    assert spec.priority == 100
    assert spec.state is manifests.ModelState.ENABLED
    assert spec.timeout_ms == 30_000
    assert spec.capabilities == {
        manifests.CapabilityType.REASONING: 0.9,
        manifests.CapabilityType.SPEED: 0.8,
    }
    assert item.kind == "AIModel"
    assert item.id == "m"
    assert item.line_of("payload", "capabilities") == 5


def test_a_rule_gets_default_failover() -> None:
    result = _load(model_yaml("m"), rule_yaml("r"))
    rule = result.objects[1].obj
    assert isinstance(rule, manifests.RoutingRule)
    assert rule.payload.strategy is manifests.Strategy.PRIORITY
    assert list(rule.payload.failover.on) == list(manifests.FailureKind)
    assert rule.payload.failover.max_attempts == 3


def test_every_error_of_every_file_is_reported() -> None:
    result = _load(
        model_yaml("a", priority="high", timeoutMs="-1"),
        model_yaml("b", state="paused"),
        "a: &x 1\n",
    )
    codes = sorted((d.file, d.code) for d in result.diagnostics)
    assert codes == [
        ("f0.yaml", "S003"),
        ("f0.yaml", "S004"),
        ("f1.yaml", "S005"),
        ("f2.yaml", "Y002"),
    ]
    assert result.objects == []
    assert result.complete is False  # f2 could not be parsed at all


def test_a_broken_document_loads_nothing_but_its_id_is_known() -> None:
    result = _load(model_yaml("a", priority='"1"'))
    assert result.objects == []
    assert result.broken_ids == {("AIModel", "a")}
    assert result.complete is True


def test_unknown_field_suggests_the_close_name() -> None:
    (message,) = _messages(_load(model_yaml("a", providerModle="x")))
    assert (
        message
        == "S001 payload.providerModle: unknown field 'providerModle'; did you mean providerModel?"
    )


def test_unknown_field_far_from_any_lists_what_is_allowed() -> None:
    (message,) = _messages(_load(model_yaml("a", zzz="1")))
    assert "allowed: name, provider, providerModel, endpoint" in message


def test_wrong_types_say_what_was_expected_and_how_to_fix() -> None:
    result = _load(model_yaml("a", maxRetries="1.5", name="12", mock="[1]"))
    messages = _messages(result)
    assert "S003 payload.maxRetries: expected a whole number, got a fraction" in messages
    assert 'S003 payload.name: expected a string, got an integer; quote it: "12"' in messages
    assert "S003 payload.mock: expected a mapping, got a list" in messages


def test_a_bom_is_accepted() -> None:
    result = loading.load(
        [loading.SourceFile("bom.yaml", b"\xef\xbb\xbf" + model_yaml("m").encode())],
        LIMITS,
        allow_local_endpoints=False,
    )
    assert [o.id for o in result.objects] == ["m"]


def test_cross_field_problems_are_all_reported_with_their_lines() -> None:
    text = model_yaml(
        "a",
        provider="openai-compatible",
        mock="{reply: hi}",
        fallbacks="[b, b]",
        maxOutputTokens="9000",
        contextWindow="4000",
    )
    result = _load(text)
    found = {(d.code, d.line, d.path) for d in result.diagnostics}
    assert found == {
        ("S008", 2, "payload.endpoint"),
        ("S008", 2, "payload.providerModel"),
        ("S008", 6, "payload.mock"),
        ("S012", 7, "payload.fallbacks[1]"),
        ("S012", 8, "payload.maxOutputTokens"),
    }


def test_local_endpoints_need_the_setting() -> None:
    text = model_yaml(
        "a",
        provider="openai-compatible",
        providerModel="llama",
        endpoint="http://127.0.0.1:8080/v1",
    )
    assert [d.code for d in _load(text).diagnostics] == ["S007"]
    assert _load(text, allow_local=True).diagnostics == []


def test_a_secret_hides_the_schema_error_at_the_same_field() -> None:
    text = model_yaml("a", credentials="{env: sk-live-0123456789abcdefABCDEF}")
    assert [d.code for d in _load(text).diagnostics] == ["K001"]


def test_a_secret_in_an_otherwise_valid_document_refuses_it() -> None:
    text = model_yaml("a", mock='{reply: "Bearer abcdefghijklmnopqrstuvwxyz012345"}')
    result = _load(text)
    assert [d.code for d in result.diagnostics] == ["K001"]
    assert result.objects == []


def test_env_variable_names_are_not_mistaken_for_secrets() -> None:
    text = model_yaml(
        "a",
        provider="openai",
        providerModel="gpt-4o",
        endpoint="https://api.openai.com/v1",
        credentials="{env: OPENAI_API_KEY_FOR_THE_PRODUCTION_TENANT_2}",
    )
    assert _load(text).diagnostics == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'meta: {id: a, version: "1"}\npayload: {}\n',
            ["S002 meta: missing required field 'type' (one of AIModel, RoutingRule)"],
        ),
        ("payload: {}\n", ["S002 document: missing required field 'meta'"]),
        (
            "meta: [1]\nkind: x\n",
            [
                "S001 kind: unknown field; allowed: meta, payload",
                "S002 document: missing required field 'payload'",
                "S003 meta: expected a mapping, got a list",
            ],
        ),
        (
            "meta: {type: Model}\npayload: {}\n",
            ["S009 meta.type: must be one of: AIModel, RoutingRule"],
        ),
    ],
)
def test_an_envelope_without_a_known_type_reports_only_the_envelope(
    text: str, expected: list[str]
) -> None:
    assert sorted(_messages(_load(text))) == expected


def test_files_on_disk_are_read_in_sorted_order(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "b/z.yaml": model_yaml("z"),
            "a.yml": model_yaml("a"),
            "b/c.yaml": model_yaml("c"),
            "README.md": "not yaml",
            ".hidden/x.yaml": "not: [valid",
        },
    )
    report = validating.validate_paths([str(tmp_path)], settings.load())
    assert report.ok
    assert [o.id for o in report.objects] == ["a", "c", "z"]
    assert report.files == 3


def test_an_explicit_file_is_read_whatever_its_suffix(tmp_path: Path) -> None:
    write_tree(tmp_path, {"model.txt": model_yaml("m")})
    report = validating.validate_paths([str(tmp_path / "model.txt")], settings.load())
    assert [o.id for o in report.objects] == ["m"]


@pytest.mark.parametrize("depth", [31, 32])
def test_nesting_up_to_the_cap_is_allowed(depth: int) -> None:
    limits = loading.Limits(1 << 20, 1 << 24, 10, depth)
    nested = "a: " + "{a: " * (depth - 1) + "1" + "}" * (depth - 1)
    result = loading.load(
        [loading.SourceFile("n.yaml", nested.encode())], limits, allow_local_endpoints=False
    )
    assert all(d.code != "Y005" for d in result.diagnostics)
