"""One application, written twice: the same calls through the ``openai`` SDK and through
the ``anthropic`` SDK, each read back into one shape (:class:`Answer`), so a test says
once what every caller must see.

Each caller asks as an application would: a system prompt, a user question,
``max_tokens`` and ``temperature``; tools in its own format; streams the way its SDK
streams. Nothing here knows Grove: a caller sees only its SDK's objects and the
answer's headers (``with_raw_response``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Protocol

import anthropic
import openai

SYSTEM = "Answer in one sentence."
QUESTION = "Why is the sky blue?"
MAX_TOKENS = 64
TEMPERATURE = 0.3
TOOL = "get_weather"
ARGUMENTS = {"city": "Paris", "days": 2}
TOOL_RESULT = "sunny, 24 C"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}


@dataclasses.dataclass
class Call:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclasses.dataclass
class Answer:
    """What the caller got, in no SDK's terms: ``finish`` in OpenAI's words
    (stop, tool_calls), ``pieces`` the streamed text chunks (one, unstreamed)."""

    text: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    finish: str | None
    headers: Mapping[str, str]  # case-insensitive (the SDK's response headers)
    calls: list[Call] = dataclasses.field(default_factory=list)
    pieces: list[str] = dataclasses.field(default_factory=list)


class Caller(Protocol):
    sdk: str

    def ask(self, model: str, *, tools: bool = False, **extra: Any) -> Answer: ...

    def stream(self, model: str, *, tools: bool = False, **extra: Any) -> Answer: ...

    def answer_tool(self, model: str, asked: Answer, *, stream: bool = False) -> Answer:
        """Send the tool's result for ``asked``'s call back, as the application would."""
        ...


# ---------------------------------------------------------------- openai


class OpenAICaller:
    sdk = "openai"

    def __init__(self, client: openai.OpenAI) -> None:
        self.client = client

    def _body(self, model: str, tools: bool, extra: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": QUESTION},
            ],
            "max_tokens": MAX_TOKENS,
            "temperature": TEMPERATURE,
        }
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": TOOL,
                        "description": "The weather forecast of a city.",
                        "parameters": SCHEMA,
                    },
                }
            ]
        return _merged(body, extra)

    def ask(self, model: str, *, tools: bool = False, **extra: Any) -> Answer:
        raw = self.client.chat.completions.with_raw_response.create(
            **self._body(model, tools, extra)
        )
        completion = raw.parse()
        choice = completion.choices[0]
        calls = [
            Call(c.id, c.function.name, json.loads(c.function.arguments))
            for c in choice.message.tool_calls or []
            if c.type == "function"
        ]
        usage = completion.usage
        return Answer(
            text=choice.message.content or "",
            model=completion.model,
            input_tokens=usage.prompt_tokens if usage else None,
            output_tokens=usage.completion_tokens if usage else None,
            finish=choice.finish_reason,
            headers=raw.headers,
            calls=calls,
            pieces=[choice.message.content or ""],
        )

    def stream(self, model: str, *, tools: bool = False, **extra: Any) -> Answer:
        body = {
            **self._body(model, tools, extra),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        raw = self.client.chat.completions.with_raw_response.create(**body)
        pieces: list[str] = []
        models: set[str] = set()
        finish = None
        usage = None
        fragments: dict[int, dict[str, Any]] = {}
        for chunk in raw.parse():
            models.add(chunk.model)
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    pieces.append(choice.delta.content)
                for delta in choice.delta.tool_calls or []:
                    call = fragments.setdefault(delta.index, {"id": "", "name": "", "args": ""})
                    call["id"] += delta.id or ""
                    if delta.function is not None:
                        call["name"] += delta.function.name or ""
                        call["args"] += delta.function.arguments or ""
                finish = choice.finish_reason or finish
        assert len(models) == 1, f"chunks name several models: {models}"
        return Answer(
            text="".join(pieces),
            model=models.pop(),
            input_tokens=usage.prompt_tokens if usage else None,
            output_tokens=usage.completion_tokens if usage else None,
            finish=finish,
            headers=raw.headers,
            calls=[
                Call(c["id"], c["name"], json.loads(c["args"]))
                for _, c in sorted(fragments.items())
            ],
            pieces=pieces,
        )

    def answer_tool(self, model: str, asked: Answer, *, stream: bool = False) -> Answer:
        call = asked.calls[0]
        turns = [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT},
        ]
        body = self._body(model, True, {})
        extra = {"messages": [*body["messages"], *turns]}
        return (self.stream if stream else self.ask)(model, tools=True, **extra)


# ---------------------------------------------------------------- anthropic


class AnthropicCaller:
    sdk = "anthropic"

    def __init__(self, client: anthropic.Anthropic) -> None:
        self.client = client

    def _body(self, model: str, tools: bool, extra: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "system": SYSTEM,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": MAX_TOKENS,
            # the Messages API takes it; this SDK's create() has no parameter for it
            "extra_body": {"temperature": TEMPERATURE},
        }
        if tools:
            body["tools"] = [
                {
                    "name": TOOL,
                    "description": "The weather forecast of a city.",
                    "input_schema": SCHEMA,
                }
            ]
        return _merged(body, extra)

    def ask(self, model: str, *, tools: bool = False, **extra: Any) -> Answer:
        raw = self.client.messages.with_raw_response.create(**self._body(model, tools, extra))
        message = raw.parse()
        text = "".join(b.text for b in message.content if b.type == "text")
        calls = [Call(b.id, b.name, dict(b.input)) for b in message.content if b.type == "tool_use"]
        return Answer(
            text=text,
            model=message.model,
            input_tokens=message.usage.input_tokens,
            output_tokens=message.usage.output_tokens,
            finish=_OPENAI_WORDS.get(message.stop_reason or "", message.stop_reason),
            headers=raw.headers,
            calls=calls,
            pieces=[text],
        )

    def stream(self, model: str, *, tools: bool = False, **extra: Any) -> Answer:
        body = {**self._body(model, tools, extra), "stream": True}
        raw = self.client.messages.with_raw_response.create(**body)
        events = list(raw.parse())
        kinds = [e.type for e in events]
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
        start = events[0]
        assert start.type == "message_start"
        pieces: list[str] = []
        blocks: dict[int, dict[str, Any]] = {}
        finish = None
        input_tokens: int | None = start.message.usage.input_tokens
        output_tokens = None
        for event in events:
            if event.type == "content_block_start" and event.content_block.type == "tool_use":
                block = event.content_block
                blocks[event.index] = {"id": block.id, "name": block.name, "json": ""}
            elif event.type == "content_block_delta":
                if event.delta.type == "text_delta":
                    pieces.append(event.delta.text)
                elif event.delta.type == "input_json_delta":
                    blocks[event.index]["json"] += event.delta.partial_json
            elif event.type == "message_delta":
                finish = event.delta.stop_reason
                output_tokens = event.usage.output_tokens
                # as the SDK's own accumulation: counts known only at the end come here
                if event.usage.input_tokens is not None:
                    input_tokens = event.usage.input_tokens
        return Answer(
            text="".join(pieces),
            model=start.message.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish=_OPENAI_WORDS.get(finish or "", finish),
            headers=raw.headers,
            calls=[
                Call(b["id"], b["name"], json.loads(b["json"] or "{}"))
                for _, b in sorted(blocks.items())
            ],
            pieces=pieces,
        )

    def answer_tool(self, model: str, asked: Answer, *, stream: bool = False) -> Answer:
        call = asked.calls[0]
        turns = [
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": TOOL_RESULT}
                ],
            },
        ]
        body = self._body(model, True, {})
        extra = {"messages": [*body["messages"], *turns]}
        return (self.stream if stream else self.ask)(model, tools=True, **extra)


def _merged(body: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``body`` with ``extra``'s fields; a None in ``extra`` removes the field."""
    return {k: v for k, v in {**body, **extra}.items() if v is not None}


_OPENAI_WORDS = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


# ---------------------------------------------------------------- what the provider got


def upstream_turns(kind: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of each turn a provider was sent, in OpenAI's role names: the system
    prompt wherever the format keeps it, text content as a string or as parts."""
    if kind == "openai":
        return [(m["role"], _text(m.get("content"))) for m in body["messages"]]
    if kind == "anthropic":
        system = [("system", _text(body["system"]))] if body.get("system") else []
        return system + [(m["role"], _text(m["content"])) for m in body["messages"]]
    instruction = body.get("systemInstruction") or body.get("system_instruction")
    system = [("system", _text(instruction["parts"]))] if instruction else []
    roles = {"model": "assistant", "user": "user"}
    return system + [(roles[c["role"]], _text(c["parts"])) for c in body["contents"]]


def upstream_sampling(kind: str, body: dict[str, Any]) -> tuple[Any, Any]:
    """(max tokens, temperature) as the provider was sent them."""
    if kind == "gemini":
        config = body.get("generationConfig") or {}
        return config.get("maxOutputTokens"), config.get("temperature")
    most = body.get("max_completion_tokens", body.get("max_tokens"))
    return most, body.get("temperature")


def _text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
