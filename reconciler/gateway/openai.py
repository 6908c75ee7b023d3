"""OpenAI Chat Completions, as an application's ``openai`` SDK speaks it to Grove.

:func:`parse` reads ``POST /v1/chat/completions`` into the normalized request, refusing
(400, naming the field) whatever Grove would otherwise have to drop: an unknown
field, ``n`` above 1, a part that is not text, ``parallel_tool_calls: false``.
:func:`answer` and :func:`events` give the routed answer back as a ``chat.completion``
or as ``chat.completion.chunk`` events ending in ``data: [DONE]``; :func:`error` is
OpenAI's ``{"error": {...}}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reconciler.gateway import common
from reconciler.gateway.common import GatewayError, Kind, Parsed, invalid
from reconciler.providers.base import (
    ChatRequest,
    ChatResponse,
    Delta,
    FinishReason,
    Message,
    ResponseFormat,
    ResponseKind,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
)
from reconciler.routing import engine as routing

MID_STREAM = "model_failed_mid_stream"  # the code of the error event ending a stream
DEFAULT_MAX_TOKENS = 4096  # when the caller sets none (Anthropic and Gemini need a number)
MAX_TOKENS_CAP = 1_000_000
MAX_MESSAGES = 10_000
MAX_TOOLS = 128
MAX_STOP = 4  # OpenAI's own limit
# OpenAI parameters Grove knows and does not carry: named in the 400 as such.
NOT_CARRIED = frozenset(
    {
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "seed",
        "modalities",
        "audio",
        "prediction",
        "reasoning_effort",
        "service_tier",
        "store",
        "metadata",
        "web_search_options",
        "functions",
        "function_call",
        "verbosity",
        "prompt_cache_key",
        "safety_identifier",
    }
)


class _In(BaseModel):
    # strict: "stream": "yes" or "max_tokens": "50" is refused as the APIs refuse it
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class _Function(_In):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    description: Annotated[str, Field(max_length=10_000)] | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _Tool(_In):
    type: Literal["function"]
    function: _Function


class _CalledFunction(_In):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    arguments: str


class _ToolCall(_In):
    id: Annotated[str, Field(min_length=1, max_length=256)]
    type: Literal["function"] = "function"
    function: _CalledFunction


class _Named(_In):
    name: Annotated[str, Field(min_length=1, max_length=64)]


class _NamedChoice(_In):
    type: Literal["function"]
    function: _Named


class _JsonSchema(_In):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: str | None = None
    schema_: Annotated[dict[str, Any] | None, Field(alias="schema")] = None
    strict: bool | None = None


class _ResponseFormat(_In):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchema | None = None


class _StreamOptions(_In):
    include_usage: bool = False
    include_obfuscation: bool | None = None


class _Message(_In):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: Annotated[str, Field(max_length=64)] | None = None
    tool_calls: Annotated[list[_ToolCall], Field(max_length=MAX_TOOLS)] | None = None
    tool_call_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    refusal: str | None = None


class ChatCompletionBody(_In):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    messages: Annotated[list[_Message], Field(min_length=1, max_length=MAX_MESSAGES)]
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_CAP)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_CAP)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    stop: str | list[str] | None = None  # at most MAX_STOP: checked by parse (one message)
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    tools: Annotated[list[_Tool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["auto", "none", "required"] | _NamedChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: _ResponseFormat | None = None
    n: Annotated[int, Field(ge=1)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None  # accepted; changes no answer


# ---------------------------------------------------------------- requests


def parse(body: bytes) -> Parsed:
    try:
        request = ChatCompletionBody.model_validate_json(body)
    except ValidationError as exc:
        raise common.body_refusal(exc, NOT_CARRIED) from None
    if request.n is not None and request.n != 1:
        raise invalid("n", "only one choice per request (n = 1); send the request again instead")
    if request.parallel_tool_calls is False:
        raise invalid(
            "parallel_tool_calls", "false cannot be honoured by every provider; leave it out"
        )
    if request.stream_options is not None and not request.stream:
        raise invalid("stream_options", "only with stream: true")
    if request.stream_options is not None and request.stream_options.include_obfuscation:
        raise invalid(
            "stream_options.include_obfuscation",
            "Grove does not pad stream chunks; leave it out or set it to false",
        )
    if request.max_tokens not in (None, request.max_completion_tokens) and (
        request.max_completion_tokens is not None
    ):
        raise invalid("max_tokens", "differs from max_completion_tokens; send one of them")
    limit = request.max_completion_tokens or request.max_tokens or DEFAULT_MAX_TOKENS
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    if len(stop) > MAX_STOP:
        raise invalid("stop", f"at most {MAX_STOP} sequences")
    for index, tool in enumerate(request.tools or ()):
        common.finite(tool.function.parameters, f"tools[{index}].function.parameters")
    form = request.response_format
    if form is not None and form.json_schema is not None:
        common.finite(form.json_schema.schema_, "response_format.json_schema.schema")
    chat = ChatRequest(
        messages=_messages(request.messages),
        max_tokens=limit,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=stop,
        tools=tuple(_tool(t) for t in request.tools or ()),
        tool_choice=_tool_choice(request),
        response_format=_response_format(request.response_format),
    )
    options = request.stream_options
    return Parsed(
        model=request.model,
        chat=common.conversation(chat),
        stream=bool(request.stream),
        include_usage=bool(options and options.include_usage),
    )


def _text(content: str | list[dict[str, Any]] | None, where: str) -> str:
    """A message's text: a string, or text parts joined; any other part is refused."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type")
        if kind != "text":
            shown = kind if isinstance(kind, str) else "untyped"
            raise invalid(
                f"{where}[{index}]",
                f"{shown[:40]} parts are not carried: the gateway routes text (and tools)",
            )
        text = part.get("text")
        if not isinstance(text, str) or set(part) - {"type", "text"}:
            raise invalid(f"{where}[{index}]", "a text part is {type: text, text: <string>}")
        texts.append(text)
    return "".join(texts)


def _messages(messages: list[_Message]) -> tuple[Message, ...]:
    out: list[Message] = []
    names: dict[str, str] = {}  # tool call id -> function name, for the tool answers
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        text = _text(message.content, f"{where}.content")
        role = message.role
        if role != "assistant" and message.tool_calls:
            raise invalid(f"{where}.tool_calls", "only assistant messages carry tool calls")
        if role != "tool" and message.tool_call_id is not None:
            raise invalid(f"{where}.tool_call_id", "only tool messages answer a tool call")
        if role in ("system", "developer"):
            out.append(Message("system", text, name=message.name))
        elif role == "user":
            if message.content is None:
                raise invalid(f"{where}.content", "is required")
            out.append(Message("user", text, name=message.name))
        elif role == "assistant":
            calls = tuple(
                ToolCall(call.id, call.function.name, call.function.arguments)
                for call in message.tool_calls or ()
            )
            for call in calls:
                names[call.id] = call.name
            if message.refusal is not None:  # an earlier refusal: the turn's words
                if text:
                    raise invalid(f"{where}.refusal", "a turn is either content or a refusal")
                text = message.refusal
            out.append(Message("assistant", text, tool_calls=calls, name=message.name))
        else:
            if message.tool_call_id is None:
                raise invalid(f"{where}.tool_call_id", "a tool message answers a tool call id")
            out.append(
                Message(
                    "tool",
                    text,
                    tool_call_id=message.tool_call_id,
                    name=names.get(message.tool_call_id, message.name),
                )
            )
    return tuple(out)


def _tool(tool: _Tool) -> Tool:
    function = tool.function
    parameters = function.parameters or {"type": "object", "properties": {}}
    return Tool(function.name, function.description, parameters, strict=function.strict)


def _tool_choice(request: ChatCompletionBody) -> ToolChoice | None:
    choice = request.tool_choice
    if choice is None:
        return None
    if not request.tools and choice != "none":
        raise invalid("tool_choice", "needs tools")
    if isinstance(choice, str):
        return ToolChoice(ToolChoiceMode(choice))
    if choice.function.name not in {t.function.name for t in request.tools or ()}:
        raise invalid("tool_choice.function.name", "names no tool of the request")
    return ToolChoice(ToolChoiceMode.TOOL, choice.function.name)


def _response_format(given: _ResponseFormat | None) -> ResponseFormat | None:
    if given is None or given.type == "text":
        return None
    if given.type == "json_object":
        return ResponseFormat(ResponseKind.JSON_OBJECT)
    schema = given.json_schema
    if schema is None:
        raise invalid("response_format.json_schema", "is required with type json_schema")
    return ResponseFormat(
        ResponseKind.JSON_SCHEMA,
        schema.schema_ or {"type": "object"},
        name=schema.name,
        strict=schema.strict,
        description=schema.description,
    )


# ---------------------------------------------------------------- answers


def _completion_id(request_id: str) -> str:
    return f"chatcmpl-{request_id}"


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def _calls(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def answer(result: routing.RoutingResult) -> dict[str, Any]:
    response: ChatResponse = result.response
    message: dict[str, Any] = {
        "role": "assistant",
        "content": response.text if response.text or not response.tool_calls else None,
        "refusal": None,
    }
    if response.tool_calls:
        message["tool_calls"] = _calls(response.tool_calls)
    return {
        "id": _completion_id(result.request_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.model_id,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": response.finish_reason.value,
            }
        ],
        "usage": _usage(response.input_tokens, response.output_tokens),
        "system_fingerprint": None,
    }


async def events(stream: routing.RoutedStream, parsed: Parsed) -> AsyncGenerator[bytes, None]:
    """The routed stream as ``chat.completion.chunk`` events, ``data: [DONE]`` last; a
    failure after the first chunk ends it with OpenAI's error object instead. Each
    delta is one write, the opening (role) chunk with the first delta's, already in hand."""
    chunks = _Chunks(stream, parsed)
    out = [chunks.chunk({"role": "assistant", "content": "", "refusal": None})]
    try:
        async for delta in stream:
            out += chunks.of(delta)
            if out:
                yield b"".join(out)
                out = []
        yield b"data: [DONE]\n\n"
    except routing.StreamBroken as exc:  # too late to fail over: the caller has words
        failure = GatewayError(502, common.broken(exc), str(exc), code=MID_STREAM)
        yield _data(error(failure))
    finally:
        await stream.aclose()


def _data(body: dict[str, Any]) -> bytes:
    return b"data: " + _json(body) + b"\n\n"


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class _Chunks:
    """The ``chat.completion.chunk`` events of one stream. Every chunk is the same frame
    (id, model, ...) around its delta and finish reason: the frame is rendered once, and
    a chunk renders only its delta (the bytes are those of the whole object rendered)."""

    def __init__(self, stream: routing.RoutedStream, parsed: Parsed) -> None:
        self.head = {
            "id": _completion_id(stream.request_id),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": stream.model_id,
            "system_fingerprint": None,
        }
        self.include_usage = parsed.include_usage
        head = _data(self.head)[: -len(b"}\n\n")]  # the object left open
        self._before = head + b',"choices":[{"index":0,"delta":'
        self._middle = b',"logprobs":null,"finish_reason":'
        self._after = b"}]" + (b',"usage":null' if parsed.include_usage else b"") + b"}\n\n"

    def chunk(self, delta: dict[str, Any], finish: FinishReason | None = None) -> bytes:
        reason = b"null" if finish is None else _json(finish.value)
        return self._before + _json(delta) + self._middle + reason + self._after

    def of(self, delta: Delta) -> list[bytes]:
        if isinstance(delta, TextDelta):
            return [self.chunk({"content": delta.text})] if delta.text else []
        if isinstance(delta, ToolCallDelta):
            call: dict[str, Any] = {"index": delta.index}
            if delta.id is not None:
                call["id"] = delta.id
                call["type"] = "function"
            function: dict[str, str] = {"arguments": delta.arguments}
            if delta.name is not None:
                function["name"] = delta.name
            call["function"] = function
            return [self.chunk({"tool_calls": [call]})]
        out = [self.chunk({}, delta.finish_reason)]
        if self.include_usage:
            usage = _usage(delta.input_tokens, delta.output_tokens)
            out.append(_data({**self.head, "choices": [], "usage": usage}))
        return out


# ---------------------------------------------------------------- errors

_TYPES = {
    Kind.INVALID: "invalid_request_error",
    Kind.TOO_LARGE: "invalid_request_error",
    Kind.UNAUTHORIZED: "authentication_error",
    Kind.FORBIDDEN: "permission_error",
    Kind.NOT_FOUND: "invalid_request_error",
    Kind.RATE_LIMITED: "rate_limit_error",
    Kind.UPSTREAM: "server_error",
    Kind.UNAVAILABLE: "server_error",
    Kind.TIMEOUT: "timeout_error",
    Kind.INTERNAL: "server_error",
}
_CODES = {
    Kind.UNAUTHORIZED: "invalid_api_key",
    Kind.FORBIDDEN: "insufficient_permissions",
    Kind.RATE_LIMITED: "rate_limit_exceeded",
    Kind.UPSTREAM: "all_models_failed",
    Kind.UNAVAILABLE: "no_model_available",
    Kind.TIMEOUT: "timeout",
}


def error(failure: GatewayError) -> dict[str, Any]:
    return {
        "error": {
            "message": failure.message,
            "type": _TYPES[failure.kind],
            "param": failure.field,
            "code": failure.code or _CODES.get(failure.kind),
        }
    }


def models(table_listing: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": f"grove {what}"}
            for name, what in table_listing
        ],
    }


__all__ = ["answer", "common", "error", "events", "models", "parse"]
