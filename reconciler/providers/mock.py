"""The ``mock`` provider: an in-process model with the manifest's latency, failure rate and reply.

For trying Grove without API keys and for tests of routing logic; it speaks
no wire format and opens no socket.
"""

from __future__ import annotations

import asyncio
import random
import time

from reconciler.manifests import kinds as manifests
from reconciler.providers.base import (
    ChatRequest,
    ChatResponse,
    FailureKind,
    ProviderError,
    cost_of,
)


class MockAdapter:
    def __init__(self, *, seed: int | None = None) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - simulated failures, not cryptography

    async def complete(self, model: manifests.AIModel, request: ChatRequest) -> ChatResponse:
        behaviour = model.payload.mock or manifests.MockBehaviour.model_validate({})
        started = time.perf_counter()
        if behaviour.latency_ms:
            await asyncio.sleep(behaviour.latency_ms / 1000)
        if behaviour.failure_rate and self._rng.random() < behaviour.failure_rate:
            raise ProviderError(FailureKind.SERVER_ERROR, f"{model.id}: simulated failure")
        prompt_words = sum(len(m.content.split()) for m in request.messages)
        reply_words = len(behaviour.reply.split())
        return ChatResponse(
            model_id=model.id,
            provider_model="mock",
            text=behaviour.reply,
            input_tokens=prompt_words,
            output_tokens=reply_words,
            cost_usd=cost_of(model, prompt_words, reply_words),
            latency_ms=(time.perf_counter() - started) * 1000,
        )
