"""Anthropic Messages, as an application's ``anthropic`` SDK speaks it to Grove.

:func:`parse` reads ``POST /v1/messages`` (text and tool blocks; ``system`` as a string
or text blocks) into the normalized request, refusing what Grove cannot carry (an
image or document block, ``top_k``, ``thinking``, an unknown field) with a 400
naming the field. :func:`answer` gives a ``message``; :func:`events` the Messages
event sequence (``message_start`` ... ``message_stop``); :func:`error` is
``{"type": "error", "error": {...}}``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncGenerator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reconciler.gateway import common
from reconciler.gateway.common import GatewayError, Kind, Parsed, invalid
from reconciler.providers.base import (
    ChatRequest,
    Delta,
    FinishReason,
    Message,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
)
from reconciler.routing import engine as routing

MAX_TOKENS_CAP = 1_000_000
MAX_MESSAGES = 10_000
MAX_TOOLS = 128
NOT_CARRIED = frozenset({"top_k", "thinking", "container", "mcp_servers", "service_tier"})

STOP_REASONS = {
    FinishReason.STOP: "end_turn",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.TOOL_CALLS: "tool_use",
    FinishReason.CONTENT_FILTER: "refusal",
}


class _In(BaseModel):
    # strict: "stream": "yes" or "max_tokens": "50" is refused as the API refuses it
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class _Tool(_In):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    description: Annotated[str, Field(max_length=10_000)] | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None
    cache_control: dict[str, Any] | None = None


class _ToolChoice(_In):
    type: Literal["auto", "any", "tool", "none"]
    name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    disable_parallel_tool_use: bool | None = None


class _Message(_In):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class _Metadata(_In):
    user_id: Annotated[str, Field(max_length=256)] | None = None


class MessagesBody(_In):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_CAP)]
    messages: Annotated[list[_Message], Field(min_length=1, max_length=MAX_MESSAGES)]
    system: str | list[dict[str, Any]] | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    stop_sequences: Annotated[list[str], Field(max_length=16)] | None = None
    stream: bool | None = None
    tools: Annotated[list[_Tool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: _ToolChoice | None = None
    metadata: _Metadata | None = None  # accepted; changes no answer


# ---------------------------------------------------------------- requests


def parse(body: bytes) -> Parsed:
    try:
        request = MessagesBody.model_validate_json(body)
    except ValidationError as exc:
        raise common.body_refusal(exc, NOT_CARRIED) from None
    messages = list(_system(request.system))
    origins = ["system"] * len(messages)  # where each normalized message came from
    names: dict[str, str] = {}
    for index, message in enumerate(request.messages):
        where = f"messages[{index}]"
        if not message.content and isinstance(message.content, list):
            raise invalid(f"{where}.content", "holds no block")
        common.finite(message.content, f"{where}.content")
        turns = _message(message, where, names)
        messages += turns
        origins += [where] * len(turns)
    for index, tool in enumerate(request.tools or ()):
        common.finite(tool.input_schema, f"tools[{index}].input_schema")
    chat = ChatRequest(
        messages=tuple(messages),
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=tuple(request.stop_sequences or ()),
        tools=tuple(Tool(t.name, t.description, t.input_schema) for t in request.tools or ()),
        tool_choice=_tool_choice(request),
    )
    return Parsed(
        model=request.model,
        chat=common.conversation(chat),
        stream=bool(request.stream),
        rename=functools.partial(_renamed, origins),
    )


_MESSAGE = re.compile(r"messages\[(\d+)\](.*)")
_TOOL = re.compile(r"tools\[(\d+)\]\.function\.(parameters|strict|name)")
_RENAMED = {"stop": "stop_sequences", "tool_choice": "tool_choice"}


def _renamed(origins: list[str], field: str) -> str:
    """A field named in OpenAI's words (``stop``, ``messages[3].tool_calls[0]...``) in the
    Anthropic caller's: ``stop_sequences``, the message it came from, ``input_schema``."""
    message = _MESSAGE.fullmatch(field)
    if message is not None:
        index = int(message[1])
        origin = origins[index] if index < len(origins) else "messages"
        return origin if origin == "system" else f"{origin}.content"
    tool = _TOOL.fullmatch(field)
    if tool is not None:
        return f"tools[{tool[1]}].input_schema" if tool[2] == "parameters" else f"tools[{tool[1]}]"
    return _RENAMED.get(field, field)


def _system(system: str | list[dict[str, Any]] | None) -> list[Message]:
    if system is None:
        return []
    if isinstance(system, str):
        return [Message("system", system)] if system else []
    texts = []
    for index, block in enumerate(system):
        texts.append(_text_block(block, f"system[{index}]"))
    return [Message("system", "".join(texts))]


def _text_block(block: dict[str, Any], where: str) -> str:
    if block.get("type") != "text":
        kind = block.get("type")
        shown = kind[:40] if isinstance(kind, str) else "untyped"
        raise invalid(where, f"{shown} blocks are not carried: the gateway routes text and tools")
    text = block.get("text")
    if not isinstance(text, str) or set(block) - {"type", "text", "cache_control", "citations"}:
        raise invalid(where, "a text block is {type: text, text: <string>}")
    return text


def _message(message: _Message, where: str, names: dict[str, str]) -> list[Message]:
    if isinstance(message.content, str):
        return [Message(message.role, message.content)]
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for index, block in enumerate(message.content):
        here = f"{where}.content[{index}]"
        kind = block.get("type")
        if kind == "tool_use" and message.role == "assistant":
            calls.append(_tool_use(block, here))
            names[calls[-1].id] = calls[-1].name
        elif kind == "tool_result" and message.role == "user":
            results.append(_tool_result(block, here, names))
        else:
            texts.append(_text_block(block, here))
    if message.role == "assistant":
        return [Message("assistant", "".join(texts), tool_calls=tuple(calls))]
    return results + ([Message("user", "".join(texts))] if texts else [])


def _tool_use(block: dict[str, Any], where: str) -> ToolCall:
    ident, name, given = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(ident, str) or not ident or not isinstance(name, str) or not name:
        raise invalid(where, "a tool_use block has a string id and name")
    if not isinstance(given, dict):
        raise invalid(f"{where}.input", "must be an object")
    return ToolCall(ident, name, json.dumps(given, separators=(",", ":")))


def _tool_result(block: dict[str, Any], where: str, names: dict[str, str]) -> Message:
    ident = block.get("tool_use_id")
    if not isinstance(ident, str) or not ident:
        raise invalid(f"{where}.tool_use_id", "is required")
    if set(block) - {"type", "tool_use_id", "content", "is_error", "cache_control"}:
        raise invalid(where, "unknown field in a tool_result block")
    content = block.get("content", "")
    if isinstance(content, list):
        text = "".join(_text_block(b, f"{where}.content[{i}]") for i, b in enumerate(content))
    elif isinstance(content, str):
        text = content
    else:
        raise invalid(f"{where}.content", "a string or text blocks")
    if block.get("is_error") is True:
        text = f"Error: {text}"  # no provider but Anthropic has the flag: said in the text
    return Message("tool", text, tool_call_id=ident, name=names.get(ident))


def _tool_choice(request: MessagesBody) -> ToolChoice | None:
    choice = request.tool_choice
    if choice is None:
        return None
    if choice.disable_parallel_tool_use:
        raise invalid(
            "tool_choice.disable_parallel_tool_use",
            "cannot be honoured by every provider; leave it out",
        )
    if choice.type == "none":
        return ToolChoice(ToolChoiceMode.NONE)
    if not request.tools:
        raise invalid("tool_choice", "needs tools")
    if choice.type == "auto":
        return ToolChoice(ToolChoiceMode.AUTO)
    if choice.type == "any":
        return ToolChoice(ToolChoiceMode.REQUIRED)
    if choice.name is None or choice.name not in {t.name for t in request.tools}:
        raise invalid("tool_choice.name", "names no tool of the request")
    return ToolChoice(ToolChoiceMode.TOOL, choice.name)


# ---------------------------------------------------------------- answers


def _message_id(request_id: str) -> str:
    return "msg_" + request_id.replace("-", "")


def _input(arguments: str) -> Any:
    """A tool call's arguments as the object Anthropic's ``input`` is."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return {"arguments": arguments}  # a provider's arguments that are not JSON: kept
    return value if isinstance(value, dict) else {"arguments": value}


def answer(result: routing.RoutingResult) -> dict[str, Any]:
    response = result.response
    content: list[dict[str, Any]] = []
    if response.text or not response.tool_calls:
        content.append({"type": "text", "text": response.text})
    content += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": _input(c.arguments)}
        for c in response.tool_calls
    ]
    return {
        "id": _message_id(result.request_id),
        "type": "message",
        "role": "assistant",
        "model": result.model_id,
        "content": content,
        "stop_reason": STOP_REASONS[response.finish_reason],
        "stop_sequence": None,
        "usage": {"input_tokens": response.input_tokens, "output_tokens": response.output_tokens},
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return (
        f"event: {name}\ndata: ".encode()
        + json.dumps({"type": name, **data}, separators=(",", ":")).encode()
        + b"\n\n"
    )


async def events(stream: routing.RoutedStream, parsed: Parsed) -> AsyncGenerator[bytes, None]:
    """The routed stream as Anthropic's event sequence: a text block for the text, a
    tool_use block per tool call (its arguments as ``input_json_delta``), then
    ``message_delta`` with the stop reason and usage, and ``message_stop``. Each delta's
    events are one write, the opening ones with the first. A failure after the first
    event ends it with an ``error`` event."""
    blocks = _Blocks(stream.request_id)
    out = [
        _event(
            "message_start",
            {
                "message": {
                    "id": _message_id(stream.request_id),
                    "type": "message",
                    "role": "assistant",
                    "model": stream.model_id,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                }
            },
        )
    ]
    try:
        async for delta in stream:
            out += blocks.events(delta)
            if out:
                yield b"".join(out)
                out = []
    except routing.StreamBroken as exc:
        failure = GatewayError(502, common.broken(exc), str(exc))  # too late to fail over
        yield _event("error", {"error": error(failure)["error"]})
    finally:
        await stream.aclose()


class _Blocks:
    """The content blocks of a streamed message: which is open, and the events a delta
    makes (a block starts when the kind of delta changes, and stops before the next)."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.index = -1
        self.open: str | None = None  # "text", or "tool:<n>" for tool call n

    def _switch(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = []
        if self.open is not None:
            out.append(_event("content_block_stop", {"index": self.index}))
        self.index += 1
        self.open = kind
        out.append(_event("content_block_start", {"index": self.index, "content_block": block}))
        return out

    def events(self, delta: Delta) -> list[bytes]:
        out: list[bytes] = []
        if isinstance(delta, TextDelta):
            if not delta.text:
                return out
            if self.open != "text":
                out += self._switch("text", {"type": "text", "text": ""})
            change = {"type": "text_delta", "text": delta.text}
            out.append(_event("content_block_delta", {"index": self.index, "delta": change}))
        elif isinstance(delta, ToolCallDelta):
            kind = f"tool:{delta.index}"
            if self.open != kind:
                ident = delta.id or f"toolu_{self.request_id}_{delta.index}"
                use = {"type": "tool_use", "id": ident, "name": delta.name or "", "input": {}}
                out += self._switch(kind, use)
            if delta.arguments:
                change = {"type": "input_json_delta", "partial_json": delta.arguments}
                out.append(_event("content_block_delta", {"index": self.index, "delta": change}))
        else:
            if self.open is not None:
                out.append(_event("content_block_stop", {"index": self.index}))
                self.open = None
            reason = {"stop_reason": STOP_REASONS[delta.finish_reason], "stop_sequence": None}
            usage = {"input_tokens": delta.input_tokens, "output_tokens": delta.output_tokens}
            out.append(_event("message_delta", {"delta": reason, "usage": usage}))
            out.append(_event("message_stop", {}))
        return out


# ---------------------------------------------------------------- errors

_TYPES = {
    Kind.INVALID: "invalid_request_error",
    Kind.TOO_LARGE: "request_too_large",
    Kind.UNAUTHORIZED: "authentication_error",
    Kind.FORBIDDEN: "permission_error",
    Kind.NOT_FOUND: "not_found_error",
    Kind.RATE_LIMITED: "rate_limit_error",
    Kind.UPSTREAM: "api_error",
    Kind.UNAVAILABLE: "overloaded_error",
    Kind.TIMEOUT: "timeout_error",
    Kind.INTERNAL: "api_error",
}


def error(failure: GatewayError) -> dict[str, Any]:
    detail: dict[str, Any] = {"type": _TYPES[failure.kind], "message": failure.message}
    if failure.code is not None:
        detail["code"] = failure.code
    if failure.field is not None:
        detail["param"] = failure.field
    return {"type": "error", "error": detail}


def models(table_listing: list[tuple[str, str]]) -> dict[str, Any]:
    data = [
        {
            "type": "model",
            "id": name,
            "display_name": f"{name} (grove {what})",
            "created_at": "1970-01-01T00:00:00Z",
        }
        for name, what in table_listing
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
