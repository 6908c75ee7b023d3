"""What both dialects of the gateway share: the request as parsed, errors, the ``model``
field, and the event-stream response that cancels the upstream call when the caller goes.

A dialect (:mod:`.openai`, :mod:`.anthropic`) parses the caller's body into a
:class:`Parsed` (the normalized :class:`~reconciler.providers.base.ChatRequest` plus
what the answer needs) and renders answers, stream events and errors in its own
format. Everything that can go wrong is a :class:`GatewayError` with the HTTP status,
a kind the dialect maps to its error type, the field it is about, and a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from enum import StrEnum
from typing import Any

from starlette.responses import Response

from reconciler.base import diagnostics
from reconciler.manifests import kinds as manifests
from reconciler.providers.base import ChatRequest, FailureKind
from reconciler.routing import engine as routing
from reconciler.routing import ranking

CAPABILITY_PREFIX = "capability:"
MAX_LISTED = 50  # names a model_not_found message lists at most
MAX_REQUEST_ID = 64

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Kind(StrEnum):
    """What went wrong, in words both dialects map to their error types."""

    INVALID = "invalid_request"  # 400
    UNAUTHORIZED = "authentication"  # 401
    FORBIDDEN = "permission"  # 403
    NOT_FOUND = "not_found"  # 404 (model_not_found)
    RATE_LIMITED = "rate_limit"  # 429
    UPSTREAM = "upstream"  # 502: every model failed
    UNAVAILABLE = "unavailable"  # 503: no model may be called now
    TIMEOUT = "timeout"  # 504: the deadline passed


class GatewayError(Exception):
    """An answer the gateway gives instead of the model's: status, kind, message, and the
    request field it is about (``param`` in OpenAI's errors)."""

    def __init__(
        self,
        status: int,
        kind: Kind,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.field = field
        self.code = code
        self.retry_after_s = retry_after_s


def invalid(field: str, message: str) -> GatewayError:
    """The 400 for a field Grove cannot take or honour; the message starts with its name."""
    return GatewayError(400, Kind.INVALID, f"{field}: {message}", field=field)


@dataclasses.dataclass(frozen=True, slots=True)
class Parsed:
    """A caller's request as the router takes it."""

    model: str
    chat: ChatRequest
    stream: bool = False
    include_usage: bool = False  # OpenAI's stream_options.include_usage


# ---------------------------------------------------------------- the model field


def resolve(name: str, table: ranking.RoutingTable, request_id: str | None) -> ranking.TaskRequest:
    """The routing request the ``model`` field names: a rule's taskType (that rule, with its
    failover), a model id (it first, then its fallbacks) or ``capability:a,b`` (ad hoc).
    A 404 ``model_not_found`` listing what exists for anything else."""
    if name in table.by_task:
        return ranking.TaskRequest(task_type=name, request_id=request_id)
    if name in table.models:
        return ranking.TaskRequest(model=name, request_id=request_id)
    if name.startswith(CAPABILITY_PREFIX):
        wanted = [part.strip() for part in name[len(CAPABILITY_PREFIX) :].split(",")]
        known = {c.value for c in manifests.CapabilityType}
        unknown = [part for part in wanted if part not in known]
        if unknown or not wanted:
            shown = ", ".join(diagnostics.printable(u)[:40] for u in unknown[:5]) or "none"
            raise invalid(
                "model",
                f"unknown capability {shown}; capabilities are {', '.join(sorted(known))}",
            )
        capabilities = tuple(manifests.CapabilityType(part) for part in wanted)
        return ranking.TaskRequest(capabilities=capabilities, request_id=request_id)
    raise not_found(name, table)


def not_found(name: str, table: ranking.RoutingTable) -> GatewayError:
    rules = sorted(table.by_task)[:MAX_LISTED]
    models = list(table.enabled)[:MAX_LISTED]
    shown = diagnostics.printable(name)[:100]
    listed = (
        f"a rule's taskType ({', '.join(rules) or 'no enabled rule'}), "
        f"a model id ({', '.join(models) or 'no enabled model'}) or "
        f"capability:<names> (such as capability:reasoning,speed)"
    )
    return GatewayError(
        404,
        Kind.NOT_FOUND,
        f"model {shown!r} is not served here; name {listed}",
        field="model",
        code="model_not_found",
    )


def listing(table: ranking.RoutingTable) -> list[tuple[str, str]]:
    """What ``GET /v1/models`` lists: each enabled rule's taskType, then each enabled
    model, as (name, what it is)."""
    return [(task, "rule") for task in sorted(table.by_task)] + [
        (model, "model") for model in table.enabled
    ]


def request_id(header: str | None) -> str | None:
    """The caller's ``x-request-id`` when it is a usable id (printable ASCII, at most 64
    characters; a retry with the same id gets the same canary choice), else None."""
    if header and len(header) <= MAX_REQUEST_ID and header.isascii() and header.isprintable():
        return header
    return None


# ---------------------------------------------------------------- routing errors


def routing_error(exc: Exception) -> GatewayError:
    """The caller's error for what the router raised."""
    if isinstance(exc, routing.RoutingFailed):
        return _failed(exc)
    if isinstance(exc, routing.NoEligibleModel):
        return GatewayError(
            503,
            Kind.UNAVAILABLE,
            f"no model may be called now: {exc.decision.reason}",
            retry_after_s=1.0,
        )
    if isinstance(exc, ranking.NoRoute):
        return GatewayError(404, Kind.NOT_FOUND, str(exc), field="model", code="model_not_found")
    raise exc


def _failed(exc: routing.RoutingFailed) -> GatewayError:
    if exc.client_error:
        last = exc.attempts[-1] if exc.attempts else None
        text = last.message if last is not None and last.message else str(exc)
        if exc.field is not None:  # Grove refused a field for the chosen model
            return GatewayError(400, Kind.INVALID, text, field=exc.field)
        return GatewayError(400, Kind.INVALID, f"the model refused the request: {text}")
    failed = [a for a in exc.attempts if isinstance(a.outcome, FailureKind)]
    kinds = {a.outcome for a in failed}
    summary = "; ".join(f"{a.model_id}: {a.message or a.outcome}" for a in exc.attempts)
    if failed and kinds <= {FailureKind.RATE_LIMIT}:
        return GatewayError(
            429,
            Kind.RATE_LIMITED,
            f"every model is rate limited: {summary}",
            retry_after_s=1.0,
        )
    if failed and kinds <= {FailureKind.TIMEOUT}:
        return GatewayError(504, Kind.TIMEOUT, f"no model answered in time: {summary}")
    if not failed:  # every model skipped: circuits open
        return GatewayError(
            503, Kind.UNAVAILABLE, f"no model may be called now: {summary}", retry_after_s=1.0
        )
    return GatewayError(502, Kind.UPSTREAM, f"every model failed: {summary}")


# ---------------------------------------------------------------- headers


def grove_headers(
    model_id: str,
    rule_id: str | None,
    attempts: Sequence[routing.AttemptReport],
    called: int,
    request_id: str,
    version: str | None,
) -> dict[str, str]:
    """Who answered, by which rule, after how many calls, and which models failed first
    and how (``x-grove-failover: a (timeout), b (server_error)``): a fallback is never
    silent. ``called`` counts the models called, the one answering included."""
    headers = {
        "x-grove-model": model_id,
        "x-grove-rule": rule_id or "",
        "x-grove-attempts": str(called),
        "x-request-id": request_id,
    }
    if version is not None:
        headers["x-grove-version"] = version
    failed = [a for a in attempts if a.outcome is not routing.AttemptOutcome.SUCCESS]
    if failed:
        headers["x-grove-failover"] = ", ".join(
            f"{a.model_id} ({a.outcome.value})" for a in failed[:MAX_LISTED]
        )
    return headers


# ---------------------------------------------------------------- streaming


Opened = tuple[dict[str, str], AsyncIterator[bytes]]


class EventStream(Response):
    """A streamed answer (an ASGI app) that stops as soon as the caller disconnects, from
    the moment the request is in: a watcher waits for ``http.disconnect`` beside the
    writer and cancels it, whether it is still walking the chain for a first delta (the
    attempt in flight is closed and logged ``cancelled``) or already streaming (the
    events generator closes the upstream call at once, rather than at the next chunk,
    which a stalled provider may never send).

    ``opener`` routes the call and returns the answer's headers and its events; a
    :class:`GatewayError` from it (every model failed before a first delta) is answered
    by ``refuse`` instead, with its own status."""

    def __init__(
        self,
        opener: Callable[[], Awaitable[Opened]],
        refuse: Callable[[GatewayError], Response],
    ) -> None:
        super().__init__(status_code=200)
        self.opener = opener
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writer = asyncio.ensure_future(self._write(scope, send))
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((writer, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watcher, writer):
                if not task.done():
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await writer
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _write(self, scope: Scope, send: Send) -> None:
        try:
            headers, events = await self.opener()
        except GatewayError as failure:
            await self.refuse(failure)(scope, _nothing, send)
            return
        raw = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": raw})
            async for chunk in events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()


async def _nothing() -> Message:
    """The ``receive`` of a refusal's answer: nothing more is read."""
    return {"type": "http.disconnect"}


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
