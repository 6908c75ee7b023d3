"""The body limits: the JSON depth scan agrees with the nesting of the parsed value, at
the boundary and for any JSON; the gate finds the routes that need a credential."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, FastAPI, Security
from fastapi.security import APIKeyHeader
from hypothesis import given
from hypothesis import strategies as st

from reconciler.api import MAX_JSON_DEPTH, deps
from reconciler.api.deps import Operator
from reconciler.api.limits import Gate, deeper_than


@pytest.mark.parametrize(
    ("body", "deeper"),
    [
        (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, False),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), True),
        (b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1), True),
        (json.dumps({"name": "[" * 500}).encode(), False),  # brackets in a string
        (json.dumps([[1]] * 100).encode(), False),  # many brackets, shallow: walked
        (json.dumps({"a": '\\"[' * 100, "b": [[1]]}).encode(), False),  # escaped quotes
    ],
)
def test_the_boundary(body: bytes, deeper: bool) -> None:
    assert deeper_than(body, MAX_JSON_DEPTH) is deeper


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=200,
)


def _nesting(value: object) -> int:
    """How deep the parsed value nests (what a recursive parser would meet)."""
    if isinstance(value, dict):
        return 1 + max(map(_nesting, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_nesting, value), default=0)
    return 0


@given(json_values, st.integers(min_value=0, max_value=8), st.booleans())
def test_the_scan_agrees_with_the_parsed_value(value: object, limit: int, escaped: bool) -> None:
    body = json.dumps(value, ensure_ascii=escaped).encode()
    depth = _nesting(value)
    assert deeper_than(body, limit) == (depth > limit)
    assert not deeper_than(body, depth)  # exactly as deep as the parsed value, no deeper
    assert depth == 0 or deeper_than(body, depth - 1)


SHAPED = "grove_0123456789abcdef_" + "s" * 43  # a token's shape; valid or not, the route says
KEYED = APIKeyHeader(name="X-Grove-Key", auto_error=False)


def _gate_app() -> FastAPI:
    app = FastAPI()
    inner = APIRouter()

    @inner.post("/api/things/{ident}")
    async def write(ident: str, identity: Operator) -> None: ...

    @inner.post("/keyed")
    async def keyed_route(key: Annotated[str | None, Security(KEYED)]) -> None: ...

    @inner.post("/open")
    async def open_route() -> None: ...

    app.include_router(inner)
    return app


def _scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


@pytest.mark.parametrize(
    ("method", "path", "headers", "refused"),
    [
        ("POST", "/api/things/x", {}, True),
        ("POST", "/api/things/x", {"authorization": "Basic dXNlcjpwYXNz"}, True),
        ("POST", "/api/things/x", {"authorization": "Bearer "}, True),
        ("POST", "/api/things/x", {"authorization": f"bearer {SHAPED}"}, False),
        ("POST", "/api/things/x", {"authorization": "Bearer x"}, True),  # no token's shape
        ("POST", "/api/things/x", {"authorization": f"Bearer {SHAPED}!"}, True),
        ("POST", "/api/things/x", {"x-api-key": SHAPED}, False),  # DESIGN section 12
        ("POST", "/api/things/x", {"x-api-key": "k"}, True),
        ("POST", "/open", {"authorization": "Bearer x"}, False),  # needs none: not looked at
        ("GET", "/api/things/x", {}, False),  # 405: the app's to answer
        ("POST", "/nowhere", {}, False),  # 404: the app's to answer
        ("POST", "/open", {}, False),
        ("POST", "/keyed", {}, True),
        ("POST", "/keyed", {"x-grove-key": "k"}, False),  # the header its scheme names
    ],
)
def test_the_gate_reads_which_routes_need_a_credential_from_their_dependencies(
    method: str, path: str, headers: dict[str, str], refused: bool
) -> None:
    app = _gate_app()
    assert Gate(app.routes, app.dependency_overrides).refuses(_scope(method, path), headers) is (
        refused
    )


def test_the_gate_stands_aside_while_the_checks_are_overridden() -> None:
    app = _gate_app()
    gate = Gate(app.routes, app.dependency_overrides)
    app.dependency_overrides[deps.get_services] = lambda: None
    assert not gate.refuses(_scope("POST", "/api/things/x"), {})
