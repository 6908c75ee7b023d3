"""The three wire formats: Anthropic Messages, Gemini generateContent, OpenAI chat completions.

Each adapter builds the provider's request from a :class:`ChatRequest`, sends
it through the guarded transport with the manifest's deadline, and reads text
and token counts back through :mod:`reconciler.providers.answers`, which
checks every field it takes (an answer that is not in the provider's shape,
or whose counts are not integers from 0 to 10^9, is a ``bad_response``). The
API key comes from the environment variable the manifest names, goes only
into a request header, and never into a message.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from reconciler.manifests import kinds as manifests
from reconciler.providers import answers
from reconciler.providers.base import (
    ChatRequest,
    ChatResponse,
    FailureKind,
    ProviderError,
    cost_of,
)
from reconciler.providers.transport import Http

ANTHROPIC_VERSION = "2023-06-01"
_UNSENDABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # header values: no CTLs but tab


def api_key(model: manifests.AIModel, *, required: bool) -> str | None:
    credentials = model.payload.credentials
    if credentials is None:
        if required:
            raise ProviderError(
                FailureKind.CONFIGURATION, f"{model.id}: no credentials in manifest"
            )
        return None
    value = os.environ.get(credentials.env)
    if not value:
        raise ProviderError(
            FailureKind.CONFIGURATION,
            f"{model.id}: environment variable {credentials.env} is not set",
        )
    if _UNSENDABLE.search(value):  # a header value cannot hold it; never echo the value
        raise ProviderError(
            FailureKind.CONFIGURATION,
            f"{model.id}: environment variable {credentials.env} holds a line break or "
            "another control character; a key cannot be sent with it",
        )
    return value


def required_key(model: manifests.AIModel) -> str:
    key = api_key(model, required=True)
    assert key is not None  # api_key raises when a required key is missing
    return key


def system_prompt(request: ChatRequest) -> str:
    """The system messages as one prompt, for APIs that take it apart from the messages."""
    return "\n\n".join(m.content for m in request.messages if m.role == "system")


def _endpoint(model: manifests.AIModel) -> str:
    endpoint = model.payload.endpoint
    if endpoint is None:  # validation makes this impossible for HTTP providers
        raise ProviderError(FailureKind.CONFIGURATION, f"{model.id}: no endpoint")
    return endpoint.rstrip("/")


class HttpAdapter:
    """Shared call path: build, send with the deadline, read, price."""

    def __init__(self, http: Http) -> None:
        self.http = http

    async def complete(self, model: manifests.AIModel, request: ChatRequest) -> ChatResponse:
        url, headers, payload = self.build(model, request)
        started = time.perf_counter()
        answer = await self.http.post_json(
            url, headers, payload, deadline_s=model.payload.timeout_ms / 1000
        )
        reading = answers.read(self.shape(model), answer, model.id)
        latency = (time.perf_counter() - started) * 1000
        return ChatResponse(
            model_id=model.id,
            provider_model=model.payload.provider_model or "",
            text=reading.text,
            input_tokens=reading.input_tokens,
            output_tokens=reading.output_tokens,
            cost_usd=cost_of(model, reading.input_tokens, reading.output_tokens),
            latency_ms=latency,
            counted=reading.counted,
        )

    def build(
        self, model: manifests.AIModel, request: ChatRequest
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        raise NotImplementedError

    def shape(self, model: manifests.AIModel) -> type[answers.Answer]:
        """The answer this provider must give (checked by :func:`answers.read`)."""
        raise NotImplementedError


class OpenAIChat(HttpAdapter):
    """OpenAI chat completions, and any OpenAI-compatible server (vLLM, TGI, Ollama)."""

    def build(
        self, model: manifests.AIModel, request: ChatRequest
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        keyed = model.payload.provider is manifests.Provider.OPENAI
        key = api_key(model, required=keyed)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        payload: dict[str, Any] = {
            "model": model.payload.provider_model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        return f"{_endpoint(model)}/chat/completions", headers, payload

    def shape(self, model: manifests.AIModel) -> type[answers.Answer]:
        if model.payload.provider is manifests.Provider.OPENAI_COMPATIBLE:
            return answers.CompatibleAnswer  # some servers count no tokens
        return answers.OpenAIAnswer


class AnthropicMessages(HttpAdapter):
    def build(
        self, model: manifests.AIModel, request: ChatRequest
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        key = required_key(model)
        system = system_prompt(request)
        payload: dict[str, Any] = {
            "model": model.payload.provider_model,
            "max_tokens": request.max_tokens,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
        }
        if system:
            payload["system"] = system
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
        return f"{_endpoint(model)}/messages", headers, payload

    def shape(self, model: manifests.AIModel) -> type[answers.Answer]:
        return answers.AnthropicAnswer


class GeminiGenerate(HttpAdapter):
    def build(
        self, model: manifests.AIModel, request: ChatRequest
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        key = required_key(model)
        system = system_prompt(request)
        contents = [
            {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
            for m in request.messages
            if m.role != "system"
        ]
        config: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        payload: dict[str, Any] = {"contents": contents, "generationConfig": config}
        if system:
            payload["systemInstruction"] = {"parts": [{"text": system}]}
        url = f"{_endpoint(model)}/models/{model.payload.provider_model}:generateContent"
        return url, {"x-goog-api-key": key}, payload

    def shape(self, model: manifests.AIModel) -> type[answers.Answer]:
        return answers.GeminiAnswer
