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
from enum import StrEnum
from typing import Protocol

from reconciler.base import errors
from reconciler.manifests import kinds as manifests

MAX_TOKENS = 10**9  # the largest token count an answer may carry (and a log column holds)


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclasses.dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[Message, ...]
    max_tokens: int = 512
    temperature: float | None = None

    @classmethod
    def of(cls, prompt: str, *, max_tokens: int = 512, system: str | None = None) -> ChatRequest:
        messages = (Message("system", system),) if system else ()
        return cls((*messages, Message("user", prompt)), max_tokens=max_tokens)


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
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s

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
