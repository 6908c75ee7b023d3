"""Property tests: whatever the JSON Schema admits survives load -> dump -> load unchanged.

Documents are generated from the published schemas/*.schema.json themselves
(a small generator over the JSON Schema keywords pydantic emits), so the
property covers exactly what an editor would let an operator write. Every
document, valid or not, must get the same verdict whether it is validated
directly or written as YAML and read back through the hardened loader; valid
ones must come back equal after a second dump and load.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from reconciler.manifests import kinds as manifests
from reconciler.manifests import loading, yamlsafe
from tests.conftest import REPO_ROOT

LIMITS = loading.Limits(max_file_bytes=1 << 20, max_tree_bytes=1 << 24, max_files=10, max_depth=32)
MAX_ITEMS = 4
# What a manifest can hold: NUL and bidirectional controls are refused, raw or escaped (F005).
TEXT = st.characters(
    codec="utf-8",
    exclude_characters="\x00\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
)


def from_schema(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in schema:
        return st.one_of([from_schema(option, defs) for option in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return _strings(schema)
    if kind == "integer":
        return st.integers(schema.get("minimum", -(10**6)), schema.get("maximum", 10**9))
    if kind == "number":
        return st.floats(
            schema.get("minimum", -1e6),
            schema.get("maximum", 1e9),
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(
            from_schema(schema["items"], defs),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", MAX_ITEMS), MAX_ITEMS),
        )
    if kind == "object":
        return _objects(schema, defs)
    raise AssertionError(f"generator does not know {schema}")


def _strings(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 40), 40)
    if schema.get("format") == "date":
        return st.dates(dt.date(2000, 1, 1), dt.date(2100, 1, 1)).map(dt.date.isoformat)
    if schema.get("format") == "uri":
        host = st.from_regex(r"[a-z][a-z0-9-]{0,12}\.(example\.com|example\.org)", fullmatch=True)
        path = st.from_regex(r"(/[a-z0-9]{1,8}){0,3}", fullmatch=True)
        return st.builds(lambda h, p: f"https://{h}{p}", host, path)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda text: low <= len(text) <= schema.get("maxLength", 10**9)
        )
    return st.text(TEXT, min_size=low, max_size=max(low, high))


def _objects(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Any] = schema.get("properties", {})
    if properties:
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {name: from_schema(sub, defs) for name, sub in properties.items() if name in required},
            optional={
                name: from_schema(sub, defs)
                for name, sub in properties.items()
                if name not in required
            },
        )
    if "patternProperties" in schema:
        ((pattern, values),) = schema["patternProperties"].items()
        keys = {"type": "string", "pattern": pattern, "maxLength": 40}
    else:
        values = schema["additionalProperties"]
        keys = schema.get("propertyNames", {"type": "string", "maxLength": 20})
    return st.dictionaries(
        from_schema(keys, defs),
        from_schema(values, defs),
        min_size=schema.get("minProperties", 0),
        max_size=min(schema.get("maxProperties", MAX_ITEMS), MAX_ITEMS),
    )


def _schema(kind: str) -> dict[str, Any]:
    text = (REPO_ROOT / "schemas" / f"{kind}.schema.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def _for_provider(schema: dict[str, Any], provider: str) -> dict[str, Any]:
    """The AIModel schema with the provider's cross-field rules applied (mock: no endpoint...)."""
    variant = copy.deepcopy(schema)
    spec = variant["$defs"]["ModelSpec"]
    spec["properties"]["provider"] = {"const": provider}
    if provider == "mock":
        del spec["properties"]["endpoint"], spec["properties"]["credentials"]
    else:
        del spec["properties"]["mock"]
        spec["required"] += ["endpoint", "providerModel", "credentials"]
    return variant


def documents(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Straight from the schema, plus (for models) per-provider variants that pass more often."""
    schema = _schema(kind)
    plain = from_schema(schema, schema["$defs"])
    if kind != "AIModel":
        return plain  # type: ignore[return-value]
    variants = [
        from_schema(variant, variant["$defs"])
        for variant in (
            _for_provider(schema, p) for p in ("mock", "anthropic", "openai-compatible")
        )
    ]
    return st.one_of(plain, *variants)  # type: ignore[return-value]


def _load_text(text: str) -> loading.LoadResult:
    source = loading.SourceFile("generated.yaml", text.encode("utf-8"))
    return loading.load([source], LIMITS, allow_local_endpoints=False)


def _direct(doc: dict[str, Any]) -> manifests.GroveObject | None:
    cls = manifests.KINDS[doc["meta"]["type"]]
    try:
        return cls.model_validate(doc, context={"allow_local_endpoints": False})
    except ValidationError:
        return None


SEEN: dict[str, int] = {"valid": 0, "invalid": 0}


def _check_round_trip(doc: dict[str, Any]) -> None:
    expected = _direct(doc)
    loaded = _load_text(yamlsafe.dump([doc]))
    if expected is None:
        SEEN["invalid"] += 1
        assert not loaded.objects
        assert loaded.diagnostics
        return
    SEEN["valid"] += 1
    if loaded.diagnostics:  # only the secret scan may refuse what the schema admits
        assert {d.code for d in loaded.diagnostics} == {"K001"}
        return
    assert [item.obj for item in loaded.objects] == [expected]
    again = _load_text(yamlsafe.dump([manifests.to_document(expected)]))
    assert [item.obj for item in again.objects] == [expected]
    assert again.diagnostics == []


PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["AIModel", "RoutingRule"])
def test_every_schema_document_round_trips(kind: str) -> None:
    SEEN.update(valid=0, invalid=0)

    @PROPERTY
    @given(documents(kind))
    def round_trip(doc: dict[str, Any]) -> None:
        _check_round_trip(doc)

    round_trip()
    # The property is only meaningful if the generator reaches valid manifests often.
    assert SEEN["valid"] >= 40, SEEN


@PROPERTY
@given(
    st.lists(st.text(TEXT, max_size=30), max_size=5),
    st.dictionaries(
        st.text(TEXT, max_size=10),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-yamlsafe.INT_MAX, yamlsafe.INT_MAX),  # beyond: refused, Y009
            st.floats(allow_nan=False),
            st.text(TEXT, max_size=30),
        ),
        max_size=6,
    ),
)
def test_any_scalars_survive_dump_and_parse(items: list[str], mapping: dict[str, Any]) -> None:
    """The writer quotes every string the 1.2-core reader would read as something else."""
    value = {"items": items, "mapping": mapping}
    (document,) = yamlsafe.parse(yamlsafe.dump([value]), max_depth=8)
    assert document.value == value
