"""The normalized request, response and failure every provider adapter speaks.

Adapters translate these to and from one provider's wire format (Anthropic
Messages, Gemini generateContent, OpenAI chat completions) or simulate a model
in process (``mock``). Failures are classified once, here, into the kinds the
router acts on: timeouts, rate limits, server errors and connection errors
(and unusable responses) move a call to the next model of the chain; a client
error (4xx) does not, because the next model would refuse the same request.
No message here ever contains a credential or a response body.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncGenerator, Mapping
from enum import StrEnum
from typing import Any, Protocol

from reconciler.base import errors
from reconciler.manifests import kinds as manifests

MAX_TOKENS = 10**9  # the largest token count an answer may carry (and a log column holds)


@dataclasses.dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for: its id (the provider's, or one Grove made
    up for Gemini, which gives none), the function's name, and its arguments as the
    JSON text OpenAI carries (Anthropic and Gemini give an object: it is serialized)."""

    id: str
    name: str
    arguments: str = "{}"


@dataclasses.dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: name, description and a JSON Schema of its
    parameters (an object; ``{"type": "object"}`` when the caller gave none)."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    strict: bool | None = None  # OpenAI's strict mode: arguments exactly as the schema says


class ToolChoiceMode(StrEnum):
    AUTO = "auto"  # the model decides
    NONE = "none"  # no tool call
    REQUIRED = "required"  # some tool call (Anthropic's "any")
    TOOL = "tool"  # this one tool (``ToolChoice.name``)


@dataclasses.dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: ToolChoiceMode
    name: str | None = None  # with mode TOOL


class ResponseKind(StrEnum):
    JSON_OBJECT = "json_object"  # any JSON object
    JSON_SCHEMA = "json_schema"  # JSON matching ``ResponseFormat.schema``


@dataclasses.dataclass(frozen=True, slots=True)
class ResponseFormat:
    kind: ResponseKind
    schema: Mapping[str, Any] | None = None  # with JSON_SCHEMA
    name: str | None = None
    strict: bool | None = None
    description: str | None = None  # what the answer is for, as guidance to the model


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One turn. ``role`` is "system", "user", "assistant" or "tool"; an assistant turn
    may carry ``tool_calls`` (its ``content`` may then be empty); a tool turn answers
    the call ``tool_call_id`` (of function ``name`` when known: Gemini needs it)."""

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ChatRequest:
    """What the caller asked, in no provider's format. ``None`` and empty mean "not
    given": an adapter sends only what was given, and raises a ``client_error``
    :class:`ProviderError` naming the field (:meth:`Adapter.refuse`) for one its
    provider cannot honour, never dropping it."""

    messages: tuple[Message, ...]
    max_tokens: int = 512
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None

    @classmethod
    def of(cls, prompt: str, *, max_tokens: int = 512, system: str | None = None) -> ChatRequest:
        messages = (Message("system", system),) if system else ()
        return cls((*messages, Message("user", prompt)), max_tokens=max_tokens)


class FinishReason(StrEnum):
    """Why the model stopped, in OpenAI's words (each format maps to these)."""

    STOP = "stop"  # the end of its turn, or a stop sequence
    LENGTH = "length"  # max_tokens
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"


@dataclasses.dataclass(frozen=True, slots=True)
class ChatResponse:
    model_id: str
    provider_model: str
    text: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: float
    counted: bool = True  # False: the provider gave no token counts (both are then 0)
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = FinishReason.STOP


@dataclasses.dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text, as the provider streamed it."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of tool call number ``index`` (0, 1, ... in the answer's order): its
    first delta has ``id`` and ``name``; ``arguments`` are fragments of its JSON text,
    to be joined."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last item of every stream that ended well: why, and the token counts."""

    finish_reason: FinishReason
    input_tokens: int
    output_tokens: int
    counted: bool = True  # False: the provider gave no counts (openai-compatible only)


Delta = TextDelta | ToolCallDelta | StreamEnd


class FailureKind(StrEnum):
    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    CONNECTION_ERROR = "connection_error"
    BAD_RESPONSE = "bad_response"  # 3xx, malformed or oversized body: the model is unusable now
    CLIENT_ERROR = "client_error"  # 4xx: the request itself is wrong; no failover
    CONFIGURATION = "configuration"  # missing key, refused address: fix the manifest or env


# Failure kinds a rule's ``failover.on`` can name, and the kinds that count as each.
FAILOVER_KINDS: dict[manifests.FailureKind, frozenset[FailureKind]] = {
    manifests.FailureKind.TIMEOUT: frozenset({FailureKind.TIMEOUT}),
    manifests.FailureKind.RATE_LIMIT: frozenset({FailureKind.RATE_LIMIT}),
    manifests.FailureKind.SERVER_ERROR: frozenset(
        {FailureKind.SERVER_ERROR, FailureKind.BAD_RESPONSE}
    ),
    manifests.FailureKind.CONNECTION_ERROR: frozenset(
        {FailureKind.CONNECTION_ERROR, FailureKind.CONFIGURATION}
    ),
}


class ProviderError(errors.GroveError):
    """One failed call: its kind, the HTTP status if any, and a Retry-After if given.

    Of neither family: its ``kind`` says whether the next model is worth a try (a
    timeout, a rate limit) or not (a client error); the router decides, never a caller."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s
        self.field = field  # the request field a client_error is about, when Grove refused it

    def moves_on(self, allowed: frozenset[manifests.FailureKind]) -> bool:
        """Whether a rule with ``failover.on = allowed`` tries the next model after this."""
        return any(self.kind in FAILOVER_KINDS[kind] for kind in allowed)


def cost_of(model: manifests.AIModel, input_tokens: int, output_tokens: int) -> float:
    """The price of one call: finite and never negative, whatever the adapter was handed.

    Counts that are not integers from 0 to :data:`MAX_TOKENS` make the attempt a
    ``bad_response`` (adapters check them first; this is the backstop every adapter
    shares)."""
    for name, count in (("input", input_tokens), ("output", output_tokens)):
        if type(count) is not int or not 0 <= count <= MAX_TOKENS:
            raise ProviderError(
                FailureKind.BAD_RESPONSE,
                f"{model.id}: the {name} token count is not an integer from 0 to {MAX_TOKENS:,}",
            )
    pricing = model.payload.pricing
    if pricing is None:
        return 0.0
    cost = (
        input_tokens * pricing.input_per_m_tok + output_tokens * pricing.output_per_m_tok
    ) / 1_000_000
    if not math.isfinite(cost) or cost < 0:  # pricing is validated; this would be a bug
        raise ProviderError(
            FailureKind.CONFIGURATION, f"{model.id}: pricing gives a cost of {cost!r}"
        )
    return cost


class Adapter(Protocol):
    async def complete(self, model: manifests.AIModel, request: ChatRequest) -> ChatResponse:
        """Call the model; raise :class:`ProviderError` on any failure."""
        ...

    def stream(self, model: manifests.AIModel, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """Call the model with streaming: an async generator of :data:`Delta` ending with
        one :class:`StreamEnd`; any failure, before the first delta or after, is a
        :class:`ProviderError`. Closing the generator early closes the upstream
        connection at once. Every read is bounded by the idle deadline and the model's
        whole-call deadline."""
        ...


def refuse(model: manifests.AIModel, field: str, why: str) -> ProviderError:
    """The ``client_error`` for a request field this model cannot honour: not sent, not
    failed over (the next model is asked only when the caller changes the request).
    ``field`` is the caller's name for it (``response_format``, ``messages[2].content``)."""
    return ProviderError(
        FailureKind.CLIENT_ERROR,
        f"{field}: {why} ({model.id}, provider {model.payload.provider.value})",
        field=field,
    )
