"""The lean handler of ``POST /api/routing/execute`` answers as FastAPI's own would.

Every request here is sent twice to the same real server: through the lean
handler (the default) and through FastAPI's generic handler (switched with
``app.state.lean_routes``); status, content type and body must agree, apart
from what differs between any two calls (request ids and timings).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace

from reconciler.api import deps, lean
from reconciler.api.bodies import ExecuteBody, ExecuteOut
from tests.api.conftest import Server

PATH = "/api/routing/execute"
KEPT_HEADERS = {"content-type", "www-authenticate", "cache-control", "allow"}
VOLATILE = {"requestId", "latencyMs", "decisionMs", "at", "startedAt"}


def normalized(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = {k: v for k, v in response.headers.items() if k in KEPT_HEADERS}
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return response.status_code, headers, _drop_volatile(body)


def _drop_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_drop_volatile(v) for v in value]
    return value


def both(server: Server, client: httpx.Client, **request: Any) -> tuple[Any, Any]:
    """The same request through the lean handler, then through FastAPI's."""
    answers = []
    for on in (True, False):
        server.lean_routes(on)
        answers.append(normalized(client.post(PATH, **request)))
    server.lean_routes(True)
    return answers[0], answers[1]


VALID = {"taskType": "think", "prompt": "hi"}
CASES: list[tuple[str, dict[str, Any]]] = [
    ("valid", {"json": VALID}),
    ("every field", {"json": {**VALID, "system": "be brief", "maxTokens": 8}}),
    ("by capability", {"json": {"capabilities": ["reasoning"], "prompt": "hi"}}),
    ("no route", {"json": {"taskType": "nope", "prompt": "x"}}),
    ("unknown field", {"json": {**VALID, "model": "alpha"}}),
    ("missing prompt", {"json": {"taskType": "think"}}),
    ("string for an int", {"json": {**VALID, "maxTokens": "8"}}),
    ("float for an int", {"content": b'{"prompt": "hi", "maxTokens": 8.0}'}),
    ("unknown capability", {"json": {"capabilities": ["telepathy"], "prompt": "hi"}}),
    ("too many tokens", {"json": {**VALID, "maxTokens": 10**30}}),
    ("not JSON", {"content": b"{"}),
    ("empty body", {"content": b""}),
    ("null", {"content": b"null"}),
    ("a list", {"content": b"[1, 2]"}),
    ("duplicate keys", {"content": b'{"prompt": "a", "prompt": "b", "taskType": "think"}'}),
    ("lone surrogate", {"content": b'{"prompt": "\\ud800", "taskType": "think"}'}),
    ("NaN", {"content": b'{"prompt": "hi", "maxTokens": NaN}'}),
]
TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON",
    "text/plain",
    "application/vnd.grove+json",
    None,
]


SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # HTTP, not the database


@SQLITE_ONLY
def test_the_lean_handler_answers_as_fastapi_does(server: Server) -> None:
    with server.client("operator") as client:
        for label, request in CASES:
            headers = {"Content-Type": "application/json"} if "content" in request else {}
            lean_answer, general = both(server, client, headers=headers, **request)
            assert lean_answer == general, label
        for kind in TYPES:  # httpx sends no content type for bytes unless told
            headers = {"Content-Type": kind} if kind else {}
            lean_answer, general = both(server, client, content=json.dumps(VALID), headers=headers)
            assert lean_answer == general, kind


@SQLITE_ONLY
def test_tokens_and_roles_are_checked_by_the_routes_own_dependency(server: Server) -> None:
    for role, status in ((None, 401), ("viewer", 403), ("operator", 200), ("admin", 200)):
        with server.client(role) as client:
            lean_answer, general = both(server, client, json=VALID)
        assert lean_answer == general and lean_answer[0] == status, role
    for authorization in ("Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer", "bearer x y", "x"):
        with httpx.Client(base_url=server.url, headers={"Authorization": authorization}) as client:
            lean_answer, general = both(server, client, json=VALID)
        assert lean_answer == general and lean_answer[0] == 401, authorization


@SQLITE_ONLY
def test_the_lean_handler_is_the_one_answering(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the lean handler reads the body with ``model_validate_json``: count its calls."""
    read = ExecuteBody.model_validate_json
    calls: list[bytes] = []

    def counted(data: bytes, **options: Any) -> ExecuteBody:
        calls.append(data)
        return read(data, **options)

    monkeypatch.setattr(ExecuteBody, "model_validate_json", counted)
    with server.client("operator") as client:
        response = client.post(PATH, json=VALID)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        ExecuteOut.model_validate_json(response.content)
        assert response.json()["modelId"] == "alpha"
        assert len(calls) == 1
        server.lean_routes(False)
        assert client.post(PATH, json=VALID).status_code == 200
        assert len(calls) == 1  # FastAPI's handler validated that one


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_FIELDS = ["taskType", "capabilities", "prompt", "system", "maxTokens", "task_type", "extra"]
_PLAUSIBLE = {
    "taskType": st.sampled_from(["think", "nope", ""]) | _VALUES,
    "capabilities": st.lists(st.sampled_from(["reasoning", "speed", "bogus"]), max_size=3)
    | _VALUES,
    "prompt": st.text(max_size=20) | _VALUES,
    "maxTokens": st.integers(min_value=-2, max_value=100_001) | _VALUES,
}


@st.composite
def execute_bodies(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(_FIELDS), unique=True, max_size=5))
    return {key: draw(_PLAUSIBLE.get(key, _VALUES)) for key in keys}


@pytest.mark.slow
@SQLITE_ONLY
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=execute_bodies())
def test_generated_bodies_get_the_same_answer(server: Server, body: dict[str, Any]) -> None:
    with server.client("operator") as client:
        lean_answer, general = both(server, client, json=body)
    assert lean_answer == general, body


def someone() -> str:
    return "someone"


def test_a_route_the_lean_handler_cannot_take_is_refused_when_declared() -> None:
    router = APIRouter(route_class=lean.LeanRoute)

    async def with_a_query(
        body: ExecuteBody, identity: deps.Operator, q: str = Query("x")
    ) -> ExecuteOut:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="one JSON body and dependencies only"):
        router.post("/q", response_model=ExecuteOut)(with_a_query)

    def not_async(body: ExecuteBody, identity: deps.Operator) -> ExecuteOut:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="coroutine function"):
        router.post("/sync", response_model=ExecuteOut)(not_async)

    async def other_dependency(
        body: ExecuteBody, who: Annotated[str, Depends(someone)]
    ) -> ExecuteOut:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="only the services and a role"):
        router.post("/dep", response_model=ExecuteOut)(other_dependency)


def post(app: FastAPI, path: str, body: dict[str, Any]) -> httpx.Response:
    """One request to ``app`` in this process (httpx's ASGI transport; no lifespan needed)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://grove.test") as client:
            return await client.post(path, json=body)

    return asyncio.run(send())


def teapot() -> None:
    raise HTTPException(418, "an inclusion's own dependency")


async def echo(body: ExecuteBody) -> ExecuteOut:
    return ExecuteOut(
        model_id="x",
        text=body.prompt,
        input_tokens=0,
        output_tokens=0,
        cost_usd=0.0,
        latency_ms=0.0,
        request_id="r",
        decision={},
        attempts=[],
    )


def test_dependencies_added_by_include_router_are_not_skipped() -> None:
    """An inclusion's dependencies are resolved (by FastAPI's handler) on a lean route."""
    router = APIRouter(route_class=lean.LeanRoute)
    router.post("/echo", response_model=ExecuteOut)(echo)
    guarded, open_ = FastAPI(), FastAPI()
    guarded.include_router(router, dependencies=[Depends(teapot)])
    open_.include_router(router)
    assert post(guarded, "/echo", {"prompt": "hi"}).status_code == 418
    answer = post(open_, "/echo", {"prompt": "hi"})
    assert answer.status_code == 200 and answer.json()["text"] == "hi"


class Leaky(ExecuteOut):
    secret: str = "s3cret"


async def leaky(body: ExecuteBody) -> ExecuteOut:
    return Leaky(**(await echo(body)).model_dump())


def test_the_answer_has_the_declared_models_fields_only() -> None:
    """An endpoint returning a subclass of its response model sends the model's fields."""
    router = APIRouter(route_class=lean.LeanRoute)
    router.post("/leaky", response_model=ExecuteOut)(leaky)
    app = FastAPI()
    app.include_router(router)
    answer = post(app, "/leaky", {"prompt": "hi"})
    assert answer.status_code == 200 and answer.json()["text"] == "hi"
    assert "secret" not in answer.json()


async def embedded(body: Annotated[ExecuteBody, Body(embed=True)]) -> ExecuteOut:
    raise AssertionError("never called")


def test_declarations_it_could_not_honour_are_refused() -> None:
    router = APIRouter(route_class=lean.LeanRoute)
    refused = {
        "embedded body": (embedded, {}),
        "response_model_exclude": (echo, {"response_model_exclude": {"text"}}),
        "response_model_exclude_none": (echo, {"response_model_exclude_none": True}),
        "response_model_by_alias": (echo, {"response_model_by_alias": False}),
        "response_class": (echo, {"response_class": PlainTextResponse}),
        "a dependency without a name": (echo, {"dependencies": [Depends(deps.get_services)]}),
    }
    for label, (endpoint, options) in refused.items():
        with pytest.raises(TypeError, match="a lean route"):
            router.post("/x", response_model=ExecuteOut, **options)(endpoint)
            pytest.fail(label)


def test_an_app_wide_response_class_puts_fastapi_in_charge() -> None:
    router = APIRouter(route_class=lean.LeanRoute)
    router.post("/echo", response_model=ExecuteOut)(echo)
    app = FastAPI(default_response_class=Marked)
    app.include_router(router)
    answer = post(app, "/echo", {"prompt": "hi"})
    assert answer.status_code == 200 and answer.headers["x-marked"] == "yes"


class Marked(JSONResponse):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.headers["x-marked"] = "yes"


class Recorder(trace.NoOpTracer):
    def __init__(self) -> None:
        self.names: list[str] = []

    @contextlib.contextmanager
    def start_as_current_span(self, name: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        self.names.append(name)
        span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
        with trace.use_span(span, end_on_exit=False):
            yield span

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.names.append(name)
        return trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)


class Tracing(trace.TracerProvider):
    def __init__(self) -> None:
        self.tracer = Recorder()

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        return self.tracer


def test_a_traced_request_gets_fastapis_spans() -> None:
    """With OpenTelemetry tracing on, FastAPI's handler answers: its spans are made."""
    router = APIRouter(route_class=lean.LeanRoute)
    router.post("/echo", response_model=ExecuteOut)(echo)
    tracing = Tracing()
    app = FastAPI(telemetry={"tracer_provider": tracing})
    app.include_router(router)
    answer = post(app, "/echo", {"prompt": "hi"})
    assert answer.status_code == 200 and answer.json()["text"] == "hi"
    assert "fastapi.endpoint" in tracing.tracer.names, tracing.tracer.names
