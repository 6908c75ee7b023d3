"""The gateway's own entry (``gateway.Front``, which the server's edge calls for /v1/
paths): what its routes fail to answer is a 500 in the caller's format, logged by its
type only, and the routes see the API's app as ``request.app``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from reconciler import gateway
from reconciler.routing import engine as routing

SECRET = "sk-live-0123456789abcdef"  # what a failure's words may hold


def _front(authenticate: gateway.Authenticate) -> tuple[gateway.Front, Starlette]:
    app = Starlette()
    # the token check is the first thing a call does: the engine is never reached
    engine = cast(routing.RoutingEngine, None)
    return gateway.Front(gateway.Gateway(engine, authenticate), app), app


def _post(front: gateway.Front, path: str, **headers: str) -> httpx.Response:
    """POST (GET for /v1/models) ``path`` to ``front``."""

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=front)
        async with httpx.AsyncClient(transport=transport, base_url="http://grove") as client:
            if path == "/v1/models":
                return await client.get(path, headers=headers)
            return await client.post(path, json={"model": "m"}, headers=headers)

    return asyncio.run(call())


async def _broken(request: Request, token: str | None) -> None:
    raise RuntimeError(f"the check broke on {SECRET}")


@pytest.mark.parametrize(
    ("path", "headers", "shape"),
    [
        ("/v1/chat/completions", {}, "openai"),
        ("/v1/messages", {}, "anthropic"),
        ("/v1/models", {"anthropic-version": "2023-06-01"}, "anthropic"),
    ],
)
def test_an_unanswered_failure_is_a_500_in_the_callers_format_logged_by_type_only(
    path: str, headers: dict[str, str], shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    front, _ = _front(_broken)
    with caplog.at_level(logging.ERROR, logger="grove.gateway"):
        answer = _post(front, path, **headers)
    assert answer.status_code == 500
    body: dict[str, Any] = answer.json()
    if shape == "openai":
        assert body["error"]["type"] == "server_error"
    else:
        assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert SECRET not in answer.text
    [record] = [r for r in caplog.records if r.getMessage() == "gateway-error"]
    assert getattr(record, "fields", None) == {"error": "RuntimeError"}
    assert record.exc_info is None  # no traceback: the exception's words stay out


def test_the_routes_see_the_apis_app() -> None:
    seen: list[Any] = []

    async def check(request: Request, token: str | None) -> None:
        seen.append(request.app)
        raise gateway.Refused(401, "no token")

    front, app = _front(check)
    answer = _post(front, "/v1/chat/completions")
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "authentication_error"
    assert seen == [app]
