"""The ``mock`` provider: an in-process model with the manifest's latency, failure rate and reply.

For trying Grove without API keys and for tests of routing logic; it speaks
no wire format and opens no socket. It answers text only: a request with tools
or a response format is refused (naming the field), as a real model that cannot
honour them would be. The rest is honoured as a model would: the reply stops at
the first stop sequence, or after ``max_tokens`` words (a word is a token here).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncGenerator

from reconciler.manifests import kinds as manifests
from reconciler.providers.base import (
    ChatRequest,
    ChatResponse,
    Delta,
    FailureKind,
    FinishReason,
    ProviderError,
    StreamEnd,
    TextDelta,
    ToolChoiceMode,
    cost_of,
    refuse,
)

_WORD = re.compile(r"\s*\S+")  # a word with the white space before it


def words(text: str) -> list[str]:
    """``text`` in pieces of one word each, white space kept: joined, they are ``text``."""
    pieces = _WORD.findall(text)
    rest = text[sum(map(len, pieces)) :]  # white space after the last word
    if rest and pieces:
        pieces[-1] += rest
    elif rest:
        pieces.append(rest)
    return pieces


def check(model: manifests.AIModel, request: ChatRequest) -> None:
    """What a model that only answers its reply cannot honour."""
    if request.tools:
        raise refuse(model, "tools", "the mock provider calls no tools; it answers with its reply")
    choice = request.tool_choice
    if choice is not None and choice.mode in (ToolChoiceMode.REQUIRED, ToolChoiceMode.TOOL):
        raise refuse(model, "tool_choice", "the mock provider calls no tools")
    if request.response_format is not None:
        raise refuse(
            model, "response_format", "the mock provider answers with its reply as text, not JSON"
        )


def reply(behaviour: manifests.MockBehaviour, request: ChatRequest) -> tuple[str, FinishReason]:
    """The reply cut at the first stop sequence (not included), else after max_tokens."""
    text = behaviour.reply
    found = [at for at in (text.find(stop) for stop in request.stop if stop) if at >= 0]
    if found:
        return text[: min(found)], FinishReason.STOP
    pieces = words(text)
    if len(pieces) > request.max_tokens:
        return "".join(pieces[: request.max_tokens]), FinishReason.LENGTH
    return text, FinishReason.STOP


def prompt_words(request: ChatRequest) -> int:
    return sum(len(m.content.split()) for m in request.messages)


class MockAdapter:
    def __init__(self, *, seed: int | None = None) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - simulated failures, not cryptography

    def _fail(self, model: manifests.AIModel, behaviour: manifests.MockBehaviour) -> None:
        if behaviour.failure_rate and self._rng.random() < behaviour.failure_rate:
            raise ProviderError(FailureKind.SERVER_ERROR, f"{model.id}: simulated failure")

    async def complete(self, model: manifests.AIModel, request: ChatRequest) -> ChatResponse:
        behaviour = model.payload.mock or manifests.MockBehaviour.model_validate({})
        check(model, request)
        started = time.perf_counter()
        if behaviour.latency_ms:
            await asyncio.sleep(behaviour.latency_ms / 1000)
        self._fail(model, behaviour)
        text, finish = reply(behaviour, request)
        input_tokens, output_tokens = prompt_words(request), len(text.split())
        return ChatResponse(
            model_id=model.id,
            provider_model="mock",
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost_of(model, input_tokens, output_tokens),
            latency_ms=(time.perf_counter() - started) * 1000,
            finish_reason=finish,
        )

    async def stream(
        self, model: manifests.AIModel, request: ChatRequest
    ) -> AsyncGenerator[Delta, None]:
        """The reply word by word, the manifest's latency spread over the words (all of
        it before the end when there are none); a simulated failure comes before the
        first word, as a provider's error status would."""
        behaviour = model.payload.mock or manifests.MockBehaviour.model_validate({})
        check(model, request)
        text, finish = reply(behaviour, request)
        pieces = words(text)
        pause = behaviour.latency_ms / 1000 / max(len(pieces), 1)
        if pause:
            await asyncio.sleep(pause)
        self._fail(model, behaviour)
        for number, piece in enumerate(pieces):
            if number and pause:
                await asyncio.sleep(pause)
            yield TextDelta(piece)
        yield StreamEnd(finish, prompt_words(request), len(text.split()))
