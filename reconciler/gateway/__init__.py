"""The gateway: OpenAI- and Anthropic-compatible endpoints in front of Grove's router.

``POST /v1/chat/completions`` (:mod:`.openai`), ``POST /v1/messages``
(:mod:`.anthropic`) and ``GET /v1/models``, on the same server as the API
(DESIGN section 12, docs/gateway.md). An application keeps its SDK and points its
base URL at Grove; the request's ``model`` names a rule's taskType, a model id or
``capability:a,b`` (:func:`common.resolve`), and the router does the rest: ranking,
failover, circuits, canaries, the routing log, exactly as for
``POST /api/routing/execute``.

Beside ``web/`` and below ``api/``: the API hands the gateway its router and the
check of the caller's token (:class:`Gateway`), so a token is verified by the same
code, with the same cache and outage rules, as on every API route. The endpoints take
Starlette's requests and answer Starlette's responses, not FastAPI's: their bodies,
answers and errors are the providers' formats, not the API's problem documents, and a
routed call should not pay for dependency resolution it does not use. The server
calls them through :class:`Front`, past its body limits and instead of the API
framework's app.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reconciler.base import errors, ids, logs
from reconciler.gateway import anthropic, common, openai
from reconciler.gateway.common import GatewayError, Kind
from reconciler.routing import engine as routing
from reconciler.routing import ranking

__all__ = ["Front", "Gateway", "Refused", "edge_refusal", "mount"]

log = logging.getLogger("grove.gateway")

# The check of a caller's token (as given, from whichever header carried it): returns
# when it may call the data plane, raises Refused otherwise.
Authenticate = Callable[[Request, "str | None"], Awaitable[None]]
Publish = Callable[[str, dict[str, Any]], None]
Endpoint = Callable[[Request], Awaitable[Response]]


class Refused(Exception):
    """The token check's answer: 401 or 403 and why (never the token)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Gateway:
    def __init__(
        self,
        engine: routing.RoutingEngine,
        authenticate: Authenticate,
        publish: Publish | None = None,
    ) -> None:
        self.engine = engine
        self.authenticate = authenticate
        self.publish = publish or (lambda kind, data: None)

    def endpoints(self) -> dict[str, Endpoint]:
        """The three endpoints by path. Each takes every method (a wrong one is a 405 in
        the caller's format); any other path under /v1 is :meth:`unknown`'s."""
        return {
            "/v1/chat/completions": self.chat_completions,
            "/v1/messages": self.messages,
            "/v1/models": self.models,
        }

    async def chat_completions(self, request: Request) -> Response:
        if request.method != "POST":
            return _not_allowed(openai, "POST")
        return await self._routed(request, openai)

    async def messages(self, request: Request) -> Response:
        if request.method != "POST":
            return _not_allowed(anthropic, "POST")
        return await self._routed(request, anthropic)

    async def unknown(self, request: Request) -> Response:
        """A 404 in the caller's format for a path under /v1 that is not served
        (``/v1/embeddings``)."""
        dialect = _caller(request.url.path, request.headers)
        served = "POST /v1/chat/completions, POST /v1/messages and GET /v1/models"
        failure = GatewayError(
            404, Kind.NOT_FOUND, f"{request.url.path[:200]} is not served here: {served}"
        )
        return _error(dialect, failure, None)

    async def models(self, request: Request) -> Response:
        dialect = _caller(request.url.path, request.headers)
        if request.method not in ("GET", "HEAD"):
            return _not_allowed(dialect, "GET")
        try:
            await self._check(request, dialect)
        except GatewayError as failure:
            return _error(dialect, failure, None)
        listing = common.listing(self.engine.table())
        return _json(dialect.models(listing), 200, {})

    # ---------------------------------------------------------------- the routed call

    async def _routed(self, request: Request, dialect: ModuleType) -> Response:
        # the caller's id when usable (a retry then gets the same canary choice), else new
        request_id = common.request_id(request.headers.get("x-request-id")) or str(ids.uuid7())
        try:
            await self._check(request, dialect)
            parsed: common.Parsed = dialect.parse(await request.body())
            task = common.resolve(parsed.model, self.engine.table(), request_id)
        except GatewayError as failure:
            return _error(dialect, failure, request_id)
        if parsed.stream:
            return self._stream(task, parsed, dialect, request_id)
        # watched: a caller that hangs up cancels the call (the provider's connection
        # closes, the attempt is logged 'cancelled') instead of paying for an answer
        return common.Watched(lambda: self._answer(task, parsed, dialect, request_id))

    async def _answer(
        self,
        task: ranking.TaskRequest,
        parsed: common.Parsed,
        dialect: ModuleType,
        request_id: str,
    ) -> Response:
        try:
            result = await self.engine.route_request(task, parsed.chat)
        except (routing.RoutingFailed, routing.NoEligibleModel, ranking.NoRoute) as exc:
            return _error(dialect, parsed.refusal(self._routing_error(exc)), request_id)
        self._report(result.attempts, result.model_id)
        decision = result.routing_decision
        headers = common.grove_headers(
            result.model_id,
            decision,
            result.attempts,
            sum(1 for a in result.attempts if a.outcome is not routing.AttemptOutcome.SKIPPED),
            result.request_id,
            result.version,
        )
        return _json(dialect.answer(result), 200, headers)

    def _stream(
        self,
        task: ranking.TaskRequest,
        parsed: common.Parsed,
        dialect: ModuleType,
        request_id: str,
    ) -> Response:
        async def opened() -> common.Opened:
            try:
                stream = await self.engine.open_stream(task, parsed.chat)
            except (routing.RoutingFailed, routing.NoEligibleModel, ranking.NoRoute) as exc:
                raise parsed.refusal(self._routing_error(exc)) from None
            self._report(stream.attempts, stream.model_id)
            headers = common.grove_headers(
                stream.model_id,
                stream.decision,
                stream.attempts,
                stream.tried,
                stream.request_id,
                stream.version,
            )
            return headers, dialect.events(stream, parsed)

        return common.EventStream(
            opened,
            lambda failure: _error(dialect, failure, request_id),
            send_timeout_s=self.engine.settings.stream_idle_s,
        )

    def _routing_error(self, exc: errors.GroveError) -> GatewayError:
        """The caller's error for what the router raised; a 429 or 503 says when a model
        may be called again (its circuit half-opens), or in a second."""
        self._failed_over(exc)
        failure = common.routing_error(exc)
        decision = getattr(exc, "decision", None)  # RoutingFailed's and NoEligibleModel's
        if failure.retry_after_s is not None and decision is not None:
            wait = self.engine.retry_after(decision.chain)
            failure.retry_after_s = wait if wait is not None else failure.retry_after_s
        return failure

    async def _check(self, request: Request, dialect: ModuleType) -> None:
        token = _token(request)
        try:
            await self.authenticate(request, token)
        except Refused as refused:
            kind = Kind.UNAUTHORIZED if refused.status == 401 else Kind.FORBIDDEN
            raise GatewayError(refused.status, kind, refused.message) from None

    def _report(self, attempts: Sequence[routing.AttemptReport], model_id: str) -> None:
        """A failover that ended well, for the console's live feed."""
        if attempts:
            first = attempts[0].model_id
            if first != model_id:
                self.publish("failover", {"from": first, "to": model_id})

    def _failed_over(self, exc: errors.GroveError) -> None:
        if isinstance(exc, routing.RoutingFailed) and len(exc.attempts) > 1:
            self.publish("failover", {"chain": list(exc.decision.chain), "failed": True})


# where SDKs land when their base URL lacks /v1 (the console serves none of these)
MISDIRECTED = ("/chat/completions", "/completions", "/embeddings", "/messages")
ANTHROPIC_PATHS = ("/v1/messages", "/messages")


async def _misdirected(request: Request) -> Response:
    """A gateway call without ``/v1`` (an OpenAI SDK whose base URL lacks it): a 404 in
    the caller's format that says where the gateway is."""
    dialect = _caller(request.url.path, request.headers)
    failure = GatewayError(
        404,
        Kind.NOT_FOUND,
        f"the gateway is at /v1: POST /v1{request.url.path}. Set the OpenAI SDK's base_url "
        "to http://<grove>/v1 (the Anthropic SDK's to http://<grove>)",
    )
    return _error(dialect, failure, None)


def _not_allowed(dialect: ModuleType, allowed: str) -> Response:
    failure = GatewayError(405, Kind.INVALID, f"this route takes {allowed} only")
    response = _error(dialect, failure, None)
    response.headers["allow"] = allowed
    return response


def _token(request: Request) -> str | None:
    """The caller's token: ``Authorization: Bearer`` (the OpenAI SDK), or ``x-api-key``
    (the Anthropic SDK); either SDK may call either endpoint."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None
    return request.headers.get("x-api-key") or None


def _json(body: dict[str, Any], status: int, headers: dict[str, str]) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _error(dialect: ModuleType, failure: GatewayError, request_id: str | None) -> Response:
    """The failure in the caller's format, with Retry-After when there is a time to give."""
    headers: dict[str, str] = {}
    if failure.retry_after_s is not None:
        # rounded up: a caller that waits as long as it is told finds the circuit half-open
        headers["retry-after"] = str(max(1, math.ceil(failure.retry_after_s)))
    if request_id is not None:
        headers["x-request-id"] = request_id
    if failure.status == 401:
        headers["www-authenticate"] = "Bearer"
    return _json(dialect.error(failure), failure.status, headers)


def edge_refusal(
    path: str, headers: Mapping[str, str], status: int, message: str
) -> Response | None:
    """A refusal at the server's edge (a body too large, too slow or nested too deep) of
    a ``/v1`` request, in its caller's format (``headers`` lower-cased); None for any
    other path (the API's problem document then)."""
    if not path.startswith(PREFIX):
        return None
    kind = {408: Kind.TIMEOUT, 413: Kind.TOO_LARGE}.get(status, Kind.INVALID)
    return _error(_caller(path, headers), GatewayError(status, kind, message), None)


def _caller(path: str, headers: Mapping[str, str]) -> ModuleType:
    """The caller's format (``headers`` lower-cased, or Starlette's): Anthropic's at its
    own endpoint (``/messages`` too, without /v1) or when its SDK's ``anthropic-version``
    header is there, as it is on every request of that SDK; else OpenAI's."""
    if path in ANTHROPIC_PATHS or "anthropic-version" in headers:
        return anthropic
    return openai


PREFIX = "/v1/"  # the paths the Front serves


class Front:
    """The gateway's endpoints as an ASGI app of their own, which the server's edge
    (``api.limits.BodyLimits``, once a body has passed its limits) calls for every path
    under ``/v1/``: a routed call skips the API framework's layers (its error
    middlewares, exit stack and router: 60 to 90 us of the time to the first streamed
    chunk under load, bench/README.md), none of which a gateway call uses, and is sent
    to its endpoint by one look-up of its path (Starlette's router would try each
    route's pattern and wrap the endpoint in two more layers). ``app`` (the API's) is
    what the endpoints see as ``request.app``: the token check reads its services there.

    Anything the endpoints raise that they did not answer is logged by its type only
    (its words can hold a caller's data) and answered 500 in the caller's format, or,
    once a stream has begun, ends the connection (uvicorn closes it)."""

    def __init__(self, gateway: Gateway, app: Starlette) -> None:
        self.app = app
        self.endpoints = gateway.endpoints()
        self.unknown = gateway.unknown

    async def __call__(
        self, scope: common.Scope, receive: common.Receive, send: common.Send
    ) -> None:
        scope["app"] = self.app
        started = False

        async def sending(message: common.Message) -> None:
            nonlocal started
            started = True
            await send(message)

        endpoint = self.endpoints.get(scope["path"], self.unknown)
        try:
            response = await endpoint(Request(scope, receive))
            await response(scope, receive, sending)
        except Exception as exc:
            logs.event(log, "gateway-error", level=logging.ERROR, error=type(exc).__name__)
            if started:
                raise
            failure = GatewayError(500, Kind.INTERNAL, "the gateway failed; see the server's log")
            dialect = _caller(scope["path"], Request(scope).headers)
            await _error(dialect, failure, None)(scope, receive, send)


def mount(app: Starlette) -> None:
    """Put the paths an SDK whose base URL lacks /v1 lands on into ``app`` (the API's),
    each answered with a 404 in the caller's format that says where the gateway is.
    The gateway itself is not in ``app``: the server's edge sends every /v1/ path to
    :class:`Front`."""
    app.router.routes[:0] = [Route(path, _misdirected, methods=["POST"]) for path in MISDIRECTED]
