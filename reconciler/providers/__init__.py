"""Provider adapters: the only package that talks HTTP (aiohttp) to model providers.

:class:`Providers` picks the adapter for a model's ``provider`` and shares one
guarded, pooled HTTP client between them.
"""

from __future__ import annotations

from reconciler import manifests
from reconciler.providers.base import Adapter, ChatRequest, ChatResponse, ProviderError
from reconciler.providers.mock import MockAdapter
from reconciler.providers.transport import Http
from reconciler.providers.wire import AnthropicMessages, GeminiGenerate, OpenAIChat

__all__ = ["Adapter", "ChatRequest", "ChatResponse", "ProviderError", "Providers"]


class Providers:
    def __init__(self, *, allow_local: bool, max_response_bytes: int | None = None) -> None:
        self.http = (
            Http(allow_local=allow_local, max_response_bytes=max_response_bytes)
            if max_response_bytes
            else Http(allow_local=allow_local)
        )
        openai = OpenAIChat(self.http)
        self.adapters: dict[manifests.Provider, Adapter] = {
            manifests.Provider.ANTHROPIC: AnthropicMessages(self.http),
            manifests.Provider.GOOGLE: GeminiGenerate(self.http),
            manifests.Provider.OPENAI: openai,
            manifests.Provider.OPENAI_COMPATIBLE: openai,
            manifests.Provider.MOCK: MockAdapter(),
        }

    async def complete(self, model: manifests.AIModel, request: ChatRequest) -> ChatResponse:
        return await self.adapters[model.payload.provider].complete(model, request)

    async def aclose(self) -> None:
        await self.http.aclose()
