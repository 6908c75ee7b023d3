"""ASGI middleware that refuses what would be expensive before anything parses it.

In this order, for every HTTP request:

1. A request without credentials to a route that needs a token gets the 401 the
   route's own check gives, before a byte of its body is read. Which routes need
   one is read from the app's routes (:class:`Gate`: a route whose dependencies
   include a security scheme, such as ``deps.RoleCheck``'s bearer), not from a
   list of paths; the git webhook (signed), ``/openapi.json`` and the probes need
   none and are not touched. Only the presence of a credential is looked at here:
   whether it is valid is the route's business.
2. Bodies over the cap get 413 (from the Content-Length, or while reading a
   chunked body); a body that has not all arrived ``body_timeout_s`` after the
   headers gets 408 and the connection is closed (a client trickling a body, a
   byte at a time, would otherwise hold its connection for ever; the headers
   have their own clock, ``api/connections.py``).
3. JSON nested deeper than a bound gets 422 before Python's recursive parser
   could meet it. The scan (:func:`deeper_than`) stops as soon as the bound is
   passed, visits each string and each run of brackets once, and runs in a
   thread of its own for bodies over :data:`SCAN_INLINE_BYTES` with many
   brackets, so no body stalls the event loop.

The body is buffered (it is capped) and replayed to the application. Refusals
are the same problem documents as every other error. Nothing here checks a
token or touches the database.

Why not FastAPI's own ``max_body_size`` (FastAPI 0.165, Starlette 1.10): its
limiter answers a fixed ``Content Too Large`` in plain text, and replaces any
answer to a request whose declared Content-Length is over the cap with that
text, so the 413 could not be the problem document (``too-large``) every other
error is; and it has no deadline for a trickled body nor a nesting bound, which
need the buffered body anyway. The cap is enforced where the body is buffered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

import fastapi.routing
from fastapi.dependencies.models import Dependant
from fastapi.security import APIKeyHeader
from fastapi.security.base import SecurityBase
from fastapi.security.http import HTTPBase
from starlette.responses import Response
from starlette.routing import BaseRoute, Match

from reconciler import gateway
from reconciler.api import problems
from reconciler.api.problems import ApiError
from reconciler.store import tokens

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Headers that carry a credential on every route that takes one: the bearer token,
# and Anthropic's x-api-key (DESIGN section 12), whatever the route declares.
CREDENTIAL_HEADERS = ("authorization", "x-api-key")
# Bodies up to this size are scanned on the event loop (a few milliseconds at worst);
# larger ones with more brackets than the bound in a thread of their own.
SCAN_INLINE_BYTES = 16 * 1024
# One thread: concurrent large scans wait their turn instead of each taking a share
# of the interpreter lock from the event loop.
_SCANNER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="grove-json")

# A JSON string (escapes and all), or a run of opening or of closing brackets.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\[\s\S][^"\\]*)*"|[\[{]+|[\]}]+')
_QUOTE, _OPENING = 0x22, (0x5B, 0x7B)


def deeper_than(body: bytes, max_depth: int) -> bool:
    """Whether ``body`` nests ``[``/``{`` deeper than ``max_depth`` outside strings.

    One linear pass without recursion that stops as soon as the bound is passed.
    Most bodies are cleared by two counts (in C): nesting needs an opening bracket
    per level. Otherwise each string and each run of brackets is one match of
    :data:`_TOKENS` (in C), so strings cost nothing per byte and ``[[[[`` is one
    step. An unterminated string is not skipped: its brackets count, which can
    only refuse a body that is not JSON anyway.
    """
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    depth = 0
    for match in _TOKENS.finditer(body):
        start, end = match.span()
        first = body[start]
        if first == _QUOTE:
            continue
        if first in _OPENING:
            depth += end - start
            if depth > max_depth:
                return True
        else:
            depth -= end - start
    return False


async def _deeper_off_loop(body: bytes, max_depth: int) -> bool:
    """:func:`deeper_than`, in the scanner's thread when the body is large and
    bracket-heavy (the two counts clear most bodies at once, on the loop)."""
    if len(body) <= SCAN_INLINE_BYTES:
        return deeper_than(body, max_depth)
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False  # deeper_than's own first test, without counting twice
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_SCANNER, deeper_than, body, max_depth)


@dataclasses.dataclass(frozen=True)
class _Guarded:
    """A route, whether it needs a credential, and the headers its schemes read one from."""

    matches: Callable[[Scope], tuple[Match, Scope]]
    needs_token: bool
    key_headers: tuple[str, ...] = ()


class Gate:
    """Which requests are refused for want of a credential, read from the app's routes.

    A route needs one when a dependency of it (at any depth) is a security scheme;
    a request has one when it carries ``Authorization: Bearer <something>``,
    ``x-api-key`` or a header an ``APIKeyHeader`` of the route names. A request is
    matched against the routes as Starlette's router does (first full match); one
    that matches none, or only by path (405), is left to the app, and so is every
    request while the app has dependency overrides (tests replacing the checks).
    """

    def __init__(
        self, routes: Sequence[BaseRoute], overrides: Mapping[Any, Any] | None = None
    ) -> None:
        self._routes = [_guarded(route) for route in _flattened(routes)]
        self._overrides = overrides if overrides is not None else {}

    def refuses(self, scope: Scope, headers: dict[str, str]) -> bool:
        if _credential(headers):
            return False  # the common case, decided without matching any route
        if self._overrides:
            return False
        for guarded in self._routes:
            match, _ = guarded.matches(scope)
            if match is Match.FULL:
                return guarded.needs_token and not any(
                    headers.get(name) for name in guarded.key_headers
                )
        return False


def _credential(headers: dict[str, str]) -> bool:
    """Whether the request carries something shaped like a Grove token (a bearer, or
    Anthropic's ``x-api-key``): anything else could never pass the route's check, so
    ``Bearer x`` buys no body work either. Whether the token is valid is the route's
    business (it needs the database)."""
    scheme, _, bearer = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and tokens.well_formed(bearer.strip()):
        return True
    return tokens.well_formed(headers.get("x-api-key", "").strip())


def _flattened(routes: Sequence[BaseRoute]) -> Iterator[Any]:
    """Every route in the order the router tries them. FastAPI 0.165 includes a router
    as one entry and resolves its routes (with the inclusion's dependencies) on
    demand; its ``iter_route_contexts`` lists them. Earlier versions copy them in."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    return iter(contexts(routes)) if contexts is not None else iter(routes)


def _guarded(route: Any) -> _Guarded:
    dependant = getattr(route, "dependant", None)  # the routes of FastAPI, with their inclusion's
    if not isinstance(dependant, Dependant):
        return _Guarded(route.matches, needs_token=False)
    schemes = [d.call for d in _dependencies(dependant) if isinstance(d.call, SecurityBase)]
    # a scheme this gate cannot read (a cookie, a query parameter) is the route's to check
    readable = all(isinstance(s, (HTTPBase, APIKeyHeader)) for s in schemes)
    keys = tuple(s.model.name.lower() for s in schemes if isinstance(s, APIKeyHeader))
    return _Guarded(route.matches, needs_token=bool(schemes) and readable, key_headers=keys)


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for inner in dependant.dependencies:
        yield inner
        yield from _dependencies(inner)


class BodyLimits:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        max_depth: int,
        gate: Gate | None = None,
        body_timeout_s: float | None = None,
        front: ASGIApp | None = None,
    ) -> None:
        self.app = app
        # a /v1/ request past the limits goes straight to the gateway (gateway.Front),
        # not through the API framework's layers, which it does not use
        self.front = front
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.gate = gate
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.gate is not None and self.gate.refuses(scope, headers):
            await _refuse(scope, headers, send, problems.UNAUTHORIZED)
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse(scope, headers, send, self._too_large())
            return
        loop = asyncio.get_running_loop()
        due = None if self.body_timeout_s is None else loop.time() + self.body_timeout_s
        try:
            async with asyncio.timeout_at(due):  # one timer for the whole body
                body = await self._read(receive)
        except TimeoutError:
            response = _refusal(scope, headers, self._too_slow())
            response.headers["Connection"] = "close"  # the rest of the body is not read
            await response({"type": "http"}, _nothing, send)
            return
        if body is None:  # the client went away
            return
        if len(body) > self.max_bytes:
            await _refuse(scope, headers, send, self._too_large())
            return
        kind = headers.get("content-type", "").lower()
        # the gateway parses any body as JSON, whatever its type says
        to_gateway = scope.get("path", "").startswith(gateway.PREFIX)  # /v1/
        scanned = "json" in kind or to_gateway
        if body and scanned and await _deeper_off_loop(body, self.max_depth):
            detail = f"JSON nested deeper than {self.max_depth} levels"
            await _refuse(
                scope, headers, send, ApiError(422, "too-deep", "JSON nested too deep", detail)
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if to_gateway and self.front is not None:
            await self.front(scope, replay, send)
        else:
            await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None if the client disconnects; reading stops at the first
        chunk past the cap (what it returns is then longer than the cap)."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more and size <= self.max_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _too_large(self) -> ApiError:
        detail = f"request bodies are capped at {self.max_bytes} bytes"
        return ApiError(413, "too-large", "Request body too large", detail)

    def _too_slow(self) -> ApiError:
        detail = f"the request body did not arrive within {self.body_timeout_s:g} s"
        return ApiError(408, "body-timeout", "Request body too slow", detail)


async def _refuse(scope: Scope, headers: Mapping[str, str], send: Send, error: ApiError) -> None:
    await _refusal(scope, headers, error)({"type": "http"}, _nothing, send)


def _refusal(scope: Scope, headers: Mapping[str, str], error: ApiError) -> Response:
    """The same problem document every other error gets (``problems.respond``), or for
    the gateway's ``/v1`` routes the error in its caller's format (``headers``: the
    request's, lower-cased)."""
    path = scope.get("path", "")
    return gateway.edge_refusal(path, headers, error.status, error.detail) or (
        problems.respond(error)
    )


async def _nothing() -> Message:
    """The ``receive`` of a refusal's answer: the request was refused, nothing more is read."""
    return {"type": "http.disconnect"}
