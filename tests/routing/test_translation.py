"""The normalized request in each provider's wire format, and tool calls and finish
reasons read back (issue 18).

``build()`` is checked payload by payload for a request that uses every field;
refusals name the caller's field and never reach the provider; a tool-call round
trip goes through the real fake providers on loopback, which check turns the way
the real APIs do (a tool result answers a call of the turn before it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from reconciler.manifests import kinds as manifests
from reconciler.providers import answers, wire
from reconciler.providers.base import (
    ChatRequest,
    ChatResponse,
    FailureKind,
    FinishReason,
    Message,
    ProviderError,
    ResponseFormat,
    ResponseKind,
    StreamEnd,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
)
from reconciler.providers.transport import Http
from tests.routing.conftest import model_doc
from tests.routing.fakes import KEYS, FakeProvider

T = TypeVar("T")
ENDPOINT = "http://127.0.0.1:9/v1"  # never called: build() opens no connection
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
FORECAST = {"type": "object", "properties": {"celsius": {"type": "number"}}}
TOOLS = (Tool("get_weather", "The weather now", WEATHER), Tool("get_time"))
NO_PARAMETERS = {"type": "object", "properties": {}}
CONVERSATION = (
    Message("system", "be brief"),
    Message("system", "answer in French"),
    Message("user", "weather in Paris and Rome?"),
    Message(
        "assistant",
        "Looking.",
        tool_calls=(
            ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
            ToolCall("call_2", "get_weather", '{"city": "Rome"}'),
        ),
    ),
    Message("tool", "18C", tool_call_id="call_1"),
    Message("tool", "21C", tool_call_id="call_2", name="get_weather"),
    Message("assistant", "", tool_calls=(ToolCall("call_3", "get_time", ""),)),
    Message("tool", "noon", tool_call_id="call_3"),
    Message("assistant", "Paris 18C, Rome 21C, at noon."),
    Message("user", "and tomorrow?"),
)
FULL = ChatRequest(
    CONVERSATION,
    max_tokens=100,
    temperature=0.5,
    top_p=0.9,
    stop=("END", "STOP"),
    tools=TOOLS,
    tool_choice=ToolChoice(ToolChoiceMode.TOOL, "get_weather"),
    response_format=ResponseFormat(ResponseKind.JSON_SCHEMA, FORECAST, "forecast", strict=True),
)
NO_FORMAT = dataclasses.replace(FULL, response_format=None)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def parsed(document: dict[str, Any]) -> manifests.AIModel:
    model = manifests.parse_document(document, allow_local_endpoints=True)
    assert isinstance(model, manifests.AIModel)
    return model


def model_of(kind: str, endpoint: str = ENDPOINT) -> manifests.AIModel:
    """A model of provider ``kind`` (openai, openai-compatible, anthropic, google, mock)."""
    if kind == "mock":
        return parsed(model_doc("m", mock={"reply": "one two three"}))
    key = {"openai": "FAKE_OPENAI_KEY", "anthropic": "FAKE_ANTHROPIC_KEY"}
    document = model_doc(
        "m",
        provider=kind,
        providerModel=f"{kind}-model",
        endpoint=endpoint,
        credentials={"env": key.get(kind, "FAKE_GEMINI_KEY")},
    )
    if kind == "openai-compatible":
        del document["payload"]["credentials"]
    return parsed(document)


ADAPTERS: dict[str, Callable[[Http], wire.HttpAdapter]] = {
    "openai": wire.OpenAIChat,
    "openai-compatible": wire.OpenAIChat,
    "anthropic": wire.AnthropicMessages,
    "google": wire.GeminiGenerate,
}


def build(kind: str, request: ChatRequest, *, stream: bool = False) -> wire.Built:
    return ADAPTERS[kind](Http(allow_local=True)).build(model_of(kind), request, stream=stream)


# ---------------------------------------------------------------- OpenAI


OPENAI_MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "system", "content": "answer in French"},
    {"role": "user", "content": "weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": "Looking.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    {"role": "tool", "tool_call_id": "call_2", "content": "21C"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "get_time", "arguments": ""}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_3", "content": "noon"},
    {"role": "assistant", "content": "Paris 18C, Rome 21C, at noon."},
    {"role": "user", "content": "and tomorrow?"},
]


def test_openai_gets_every_field_in_its_own_words() -> None:
    url, headers, payload = build("openai", FULL)
    assert url == f"{ENDPOINT}/chat/completions"
    assert headers == {"Authorization": f"Bearer {KEYS['openai']}"}
    assert payload == {
        "model": "openai-model",
        "messages": OPENAI_MESSAGES,
        "max_completion_tokens": 100,  # OpenAI's own API; compatible servers get max_tokens
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather now",
                    "parameters": WEATHER,
                },
            },
            {"type": "function", "function": {"name": "get_time", "parameters": NO_PARAMETERS}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "forecast", "schema": FORECAST, "strict": True},
        },
    }


def test_openai_compatible_servers_get_the_same_without_a_key_and_stream_with_usage() -> None:
    _, headers, payload = build("openai-compatible", FULL, stream=True)
    assert headers == {}
    assert payload["messages"] == OPENAI_MESSAGES
    assert payload["max_tokens"] == 100 and "max_completion_tokens" not in payload
    assert (payload["stream"], payload["stream_options"]) == (True, {"include_usage": True})


def test_only_what_was_given_is_sent() -> None:
    for kind in ("openai", "anthropic", "google"):
        _, _, payload = build(kind, ChatRequest.of("hi", max_tokens=7))
        assert set(payload) <= {
            "model",
            "messages",
            "max_tokens",
            "max_completion_tokens",
            "contents",
            "generationConfig",
        }
    assert build("google", ChatRequest.of("hi", max_tokens=7))[2]["generationConfig"] == {
        "maxOutputTokens": 7
    }


@pytest.mark.parametrize(
    ("choice", "openai", "anthropic", "gemini"),
    [
        (ToolChoiceMode.AUTO, "auto", {"type": "auto"}, {"mode": "AUTO"}),
        (ToolChoiceMode.NONE, "none", {"type": "none"}, {"mode": "NONE"}),
        (ToolChoiceMode.REQUIRED, "required", {"type": "any"}, {"mode": "ANY"}),
    ],
)
def test_tool_choice_modes(
    choice: ToolChoiceMode, openai: str, anthropic: dict[str, str], gemini: dict[str, str]
) -> None:
    request = ChatRequest.of("hi")
    request = ChatRequest(request.messages, tools=TOOLS, tool_choice=ToolChoice(choice))
    assert build("openai", request)[2]["tool_choice"] == openai
    assert build("anthropic", request)[2]["tool_choice"] == anthropic
    assert build("google", request)[2]["toolConfig"] == {"functionCallingConfig": gemini}


def test_json_mode_and_a_schema_without_name_or_strictness() -> None:
    messages = ChatRequest.of("hi").messages
    json_mode = ChatRequest(messages, response_format=ResponseFormat(ResponseKind.JSON_OBJECT))
    assert build("openai", json_mode)[2]["response_format"] == {"type": "json_object"}
    config = build("google", json_mode)[2]["generationConfig"]
    assert config == {"maxOutputTokens": 512, "responseMimeType": "application/json"}
    bare = ChatRequest(messages, response_format=ResponseFormat(ResponseKind.JSON_SCHEMA, FORECAST))
    assert build("openai", bare)[2]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": FORECAST},  # OpenAI requires a name
    }


# ---------------------------------------------------------------- Anthropic


def test_anthropic_gets_every_field_it_takes_in_its_own_words() -> None:
    url, headers, payload = build("anthropic", NO_FORMAT)
    assert url == f"{ENDPOINT}/messages"
    assert headers == {"x-api-key": KEYS["anthropic"], "anthropic-version": "2023-06-01"}
    assert payload == {
        "model": "anthropic-model",
        "max_tokens": 100,
        "system": "be brief\n\nanswer in French",
        "messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Looking."},
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "call_2",
                        "name": "get_weather",
                        "input": {"city": "Rome"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "21C"},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "call_3", "name": "get_time", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "call_3", "content": "noon"}],
            },
            {"role": "assistant", "content": "Paris 18C, Rome 21C, at noon."},
            {"role": "user", "content": "and tomorrow?"},
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["END", "STOP"],
        "tools": [
            {"name": "get_weather", "description": "The weather now", "input_schema": WEATHER},
            {"name": "get_time", "input_schema": NO_PARAMETERS},
        ],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    }
    assert build("anthropic", NO_FORMAT, stream=True)[2]["stream"] is True


# ---------------------------------------------------------------- Gemini


def test_gemini_gets_every_field_in_its_own_words() -> None:
    url, headers, payload = build("google", FULL)
    assert url == f"{ENDPOINT}/models/google-model:generateContent"
    assert headers == {"x-goog-api-key": KEYS["gemini"]}

    def answered(name: str, text: str) -> dict[str, Any]:
        return {"functionResponse": {"name": name, "response": {"content": text}}}

    assert payload == {
        "systemInstruction": {"parts": [{"text": "be brief\n\nanswer in French"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "weather in Paris and Rome?"}]},
            {
                "role": "model",
                "parts": [
                    {"text": "Looking."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                ],
            },
            # the first result's function is found by its call id; the second names it
            {
                "role": "user",
                "parts": [answered("get_weather", "18C"), answered("get_weather", "21C")],
            },
            {"role": "model", "parts": [{"functionCall": {"name": "get_time", "args": {}}}]},
            {"role": "user", "parts": [answered("get_time", "noon")]},
            {"role": "model", "parts": [{"text": "Paris 18C, Rome 21C, at noon."}]},
            {"role": "user", "parts": [{"text": "and tomorrow?"}]},
        ],
        "generationConfig": {
            "maxOutputTokens": 100,
            "temperature": 0.5,
            "topP": 0.9,
            "stopSequences": ["END", "STOP"],
            "responseMimeType": "application/json",
            "responseJsonSchema": FORECAST,
        },
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "The weather now",
                        "parametersJsonSchema": WEATHER,  # full JSON Schema, not the subset
                    },
                    {"name": "get_time", "parametersJsonSchema": NO_PARAMETERS},
                ]
            }
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
        },
    }
    url, _, streamed = build("google", FULL, stream=True)
    assert url == f"{ENDPOINT}/models/google-model:streamGenerateContent?alt=sse"
    assert streamed == payload


# ---------------------------------------------------------------- refusals


def _calling(arguments: str) -> ChatRequest:
    return ChatRequest(
        (
            Message("user", "hi"),
            Message("assistant", "", tool_calls=(ToolCall("c1", "get_weather", arguments),)),
            Message("tool", "18C", tool_call_id="c1"),
        ),
        tools=TOOLS,
    )


def _with(**fields: Any) -> ChatRequest:
    return dataclasses.replace(ChatRequest.of("hi"), **fields)


EVERY = ("openai", "anthropic", "google", "mock")
REFUSALS: list[tuple[tuple[str, ...], ChatRequest, str, str]] = [
    (
        ("anthropic",),
        _with(response_format=ResponseFormat(ResponseKind.JSON_OBJECT)),
        "response_format",
        "no JSON output mode",
    ),
    (("anthropic",), _with(temperature=1.5), "temperature", "from 0 to 1"),
    (("anthropic",), _with(temperature=-0.1), "temperature", "from 0 to 1"),
    (
        ("anthropic", "google"),
        _calling("[1, 2]"),
        "messages[1].tool_calls[0].function.arguments",
        "not a JSON object",
    ),
    (
        ("anthropic", "google"),
        _calling('{"city": '),
        "messages[1].tool_calls[0].function.arguments",
        "not JSON",
    ),
    (
        ("google",),
        _with(messages=(Message("user", "hi"), Message("tool", "18C", tool_call_id="nowhere"))),
        "messages[1].tool_call_id",
        "Gemini needs the function's name",
    ),
    (
        ("anthropic", "google"),
        _with(messages=(Message("user", "hi", name="ann"),)),
        "messages[0].name",
        "no participant names",
    ),
    (
        ("openai", "anthropic", "google"),
        _with(messages=(Message("function", "hi"),)),
        "messages[0].role",
        "'function' is not one of system, user, assistant, tool",
    ),
    (
        ("openai", "anthropic", "google"),
        _with(messages=(Message("user", "hi", tool_calls=(ToolCall("c", "f"),)),)),
        "messages[0].tool_calls",
        "only an assistant message",
    ),
    (
        ("openai", "anthropic", "google"),
        _with(messages=(Message("user", "hi"), Message("tool", "18C"))),
        "messages[1].tool_call_id",
        "answers a tool call by its id",
    ),
    (
        ("openai", "anthropic", "google"),
        _with(tool_choice=ToolChoice(ToolChoiceMode.AUTO)),
        "tool_choice",
        "only allowed when tools are given",
    ),
    (
        ("openai", "anthropic", "google"),
        _with(tools=TOOLS, tool_choice=ToolChoice(ToolChoiceMode.TOOL, "get_mood")),
        "tool_choice",
        "names 'get_mood', which is not among the tools",
    ),
    (("mock",), _with(tools=TOOLS), "tools", "calls no tools"),
    (
        ("mock",),
        _with(response_format=ResponseFormat(ResponseKind.JSON_OBJECT)),
        "response_format",
        "not JSON",
    ),
]
REFUSED = [
    pytest.param(kind, request, field, why, id=f"{kind}-{field}-{why[:16]}")
    for kinds, request, field, why in REFUSALS
    for kind in kinds
]


@pytest.mark.parametrize(("kind", "request_", "field", "why"), REFUSED)
def test_a_field_a_provider_cannot_honour_is_refused_by_name_before_any_call(
    fake: Callable[..., FakeProvider], kind: str, request_: ChatRequest, field: str, why: str
) -> None:
    server = fake({"google": "gemini", "mock": "openai"}.get(kind, kind))
    model = model_of(kind, server.url)
    http = Http(allow_local=True)
    adapter = ADAPTERS[kind](http) if kind != "mock" else wire_mock()

    async def call() -> ChatResponse:
        try:
            return await adapter.complete(model, request_)
        finally:
            await http.aclose()

    with pytest.raises(ProviderError) as refused:
        run(call())
    assert refused.value.kind is FailureKind.CLIENT_ERROR
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")
    assert why in str(refused.value)
    assert server.calls == 0


def test_a_tool_choice_of_none_or_auto_is_honoured_by_the_mock() -> None:
    adapter = wire_mock()
    model = model_of("mock")
    for mode in (ToolChoiceMode.REQUIRED, ToolChoiceMode.TOOL):
        with pytest.raises(ProviderError) as refused:
            run(adapter.complete(model, _with(tool_choice=ToolChoice(mode, "f"))))
        assert refused.value.field == "tool_choice"
    for mode in (ToolChoiceMode.AUTO, ToolChoiceMode.NONE):
        assert run(adapter.complete(model, _with(tool_choice=ToolChoice(mode)))).text


def wire_mock() -> Any:
    from reconciler.providers.mock import MockAdapter

    return MockAdapter(seed=1)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", ["openai", "anthropic", "google"])
def test_a_tool_call_round_trip_through_the_real_fake_provider(
    fake: Callable[..., FakeProvider], kind: str
) -> None:
    server = fake({"google": "gemini"}.get(kind, kind), reply="18C in Paris")
    server.tool_call = ("get_weather", {"city": "Paris"})
    model = model_of(kind, server.url)
    http = Http(allow_local=True)
    adapter = ADAPTERS[kind](http)
    asking = (Message("system", "be brief"), Message("user", "weather in Paris?"))

    async def trip() -> tuple[ChatResponse, ChatResponse]:
        try:
            called = await adapter.complete(model, ChatRequest(asking, tools=TOOLS))
            call = called.tool_calls[0]
            answered = ChatRequest(
                (
                    *asking,
                    Message("assistant", called.text, tool_calls=called.tool_calls),
                    Message("tool", "18C", tool_call_id=call.id),
                ),
                tools=TOOLS,
            )
            return called, await adapter.complete(model, answered)
        finally:
            await http.aclose()

    called, final = run(trip())
    assert called.finish_reason is FinishReason.TOOL_CALLS
    assert [(c.name, json.loads(c.arguments)) for c in called.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    if kind == "google":  # Gemini gives no id: Grove makes one up
        assert re.fullmatch(r"call_[0-9a-f]{24}", called.tool_calls[0].id)
    assert (final.text, final.finish_reason, final.tool_calls) == (
        "18C in Paris",
        FinishReason.STOP,
        (),
    )
    assert server.calls == 2  # the fake refuses a tool turn that answers no call


# ---------------------------------------------------------------- reading answers


def _openai(message: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "choices": [{"message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }


OPENAI_CALL = {
    "id": "call_9",
    "type": "function",
    "function": {"name": "f", "arguments": '{"a":1}'},
}


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("stop", FinishReason.STOP),
        ("length", FinishReason.LENGTH),
        ("tool_calls", FinishReason.TOOL_CALLS),
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("function_call", FinishReason.TOOL_CALLS),
        ("something_new", FinishReason.STOP),
        (None, FinishReason.STOP),
    ],
)
def test_openai_finish_reasons(reason: str | None, finish: FinishReason) -> None:
    answer = _openai({"role": "assistant", "content": "hi"}, reason)
    reading = answers.read(answers.OpenAIAnswer, answer, "m")
    assert (reading.text, reading.finish_reason, reading.tool_calls) == ("hi", finish, ())


def test_openai_tool_calls_with_null_content() -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [OPENAI_CALL]}
    for shape in (answers.OpenAIAnswer, answers.CompatibleAnswer):
        reading = answers.read(shape, _openai(message, "tool_calls"), "m")
        assert reading.text == ""
        assert reading.tool_calls == (ToolCall("call_9", "f", '{"a":1}'),)
        assert reading.finish_reason is FinishReason.TOOL_CALLS
    # a server that says "stop" after calling a tool: the caller's tool loop must see the calls
    reading = answers.read(answers.CompatibleAnswer, _openai(message, "stop"), "m")
    assert reading.finish_reason is FinishReason.TOOL_CALLS
    truncated = answers.read(answers.OpenAIAnswer, _openai(message, "length"), "m")
    assert truncated.finish_reason is FinishReason.LENGTH


def test_an_openai_refusal_is_the_text_and_a_content_filter() -> None:
    message = {"role": "assistant", "content": None, "refusal": "I cannot help with that."}
    reading = answers.read(answers.OpenAIAnswer, _openai(message, "stop"), "m")
    assert (reading.text, reading.finish_reason) == (
        "I cannot help with that.",
        FinishReason.CONTENT_FILTER,
    )


@pytest.mark.parametrize(
    ("message", "said"),
    [
        ({"content": None}, "choices[0].message.content is null; a message without tool calls"),
        ({"content": None, "tool_calls": []}, "content is null; a message without tool calls"),
        (
            {"content": None, "tool_calls": [{"id": "c"}]},
            "has no choices[0].message.tool_calls[0].function",
        ),
        (
            {
                "content": None,
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}],
            },
            "tool_calls[0].function.arguments is an object",
        ),
    ],
)
def test_openai_tool_calls_must_be_whole(message: dict[str, Any], said: str) -> None:
    with pytest.raises(ProviderError) as bad:
        answers.read(answers.OpenAIAnswer, _openai(message, "tool_calls"), "m")
    assert bad.value.kind is FailureKind.BAD_RESPONSE
    assert said in str(bad.value)


def _anthropic(content: list[dict[str, Any]], reason: str | None) -> dict[str, Any]:
    return {
        "content": content,
        "stop_reason": reason,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", FinishReason.STOP),
        ("stop_sequence", FinishReason.STOP),
        ("max_tokens", FinishReason.LENGTH),
        ("tool_use", FinishReason.TOOL_CALLS),
        ("refusal", FinishReason.CONTENT_FILTER),
        ("pause_turn", FinishReason.STOP),
        (None, FinishReason.STOP),
    ],
)
def test_anthropic_stop_reasons(reason: str | None, finish: FinishReason) -> None:
    reading = answers.read(
        answers.AnthropicAnswer, _anthropic([{"type": "text", "text": "hi"}], reason), "m"
    )
    assert (reading.text, reading.finish_reason) == ("hi", finish)


def test_anthropic_tool_use_blocks_are_tool_calls_with_json_text_arguments() -> None:
    content: list[dict[str, Any]] = [
        {"type": "thinking", "thinking": "hmm", "signature": "x"},
        {"type": "text", "text": "Let me "},
        {"type": "text", "text": "look."},
        {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "f",
            "input": {"city": "Zürich", "n": [1, 2.5]},
        },
        {"type": "tool_use", "id": "toolu_2", "name": "g", "input": {}},
    ]
    reading = answers.read(answers.AnthropicAnswer, _anthropic(content, "tool_use"), "m")
    assert reading.text == "Let me look."
    assert reading.tool_calls == (
        ToolCall("toolu_1", "f", '{"city":"Zürich","n":[1,2.5]}'),
        ToolCall("toolu_2", "g", "{}"),
    )
    assert reading.finish_reason is FinishReason.TOOL_CALLS


@pytest.mark.parametrize(
    ("block", "said"),
    [
        (
            {"type": "tool_use", "id": "t", "name": "f", "input": [1]},
            "content[0].input is an array of 1 items; a tool call's arguments must be a JSON",
        ),
        (
            {"type": "tool_use", "id": "t", "name": "f"},
            "a tool_use block must have an id, a name and an input",
        ),
        ({"type": "tool_use", "name": "f", "input": {}}, "a tool_use block must have an id"),
        ({"type": "tool_use", "id": "t", "name": "f", "input": {"x": "\ud800"}}, "lone surrogate"),
    ],
)
def test_anthropic_tool_use_blocks_must_be_whole(block: dict[str, Any], said: str) -> None:
    with pytest.raises(ProviderError) as bad:
        answers.read(answers.AnthropicAnswer, _anthropic([block], "tool_use"), "m")
    assert bad.value.kind is FailureKind.BAD_RESPONSE
    assert said in str(bad.value)


@pytest.mark.parametrize("literal", ["1e400", "1" + "0" * 400])
def test_tool_arguments_json_cannot_carry_are_a_bad_response(literal: str) -> None:
    block = '{"type": "tool_use", "id": "t", "name": "f", "input": {"n": ' + literal + "}}"
    body = '{"content": [' + block + '], "stop_reason": "tool_use", '
    body += '"usage": {"input_tokens": 1, "output_tokens": 1}}'
    with pytest.raises(ProviderError) as bad:
        answers.read(answers.AnthropicAnswer, answers.decode(body.encode()), "m")
    assert "content[0].input is an object; a tool call's arguments must hold only finite" in str(
        bad.value
    )


def _gemini(parts: list[dict[str, Any]] | None, reason: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"finishReason": reason}
    if parts is not None:
        candidate["content"] = {"role": "model", "parts": parts}
    return {"candidates": [candidate], "usageMetadata": {"promptTokenCount": 3}}


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", FinishReason.STOP),
        ("MAX_TOKENS", FinishReason.LENGTH),
        *((r, FinishReason.CONTENT_FILTER) for r in ("SAFETY", "RECITATION", "BLOCKLIST")),
        *((r, FinishReason.CONTENT_FILTER) for r in ("PROHIBITED_CONTENT", "SPII")),
        ("MALFORMED_FUNCTION_CALL", FinishReason.STOP),
        ("OTHER", FinishReason.STOP),
        (None, FinishReason.STOP),
    ],
)
def test_gemini_finish_reasons(reason: str | None, finish: FinishReason) -> None:
    reading = answers.read(answers.GeminiAnswer, _gemini([{"text": "hi"}], reason), "m")
    assert (reading.text, reading.finish_reason) == ("hi", finish)


def test_a_gemini_answer_blocked_for_safety_has_no_content_and_is_filtered() -> None:
    reading = answers.read(answers.GeminiAnswer, _gemini(None, "SAFETY"), "m")
    assert (reading.text, reading.finish_reason, reading.output_tokens) == (
        "",
        FinishReason.CONTENT_FILTER,
        0,
    )
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 8},
    }
    reading = answers.read(answers.GeminiAnswer, blocked, "m")  # the prompt: no candidate at all
    assert (reading.text, reading.finish_reason, reading.input_tokens) == (
        "",
        FinishReason.CONTENT_FILTER,
        8,
    )
    with pytest.raises(ProviderError) as bad:
        answers.read(answers.GeminiAnswer, {"usageMetadata": {}}, "m")
    assert "candidates is an empty array; an answer has a candidate unless its prompt" in str(
        bad.value
    )


def test_gemini_function_calls_get_ids_and_their_turn_says_tool_calls() -> None:
    parts: list[dict[str, Any]] = [
        {"text": "thinking about it", "thought": True},
        {"text": "Checking."},
        {"functionCall": {"name": "f", "args": {"city": "Paris"}}, "thoughtSignature": "abc"},
        {"functionCall": {"name": "g"}},
    ]
    reading = answers.read(answers.GeminiAnswer, _gemini(parts, "STOP"), "m")
    assert reading.text == "Checking."
    assert [(c.name, c.arguments) for c in reading.tool_calls] == [
        ("f", '{"city":"Paris"}'),
        ("g", "{}"),
    ]
    ids = [c.id for c in reading.tool_calls]
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", i) for i in ids) and len(set(ids)) == 2
    assert reading.finish_reason is FinishReason.TOOL_CALLS
    with pytest.raises(ProviderError) as bad:
        answers.read(
            answers.GeminiAnswer, _gemini([{"functionCall": {"name": "f", "args": 7}}], "STOP"), "m"
        )
    assert "parts[0].functionCall.args is 7; a tool call's arguments must be a JSON object" in str(
        bad.value
    )


# ---------------------------------------------------------------- the mock provider


def _mock(reply: str, **behaviour: Any) -> manifests.AIModel:
    return parsed(model_doc("m", mock={"reply": reply, **behaviour}))


@pytest.mark.parametrize(
    ("request_", "text", "finish"),
    [
        (ChatRequest.of("hi"), "  one two  three ", FinishReason.STOP),
        (ChatRequest.of("hi", max_tokens=2), "  one two", FinishReason.LENGTH),
        (_with(stop=("three", "two")), "  one ", FinishReason.STOP),
        (_with(stop=("four",), temperature=0.3, top_p=0.5), "  one two  three ", FinishReason.STOP),
    ],
)
def test_the_mock_honours_stop_and_max_tokens_and_streams_the_same_text(
    request_: ChatRequest, text: str, finish: FinishReason
) -> None:
    model = _mock("  one two  three ")
    adapter = wire_mock()
    whole = run(adapter.complete(model, request_))
    assert (whole.text, whole.finish_reason, whole.output_tokens) == (
        text,
        finish,
        len(text.split()),
    )

    async def collect() -> list[Any]:
        return [delta async for delta in adapter.stream(model, request_)]

    deltas = run(collect())
    pieces = [d.text for d in deltas[:-1] if isinstance(d, TextDelta)]
    assert len(pieces) == len(deltas) - 1 == len(text.split())  # word by word
    assert "".join(pieces) == text
    assert deltas[-1] == StreamEnd(finish, whole.input_tokens, whole.output_tokens)


def test_a_mock_failure_comes_before_the_first_word() -> None:
    model = _mock("one two", failureRate=1.0)
    stream = wire_mock().stream(model, ChatRequest.of("hi"))
    with pytest.raises(ProviderError) as failed:
        run(stream.__anext__())
    assert failed.value.kind is FailureKind.SERVER_ERROR


# ---------------------------------------------------------------- streamed


@pytest.mark.parametrize("kind", ["openai", "openai-compatible", "anthropic", "google"])
def test_a_streamed_answer_is_the_answer_in_pieces(
    fake: Callable[..., FakeProvider], kind: str
) -> None:
    """Text, then a tool call, streamed through the real fake provider: joined, the
    pieces are what the non-streamed call answers."""
    server = fake({"google": "gemini", "openai-compatible": "openai"}.get(kind, kind))
    server.reply = "the weather in Paris is mild today"
    model = model_of(kind, server.url)
    http = Http(allow_local=True)
    adapter = ADAPTERS[kind](http)
    request = ChatRequest((Message("user", "weather in Paris?"),), tools=TOOLS)

    async def both() -> tuple[ChatResponse, list[Any], ChatResponse, list[Any]]:
        try:
            text = await adapter.complete(model, request)
            text_deltas = [delta async for delta in adapter.stream(model, request)]
            server.tool_call = ("get_weather", {"city": "Paris"})
            call = await adapter.complete(model, request)
            call_deltas = [delta async for delta in adapter.stream(model, request)]
            return text, text_deltas, call, call_deltas
        finally:
            await http.aclose()

    text, text_deltas, call, call_deltas = run(both())
    assert "".join(d.text for d in text_deltas if isinstance(d, TextDelta)) == text.text
    assert text_deltas[-1] == StreamEnd(FinishReason.STOP, 12, 5)
    pieces = [d for d in call_deltas if isinstance(d, ToolCallDelta)]
    assert {d.index for d in pieces} == {0} and pieces[0].name == "get_weather"
    assert json.loads("".join(d.arguments for d in pieces)) == json.loads(
        call.tool_calls[0].arguments
    )
    assert call_deltas[-1] == StreamEnd(FinishReason.TOOL_CALLS, 12, 5)
    assert server.requests[1]["path"].endswith(
        ":streamGenerateContent?alt=sse"
        if kind == "google"
        else ("/messages" if kind == "anthropic" else "/chat/completions")
    )


def test_a_strict_tool_and_a_schemas_description_are_carried_or_refused() -> None:
    strict = ChatRequest(
        (Message("user", "hi"),), tools=(Tool("get_weather", None, WEATHER, strict=True),)
    )
    sent = build("openai", strict)[2]["tools"][0]["function"]
    assert sent["strict"] is True
    for kind in ("anthropic", "google"):
        with pytest.raises(ProviderError) as refused:
            build(kind, strict)
        assert refused.value.field == "tools[0].function.strict"
    described = ChatRequest(
        (Message("user", "hi"),),
        response_format=ResponseFormat(
            ResponseKind.JSON_SCHEMA, FORECAST, "forecast", description="tomorrow's weather"
        ),
    )
    assert build("openai", described)[2]["response_format"]["json_schema"]["description"] == (
        "tomorrow's weather"
    )
    gemini = build("google", described)[2]["generationConfig"]["responseJsonSchema"]
    assert gemini == {**FORECAST, "description": "tomorrow's weather"}


def test_a_participant_name_reaches_openai_and_is_refused_where_there_are_none() -> None:
    named = ChatRequest((Message("user", "hi", name="alice"),))
    assert build("openai", named)[2]["messages"][0]["name"] == "alice"
    for kind in ("anthropic", "google"):
        with pytest.raises(ProviderError) as refused:
            build(kind, named)
        assert refused.value.field == "messages[0].name"
