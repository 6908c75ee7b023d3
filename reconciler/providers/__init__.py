"""Provider adapters: the only package that talks HTTP (aiohttp) to model providers.

:class:`Providers` picks the adapter for a model's ``provider`` and shares one
guarded, pooled HTTP client between them. Whatever happens inside an adapter
reaches the router as a :class:`ProviderError`: an exception no adapter
classified (a provider's answer that found a gap in the checks) is a
``bad_response`` of that attempt, logged with its type, never a 500.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

from reconciler.base import logs
from reconciler.manifests import kinds as manifests
from reconciler.providers.base import (
    Adapter,
    ChatRequest,
    ChatResponse,
    Delta,
    FailureKind,
    ProviderError,
)
from reconciler.providers.mock import MockAdapter
from reconciler.providers.transport import Http
from reconciler.providers.wire import AnthropicMessages, GeminiGenerate, OpenAIChat

__all__ = ["Adapter", "ChatRequest", "ChatResponse", "ProviderError", "Providers"]

log = logging.getLogger("grove.router")


class Providers:
    def __init__(
        self,
        *,
        allow_local: bool,
        max_response_bytes: int | None = None,
        stream_idle_s: float | None = None,
    ) -> None:
        options: dict[str, Any] = {}
        if max_response_bytes:
            options["max_response_bytes"] = max_response_bytes
        if stream_idle_s:
            options["stream_idle_s"] = stream_idle_s
        self.http = Http(allow_local=allow_local, **options)
        openai = OpenAIChat(self.http)
        self.adapters: dict[manifests.Provider, Adapter] = {
            manifests.Provider.ANTHROPIC: AnthropicMessages(self.http),
            manifests.Provider.GOOGLE: GeminiGenerate(self.http),
            manifests.Provider.OPENAI: openai,
            manifests.Provider.OPENAI_COMPATIBLE: openai,
            manifests.Provider.MOCK: MockAdapter(),
        }

    async def complete(self, model: manifests.AIModel, request: ChatRequest) -> ChatResponse:
        try:
            return await self.adapters[model.payload.provider].complete(model, request)
        except ProviderError:
            raise
        except Exception as exc:  # unclassified: this attempt failed, the route goes on
            error = type(exc).__name__
            logs.event(
                log, "provider-error-unclassified", level=logging.ERROR, model=model.id, error=error
            )
            raise ProviderError(
                FailureKind.BAD_RESPONSE, f"{model.id}: the answer could not be read ({error})"
            ) from None

    async def stream(
        self, model: manifests.AIModel, request: ChatRequest
    ) -> AsyncGenerator[Delta, None]:
        """The model's answer as it streams (``Adapter.stream``), every failure a
        :class:`ProviderError` as in :meth:`complete`. Closing this generator closes the
        adapter's, and with it the upstream connection."""
        try:
            async with contextlib.aclosing(
                self.adapters[model.payload.provider].stream(model, request)
            ) as deltas:
                async for delta in deltas:
                    yield delta
        except ProviderError:
            raise
        except Exception as exc:  # unclassified: this attempt failed
            error = type(exc).__name__
            logs.event(
                log, "provider-error-unclassified", level=logging.ERROR, model=model.id, error=error
            )
            raise ProviderError(
                FailureKind.BAD_RESPONSE, f"{model.id}: the stream could not be read ({error})"
            ) from None

    async def aclose(self) -> None:
        await self.http.aclose()
