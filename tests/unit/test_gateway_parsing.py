"""The gateway's two dialects read into the normalized request: every field carried, and
everything Grove cannot carry refused with a 400 naming the field (never dropped)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler.gateway import anthropic, openai
from reconciler.gateway.common import GatewayError
from reconciler.providers.base import (
    Message,
    ResponseKind,
    ToolCall,
    ToolChoiceMode,
)


def _openai(**fields: Any) -> Any:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return openai.parse(json.dumps(body).encode())


def _anthropic(**fields: Any) -> Any:
    body = {
        "model": "m",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }
    return anthropic.parse(json.dumps(body).encode())


def _refused(parse: Any, **fields: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        parse(**fields)
    assert caught.value.status == 400
    return caught.value


def test_openai_carries_every_field() -> None:
    parsed = _openai(
        messages=[
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "wea"}, {"type": "text", "text": "ther?"}],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get", "arguments": '{"q":1}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        max_completion_tokens=50,
        temperature=0.5,
        top_p=0.9,
        stop="END",
        stream=True,
        stream_options={"include_usage": True},
        tools=[{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "get"}},
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}},
        },
    )
    chat = parsed.chat
    assert parsed.stream and parsed.include_usage
    assert chat.messages == (
        Message("system", "be brief"),
        Message("user", "weather?"),
        Message("assistant", "", tool_calls=(ToolCall("c1", "get", '{"q":1}'),)),
        Message("tool", "sunny", tool_call_id="c1", name="get"),
    )
    assert (chat.max_tokens, chat.temperature, chat.top_p, chat.stop) == (50, 0.5, 0.9, ("END",))
    assert chat.tools[0].name == "get"
    assert chat.tool_choice is not None and chat.tool_choice.mode is ToolChoiceMode.TOOL
    assert chat.response_format is not None
    assert chat.response_format.kind is ResponseKind.JSON_SCHEMA


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"n": 2}, "n"),
        ({"seed": 7}, "seed"),
        ({"frequency_penalty": 0.1}, "frequency_penalty"),
        ({"banana": 1}, "banana"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"temperature": 3}, "temperature"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ]
            },
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": []}, "messages"),
    ],
)
def test_openai_refuses_naming_the_field(fields: dict[str, Any], field: str) -> None:
    refused = _refused(_openai, **fields)
    assert refused.field == field, refused.message
    assert refused.message.startswith(field)


def test_openai_refuses_a_body_that_is_not_json() -> None:
    with pytest.raises(GatewayError) as caught:
        openai.parse(b"{not json")
    assert caught.value.status == 400


def test_anthropic_carries_blocks_and_tools() -> None:
    parsed = _anthropic(
        system=[{"type": "text", "text": "be brief"}],
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "let me look"},
                    {"type": "tool_use", "id": "t1", "name": "get", "input": {"q": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
                    {"type": "text", "text": "and?"},
                ],
            },
        ],
        stop_sequences=["END"],
        tools=[{"name": "get", "input_schema": {"type": "object"}}],
        tool_choice={"type": "any"},
        stream=True,
    )
    assert parsed.chat.messages == (
        Message("system", "be brief"),
        Message("user", "weather?"),
        Message("assistant", "let me look", tool_calls=(ToolCall("t1", "get", '{"q":1}'),)),
        Message("tool", "sunny", tool_call_id="t1", name="get"),
        Message("user", "and?"),
    )
    assert parsed.chat.tool_choice is not None
    assert parsed.chat.tool_choice.mode is ToolChoiceMode.REQUIRED
    assert parsed.stream


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"top_k": 5}, "top_k"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1000}}, "thinking"),
        ({"temperature": 1.5}, "temperature"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "messages[0].content[0]",
        ),
        ({"tool_choice": {"type": "tool", "name": "x"}}, "tool_choice"),
    ],
)
def test_anthropic_refuses_naming_the_field(fields: dict[str, Any], field: str) -> None:
    refused = _refused(_anthropic, **fields)
    assert refused.field == field, refused.message


def test_anthropic_needs_max_tokens() -> None:
    with pytest.raises(GatewayError) as caught:
        anthropic.parse(
            json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}).encode()
        )
    assert caught.value.field == "max_tokens"


def test_openai_names_strict_tools_and_descriptions_are_carried_not_dropped() -> None:
    parsed = _openai(
        messages=[
            {"role": "user", "content": "hi", "name": "alice"},
            {"role": "assistant", "content": None, "refusal": "I cannot"},
        ],
        tools=[{"type": "function", "function": {"name": "f", "strict": True}}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "w", "description": "the weather", "schema": {}},
        },
    )
    assert parsed.chat.messages[0] == Message("user", "hi", name="alice")
    assert parsed.chat.messages[1] == Message("assistant", "I cannot")
    assert parsed.chat.tools[0].strict is True
    assert parsed.chat.response_format is not None
    assert parsed.chat.response_format.description == "the weather"
    refused = _refused(_openai, stream=True, stream_options={"include_obfuscation": True})
    assert refused.field == "stream_options.include_obfuscation"
