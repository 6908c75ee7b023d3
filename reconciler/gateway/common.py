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
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping, Sequence
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from starlette.responses import Response

from reconciler.base import diagnostics
from reconciler.manifests import kinds as manifests
from reconciler.providers import answers
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

    INVALID = "invalid_request"  # 400 (405 and 422 too)
    TOO_LARGE = "too_large"  # 413
    UNAUTHORIZED = "authentication"  # 401
    FORBIDDEN = "permission"  # 403
    NOT_FOUND = "not_found"  # 404 (model_not_found)
    RATE_LIMITED = "rate_limit"  # 429
    UPSTREAM = "upstream"  # 502: every model failed
    UNAVAILABLE = "unavailable"  # 503: no model may be called now
    TIMEOUT = "timeout"  # 504: the deadline passed
    INTERNAL = "internal"  # 500: the gateway itself failed


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


def finite(value: Any, where: str) -> None:
    """Refuse a number JSON cannot carry (``NaN``, ``Infinity``, ``1e400``) anywhere in
    ``value``: the parser takes them, and a provider would refuse the request without
    naming the field (or worse, Python's JSON would send them as they are)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise invalid(where, "holds NaN, Infinity or a number beyond 1e308")
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def body_refusal(exc: ValidationError, not_carried: frozenset[str]) -> GatewayError:
    """The 400 for a body that does not validate, naming its first wrong field as the
    caller wrote it (pydantic's names of union members left out); a known parameter
    Grove does not carry (``not_carried``) says so rather than "unknown"."""
    first = exc.errors(include_url=False)[0]
    loc = first["loc"]
    where = answers.path(tuple(p for p in loc if isinstance(p, int) or not _union_member(p)))
    if first["type"] == "extra_forbidden":
        name = str(loc[-1])
        if len(loc) == 1 and name in not_carried:
            return invalid(
                name,
                "Grove's gateway does not carry this parameter to every provider, so it "
                "is refused rather than dropped; leave it out",
            )
        return invalid(where, "unknown field; Grove refuses what it cannot honour")
    if first["type"] == "json_invalid":
        return GatewayError(400, Kind.INVALID, "the body is not valid JSON")
    if first["type"] == "missing":
        return invalid(where, "is required")
    if not where:
        return GatewayError(400, Kind.INVALID, "the body must be a JSON object")
    return invalid(where, first["msg"][:200])


def _union_member(part: str) -> bool:
    """Whether a location part is pydantic's name for a member of a union (``str``,
    ``list[...]``, ``function-after[...]``, a model class), not a field of the body."""
    return part == "str" or "[" in part or part.startswith(("function-", "literal", "_"))


def conversation(chat: ChatRequest) -> ChatRequest:
    """``chat``, if it has a turn to answer: system messages alone are no conversation."""
    if all(m.role == "system" for m in chat.messages):
        raise invalid("messages", "holds no user, assistant or tool turn to answer")
    return chat


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
    # the caller's name of a field a provider refused (named as OpenAI's callers name
    # them, ``stop``, ``messages[3]``), where the caller's format names it otherwise
    rename: Callable[[str], str] | None = None

    def refusal(self, failure: GatewayError) -> GatewayError:
        """``failure``, naming its field as the caller does."""
        if failure.field is None or self.rename is None:
            return failure
        named = self.rename(failure.field)
        failure.message = failure.message.replace(failure.field, named, 1)
        failure.field = named
        return failure


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
        if not all(wanted):
            raise invalid(
                "model", f"name capabilities, comma-separated: {', '.join(sorted(known))}"
            )
        unknown = [part for part in wanted if part not in known]
        if unknown:
            shown = ", ".join(diagnostics.printable(u)[:40] for u in unknown[:5])
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
        f"model '{shown}' is not served here; name {listed}",
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


def broken(exc: routing.StreamBroken) -> Kind:
    """The kind of error event that ends a stream whose model failed mid-way."""
    return Kind.TIMEOUT if exc.error.kind is FailureKind.TIMEOUT else Kind.UPSTREAM


# ---------------------------------------------------------------- headers


def grove_headers(
    model_id: str,
    decision: ranking.RoutingDecision,
    attempts: Sequence[routing.AttemptReport],
    called: int,
    request_id: str,
    version: str | None,
) -> dict[str, str]:
    """Who answered, by which rule, after how many calls, and which models failed or
    were passed over first and how (``x-grove-failover: a (skipped), b (timeout)``): a
    fallback is never silent, not even one decided before any call (a model whose
    circuit was open). ``called`` counts the models called, the one answering included."""
    rule_id = decision.rule_id
    headers = {
        "x-grove-model": model_id,
        "x-grove-rule": rule_id or "",
        "x-grove-attempts": str(called),
        "x-request-id": request_id,
    }
    if version is not None:
        headers["x-grove-version"] = version
    failed = [f"{model} (skipped)" for model, _ in decision.passed_over]
    failed += [
        f"{a.model_id} ({a.outcome.value})"
        for a in attempts
        if a.outcome is not routing.AttemptOutcome.SUCCESS
    ]
    if failed:
        headers["x-grove-failover"] = ", ".join(failed[:MAX_LISTED])
    return headers


# ---------------------------------------------------------------- streaming


Opened = tuple[dict[str, str], AsyncGenerator[bytes, None]]


class _Watching(Response):
    """An answer (an ASGI app) made by :meth:`_serve` while a watcher waits for the
    caller's ``http.disconnect``: when the caller goes, the work is cancelled at once,
    wherever it is (a provider call in flight is closed and its attempt logged
    ``cancelled``: the caller's doing, counted against no model)."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def _serve(self, scope: Scope, send: Send) -> None:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The work runs in this task (no task of its own: each hop between tasks is a
        # turn of the event loop before the first byte); the watcher cancels it.
        task = asyncio.current_task()
        assert task is not None
        state = {"left": False, "over": False}

        def gone(watcher: asyncio.Future[None]) -> None:
            if not state["over"] and not watcher.cancelled():
                state["left"] = True
                task.cancel()

        watcher = asyncio.ensure_future(_disconnected(receive))
        watcher.add_done_callback(gone)
        try:
            await self._serve(scope, send)
        except (asyncio.CancelledError, OSError):
            if not state["left"]:
                raise
            task.uncancel()  # the caller left: the work is stopped, and that is all
        finally:
            state["over"] = True  # a callback already scheduled must not cancel us later
            watcher.cancel()


class Watched(_Watching):
    """A plain answer, watched: ``make`` returns the answer to send."""

    def __init__(self, make: Callable[[], Awaitable[Response]]) -> None:
        super().__init__()
        self.make = make

    async def _serve(self, scope: Scope, send: Send) -> None:
        await (await self.make())(scope, _nothing, send)


class EventStream(_Watching):
    """A streamed answer, watched from the moment the request is in: the caller leaving
    while the chain is walked for a first delta, or mid-stream, closes the upstream call
    at once (not at the next chunk, which a stalled provider may never send).

    ``opener`` routes the call and returns the answer's headers and its events; a
    :class:`GatewayError` from it (every model failed before a first delta) is answered
    by ``refuse`` instead, with its own status. The provider is read at its own pace
    into a queue (its stream is capped in size), and the caller written from it: a
    caller that stops reading never holds a provider's connection past its deadline, nor
    makes the model look slow. A caller that takes no chunk for ``send_timeout_s`` is
    treated as gone."""

    def __init__(
        self,
        opener: Callable[[], Awaitable[Opened]],
        refuse: Callable[[GatewayError], Response],
        *,
        send_timeout_s: float,
    ) -> None:
        super().__init__()
        self.opener = opener
        self.refuse = refuse
        self.send_timeout_s = send_timeout_s

    async def _serve(self, scope: Scope, send: Send) -> None:
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
        # the opening events and the first delta's, already in hand: sent from this task,
        # before the reader starts (the time to the first chunk is one write)
        try:
            first = await anext(events)
        except StopAsyncIteration:
            first = b""
        reader: asyncio.Future[None] | None = None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": raw})
            if first:
                await send({"type": "http.response.body", "body": first, "more_body": True})
            queue: asyncio.Queue[bytes | None] = asyncio.Queue()
            reader = asyncio.ensure_future(_pump(events, queue))
            loop = asyncio.get_running_loop()
            # one timer for the stream, re-armed around each write (not one per chunk)
            async with asyncio.timeout(None) as deadline:
                ended = False
                while not ended:
                    chunks, ended = await _waiting(queue)
                    if chunks or ended:  # the last events and the stream's end: one write
                        deadline.reschedule(loop.time() + self.send_timeout_s)
                        body = {"type": "http.response.body", "body": chunks}
                        await send({**body, "more_body": not ended})
                        deadline.reschedule(None)
        except TimeoutError:
            return  # the caller took nothing for send_timeout_s: gone (the reader is cancelled)
        finally:
            if reader is None:  # the first write failed: the events are closed here
                await events.aclose()
            else:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader


async def _waiting(queue: asyncio.Queue[bytes | None]) -> tuple[bytes, bool]:
    """Every chunk the reader has queued, joined (one write for what arrived together,
    such as a stream's opening events), and whether the stream's end is among them."""
    parts = [await queue.get()]
    while not queue.empty():
        parts.append(queue.get_nowait())
    ended = parts[-1] is None
    return b"".join(part for part in parts if part is not None), ended


async def _pump(events: AsyncGenerator[bytes, None], queue: asyncio.Queue[bytes | None]) -> None:
    """Read the events as the provider sends them; None marks the end. Cancelled, the
    events generator is closed, and with it the provider's connection."""
    try:
        async for chunk in events:
            queue.put_nowait(chunk)
    finally:
        queue.put_nowait(None)
        await events.aclose()


async def _nothing() -> Message:
    """The ``receive`` of an answer sent from inside a watched one: nothing more is read."""
    return {"type": "http.disconnect"}


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
