"""The three wire formats: Anthropic Messages, Gemini generateContent, OpenAI chat completions.

Each adapter builds the provider's request from a :class:`ChatRequest` (messages
of every role with tool calls and results, sampling, stop sequences, tools,
tool choice, response format), sends it through the guarded transport with the
manifest's deadline, and reads text, tool calls, finish reason and token counts
back through :mod:`reconciler.providers.answers`, which checks every field it
takes (an answer that is not in the provider's shape, or whose counts are not
integers from 0 to 10^9, is a ``bad_response``). A field the provider cannot
honour is refused by :meth:`HttpAdapter.build` (a ``client_error`` naming it,
before any network call), never dropped. Streamed calls build the same request
with ``stream=True`` and read it through :mod:`reconciler.providers.streams`.
The API key comes from the environment variable the manifest names, goes only
into a request header, and never into a message.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import AsyncGenerator
from typing import Any

from reconciler.manifests import kinds as manifests
from reconciler.providers import answers, refusals, streams
from reconciler.providers.base import (
    ChatRequest,
    ChatResponse,
    Delta,
    FailureKind,
    Message,
    ProviderError,
    ResponseKind,
    Tool,
    ToolChoiceMode,
    cost_of,
    refuse,
)
from reconciler.providers.transport import Http

ANTHROPIC_VERSION = "2023-06-01"
_UNSENDABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # header values: no CTLs but tab

Built = tuple[str, dict[str, str], dict[str, Any]]  # url, headers, payload


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
            tool_calls=reading.tool_calls,
            finish_reason=reading.finish_reason,
        )

    async def stream(
        self, model: manifests.AIModel, request: ChatRequest
    ) -> AsyncGenerator[Delta, None]:
        """The answer as it is streamed. A generator, so that a refusal of the request is
        raised where every other failure is: while iterating. Closing it closes the
        provider's stream at once (``aclosing``: a generator left behind would be closed
        only when the garbage collector finds it)."""
        url, headers, payload = self.build(model, request, stream=True)
        reader = self.stream_reader(model)
        async with contextlib.aclosing(
            streams.deltas(self.http, model, reader, url, headers, payload)
        ) as deltas:
            async for delta in deltas:
                yield delta

    def build(
        self, model: manifests.AIModel, request: ChatRequest, *, stream: bool = False
    ) -> Built:
        """The provider's request: URL, headers and JSON payload. Raises a ``client_error``
        naming the field for anything the provider cannot honour."""
        raise NotImplementedError

    def shape(self, model: manifests.AIModel) -> type[answers.Answer]:
        """The answer this provider must give (checked by :func:`answers.read`)."""
        raise NotImplementedError

    def stream_reader(self, model: manifests.AIModel) -> streams.Reader:
        """The reader of this provider's server-sent events."""
        raise NotImplementedError


# ---------------------------------------------------------------- OpenAI chat completions


def _openai_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":  # OpenAI's tool message has no name: the call id says it
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    sent: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        sent["content"] = message.content or None
        sent["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.name is not None:
        sent["name"] = message.name
    return sent


def _openai_options(request: ChatRequest) -> dict[str, Any]:
    """Tools, tool choice and response format, in OpenAI's words (the caller's too)."""
    options: dict[str, Any] = {}
    if request.tools:
        options["tools"] = [
            {
                "type": "function",
                "function": _function(tool.name, tool.description, tool.parameters)
                | ({} if tool.strict is None else {"strict": tool.strict}),
            }
            for tool in request.tools
        ]
    choice = request.tool_choice
    if choice is not None:
        options["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}}
            if choice.mode is ToolChoiceMode.TOOL
            else choice.mode.value
        )
    form = request.response_format
    if form is not None and form.kind is ResponseKind.JSON_OBJECT:
        options["response_format"] = {"type": "json_object"}
    elif form is not None:
        schema: dict[str, Any] = {"name": form.name or "response"}  # OpenAI requires a name
        if form.schema is not None:
            schema["schema"] = form.schema
        if form.strict is not None:
            schema["strict"] = form.strict
        if form.description is not None:
            schema["description"] = form.description
        options["response_format"] = {"type": "json_schema", "json_schema": schema}
    return options


def _function(
    name: str, description: str | None, parameters: Any, *, key: str = "parameters"
) -> dict[str, Any]:
    declared: dict[str, Any] = {"name": name}
    if description is not None:
        declared["description"] = description
    declared[key] = parameters
    return declared


class OpenAIChat(HttpAdapter):
    """OpenAI chat completions, and any OpenAI-compatible server (vLLM, TGI, Ollama)."""

    def build(
        self, model: manifests.AIModel, request: ChatRequest, *, stream: bool = False
    ) -> Built:
        refusals.check(model, request)
        keyed = model.payload.provider is manifests.Provider.OPENAI
        key = api_key(model, required=keyed)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # OpenAI's own API takes max_completion_tokens (its reasoning models refuse
        # max_tokens); compatible servers (vLLM, TGI, Ollama) know max_tokens
        limit = "max_completion_tokens" if keyed else "max_tokens"
        payload: dict[str, Any] = {
            "model": model.payload.provider_model,
            "messages": [_openai_message(m) for m in request.messages],
            limit: request.max_tokens,
        }
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.top_p is not None:
            payload["top_p"] = request.top_p
        if request.stop:  # OpenAI's own API takes 4; compatible servers say for themselves
            payload["stop"] = refusals.stops(model, request, 4) if keyed else list(request.stop)
        payload.update(_openai_options(request))
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return f"{_endpoint(model)}/chat/completions", headers, payload

    def shape(self, model: manifests.AIModel) -> type[answers.Answer]:
        if model.payload.provider is manifests.Provider.OPENAI_COMPATIBLE:
            return answers.CompatibleAnswer  # some servers count no tokens
        return answers.OpenAIAnswer

    def stream_reader(self, model: manifests.AIModel) -> streams.Reader:
        # an OpenAI-compatible server may count no tokens, in a stream as in an answer
        required = model.payload.provider is manifests.Provider.OPENAI
        return streams.OpenAIReader(model.id, usage_required=required)


# ---------------------------------------------------------------- Anthropic Messages

_ANTHROPIC_CHOICE = {
    ToolChoiceMode.AUTO: "auto",
    ToolChoiceMode.NONE: "none",
    ToolChoiceMode.REQUIRED: "any",
    ToolChoiceMode.TOOL: "tool",
}


def _anthropic_messages(model: manifests.AIModel, request: ChatRequest) -> list[dict[str, Any]]:
    """The turns after the system prompt. Tool results are blocks of a user turn
    (consecutive ones in the same turn, as Anthropic wants parallel results); an
    assistant's tool calls are ``tool_use`` blocks after its text."""
    sent: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        if message.role == "system":
            continue
        if message.role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            last = sent[-1] if sent else None
            if last is not None and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(result)  # a user turn of blocks holds tool results only
            else:
                sent.append({"role": "user", "content": [result]})
        elif message.tool_calls:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": message.content}] if message.content else []
            )
            blocks.extend(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": refusals.arguments(model, call, i, j),
                }
                for j, call in enumerate(message.tool_calls)
            )
            sent.append({"role": "assistant", "content": blocks})
        else:
            sent.append({"role": message.role, "content": message.content})
    return sent


def _anthropic_tool(tool: Tool) -> dict[str, Any]:
    declared: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        declared["description"] = tool.description
    declared["input_schema"] = tool.parameters
    return declared


class AnthropicMessages(HttpAdapter):
    def build(
        self, model: manifests.AIModel, request: ChatRequest, *, stream: bool = False
    ) -> Built:
        refusals.check(model, request)
        refusals.no_names(model, request)
        if request.response_format is not None:
            raise refuse(
                model, "response_format", "Anthropic's Messages API has no JSON output mode"
            )
        if request.temperature is not None and not 0 <= request.temperature <= 1:
            raise refuse(model, "temperature", "Anthropic takes a temperature from 0 to 1")
        key = required_key(model)
        payload: dict[str, Any] = {
            "model": model.payload.provider_model,
            "max_tokens": request.max_tokens,
            "messages": _anthropic_messages(model, request),
        }
        system = system_prompt(request)
        if system:
            payload["system"] = system
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.top_p is not None:
            payload["top_p"] = request.top_p
        if request.stop:
            payload["stop_sequences"] = list(request.stop)
        if request.tools:
            payload["tools"] = [_anthropic_tool(tool) for tool in request.tools]
        choice = request.tool_choice
        if choice is not None:
            payload["tool_choice"] = {"type": _ANTHROPIC_CHOICE[choice.mode]}
            if choice.mode is ToolChoiceMode.TOOL:
                payload["tool_choice"]["name"] = choice.name
        if stream:
            payload["stream"] = True
        headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
        return f"{_endpoint(model)}/messages", headers, payload

    def shape(self, model: manifests.AIModel) -> type[answers.Answer]:
        return answers.AnthropicAnswer

    def stream_reader(self, model: manifests.AIModel) -> streams.Reader:
        return streams.AnthropicReader(model.id)


# ---------------------------------------------------------------- Gemini generateContent

_GEMINI_MODE = {
    ToolChoiceMode.AUTO: "AUTO",
    ToolChoiceMode.NONE: "NONE",
    ToolChoiceMode.REQUIRED: "ANY",
    ToolChoiceMode.TOOL: "ANY",  # with allowedFunctionNames
}


def _gemini_contents(model: manifests.AIModel, request: ChatRequest) -> list[dict[str, Any]]:
    """The turns after the system instruction. Gemini's function responses carry the
    function's name, not the call's id: the tool message's name, or the name of the
    earlier call it answers. Consecutive results share one turn, as Gemini wants the
    answers to parallel calls."""
    contents: list[dict[str, Any]] = []
    called: dict[str, str] = {}  # tool call id -> function name
    for i, message in enumerate(request.messages):
        if message.role == "system":
            continue
        if message.role == "tool":
            name = message.name or called.get(message.tool_call_id or "")
            if name is None:
                raise refuse(
                    model,
                    f"messages[{i}].tool_call_id",
                    "answers no earlier tool call, and Gemini needs the function's name",
                )
            part = {"functionResponse": {"name": name, "response": {"content": message.content}}}
            last = contents[-1] if contents else None
            if last is not None and "functionResponse" in last["parts"][-1]:
                last["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
        elif message.role == "assistant":
            parts: list[dict[str, Any]] = (
                [{"text": message.content}] if message.content or not message.tool_calls else []
            )
            for j, call in enumerate(message.tool_calls):
                called[call.id] = call.name
                args = refusals.arguments(model, call, i, j)
                parts.append({"functionCall": {"name": call.name, "args": args}})
            contents.append({"role": "model", "parts": parts})
        else:
            contents.append({"role": "user", "parts": [{"text": message.content}]})
    return contents


def _generation_config(model: manifests.AIModel, request: ChatRequest) -> dict[str, Any]:
    config: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = refusals.stops(model, request, 5)  # Gemini's limit
    form = request.response_format
    if form is not None:  # Gemini's schema mode is always strict; a schema's name is a label
        config["responseMimeType"] = "application/json"
        if form.kind is ResponseKind.JSON_SCHEMA and form.schema is not None:
            described = form.description is not None and "description" not in form.schema
            config["responseJsonSchema"] = (
                {**form.schema, "description": form.description} if described else form.schema
            )
        elif form.description is not None:
            config["responseJsonSchema"] = {"type": "object", "description": form.description}
    return config


class GeminiGenerate(HttpAdapter):
    def build(
        self, model: manifests.AIModel, request: ChatRequest, *, stream: bool = False
    ) -> Built:
        refusals.check(model, request)
        refusals.no_names(model, request)
        key = required_key(model)
        payload: dict[str, Any] = {
            "contents": _gemini_contents(model, request),
            "generationConfig": _generation_config(model, request),
        }
        system = system_prompt(request)
        if system:
            payload["systemInstruction"] = {"parts": [{"text": system}]}
        if request.tools:
            # parametersJsonSchema: full JSON Schema, as the callers' SDKs generate it
            # (``parameters`` takes only an OpenAPI subset: no additionalProperties, $defs)
            declarations = [
                _function(t.name, t.description, t.parameters, key="parametersJsonSchema")
                for t in request.tools
            ]
            payload["tools"] = [{"functionDeclarations": declarations}]
        choice = request.tool_choice
        if choice is not None:
            calling: dict[str, Any] = {"mode": _GEMINI_MODE[choice.mode]}
            if choice.mode is ToolChoiceMode.TOOL:
                calling["allowedFunctionNames"] = [choice.name]
            payload["toolConfig"] = {"functionCallingConfig": calling}
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url = f"{_endpoint(model)}/models/{model.payload.provider_model}:{method}"
        return url, {"x-goog-api-key": key}, payload

    def shape(self, model: manifests.AIModel) -> type[answers.Answer]:
        return answers.GeminiAnswer

    def stream_reader(self, model: manifests.AIModel) -> streams.Reader:
        return streams.GeminiReader(model.id)
