"""The fake providers speak the real wire formats: the official SDKs, which parse the
real APIs' answers and streams, read theirs (OpenAI's and Anthropic's; Gemini's SSE
is read by hand, there being no Gemini SDK here). The gateway tests trust the fakes
because of these."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.gateway.conftest import calling, wait_for
from tests.routing.fakes import INPUT_TOKENS, KEYS, OUTPUT_TOKENS, FakeProvider

REPLY = "Blue light scatters more than red, so the sky looks blue."
WEATHER = {"city": "Paris", "days": 2}
OPENAI_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ANTHROPIC_TOOLS: list[Any] = [
    {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}
]
HI: list[Any] = [{"role": "user", "content": "Why is the sky blue?"}]


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> Iterator[FakeProvider]:
    fake = FakeProvider(request.param, reply=REPLY)
    yield fake
    fake.close()


def _openai(fake: FakeProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url, api_key=KEYS["openai"], max_retries=0, timeout=10)


def _anthropic(fake: FakeProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=fake.url.removesuffix("/v1"), api_key=KEYS["anthropic"], max_retries=0, timeout=10
    )


def _gemini(fake: FakeProvider, body: dict[str, Any], *, stream: bool = True) -> httpx.Response:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return httpx.post(
        f"{fake.url}/models/gemini-model:{method}",
        headers={"x-goog-api-key": KEYS["gemini"]},
        json=body,
        timeout=10,
    )


def _gemini_chunks(answer: httpx.Response) -> list[dict[str, Any]]:
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = [e for e in answer.text.split("\r\n\r\n") if e]
    assert all(e.startswith("data: ") for e in events)
    return [json.loads(e.removeprefix("data: ")) for e in events]


@pytest.mark.parametrize("provider", ["openai"], indirect=True)
def test_openai_streams_chunks_that_join_to_the_answer_with_usage_last(
    provider: FakeProvider,
) -> None:
    client = _openai(provider)
    whole = client.chat.completions.create(model="m", messages=HI)
    chunks = list(
        client.chat.completions.create(
            model="m", messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(texts) == whole.choices[0].message.content == REPLY
    assert len(texts) > 2
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (
        INPUT_TOKENS,
        OUTPUT_TOKENS,
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    without = list(client.chat.completions.create(model="m", messages=HI, stream=True))
    assert all(c.usage is None and c.choices for c in without)


@pytest.mark.parametrize("provider", ["openai"], indirect=True)
def test_openai_tool_call_round_trip_streamed_and_not(provider: FakeProvider) -> None:
    client = _openai(provider)
    with calling(provider, "get_weather", WEATHER):
        asked = client.chat.completions.create(model="m", messages=HI, tools=OPENAI_TOOLS)
        with client.chat.completions.stream(model="m", messages=HI, tools=OPENAI_TOOLS) as stream:
            streamed = stream.get_final_completion()
        untooled = client.chat.completions.create(model="m", messages=HI)
    assert untooled.choices[0].message.content == REPLY
    for answer in (asked, streamed):
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls is not None
        call = choice.message.tool_calls[0]
        assert call.type == "function"
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == WEATHER
    call = asked.choices[0].message.tool_calls[0]  # type: ignore[index]
    answered = client.chat.completions.create(
        model="m",
        tools=OPENAI_TOOLS,
        messages=[
            *HI,
            _turn("assistant", asked.choices[0].message.model_dump(exclude_none=True)),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )
    assert answered.choices[0].message.content == REPLY
    with pytest.raises(openai.BadRequestError):  # a tool result that answers no call
        client.chat.completions.create(
            model="m",
            tools=OPENAI_TOOLS,
            messages=[*HI, {"role": "tool", "tool_call_id": "call_nobody", "content": "sunny"}],
        )


@pytest.mark.parametrize("provider", ["anthropic"], indirect=True)
def test_anthropic_streams_its_event_sequence(provider: FakeProvider) -> None:
    client = _anthropic(provider)
    whole = client.messages.create(model="c", max_tokens=100, messages=HI)
    events = list(client.messages.create(model="c", max_tokens=100, messages=HI, stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}  # the SDK skips the ping
    with client.messages.stream(model="c", max_tokens=100, messages=HI) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert whole.content[0].type == "text"
    assert "".join(texts) == whole.content[0].text == REPLY
    assert len(texts) > 2
    assert (final.usage.input_tokens, final.usage.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("provider", ["anthropic"], indirect=True)
def test_anthropic_tool_use_round_trip_streamed_and_not(provider: FakeProvider) -> None:
    client = _anthropic(provider)
    with calling(provider, "get_weather", WEATHER):
        asked = client.messages.create(
            model="c", max_tokens=100, messages=HI, tools=ANTHROPIC_TOOLS
        )
        with client.messages.stream(
            model="c", max_tokens=100, messages=HI, tools=ANTHROPIC_TOOLS
        ) as stream:
            streamed = stream.get_final_message()
    for answer in (asked, streamed):
        assert answer.stop_reason == "tool_use"
        block = answer.content[0]
        assert block.type == "tool_use"
        assert (block.name, block.input) == ("get_weather", WEATHER)
    block = asked.content[0]
    assert block.type == "tool_use"
    answered = client.messages.create(
        model="c",
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        messages=[
            *HI,
            _turn("assistant", [block.model_dump(exclude_none=True)]),
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}],
            },
        ],
    )
    assert answered.content[0].type == "text"
    assert answered.content[0].text == REPLY
    with pytest.raises(anthropic.BadRequestError):  # a tool_use left unanswered
        client.messages.create(
            model="c",
            max_tokens=100,
            tools=ANTHROPIC_TOOLS,
            messages=[
                *HI,
                _turn("assistant", [block.model_dump(exclude_none=True)]),
                {"role": "user", "content": "and tomorrow?"},
            ],
        )


@pytest.mark.parametrize("provider", ["gemini"], indirect=True)
def test_gemini_streams_responses_with_the_finish_and_usage_on_the_last(
    provider: FakeProvider,
) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "Why?"}]}]}
    whole = _gemini(provider, body, stream=False).json()
    chunks = _gemini_chunks(_gemini(provider, body))
    texts = [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks]
    assert "".join(texts) == whole["candidates"][0]["content"]["parts"][0]["text"] == REPLY
    assert [("finishReason" in c["candidates"][0]) for c in chunks] == [False] * (
        len(chunks) - 1
    ) + [True]
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == OUTPUT_TOKENS
    assert provider.requests[-1]["path"] == "/v1/models/gemini-model:streamGenerateContent?alt=sse"
    with calling(provider, "get_weather", WEATHER):
        tools = [{"functionDeclarations": [{"name": "get_weather"}]}]
        called = _gemini_chunks(_gemini(provider, {**body, "tools": tools}))
        call = {"role": "model", "parts": [{"functionCall": {"name": "get_weather"}}]}
        result = {"functionResponse": {"name": "get_weather", "response": {"sky": "sunny"}}}
        turns = [*body["contents"], call, {"role": "user", "parts": [result]}]
        answered = _gemini(provider, {"contents": turns, "tools": tools}, stream=False)
        stray = _gemini(provider, {"contents": [*body["contents"], turns[-1]], "tools": tools})
    assert [c["candidates"][0]["content"]["parts"] for c in called] == [
        [{"functionCall": {"name": "get_weather", "args": WEATHER}}]
    ]
    assert answered.json()["candidates"][0]["content"]["parts"] == [{"text": REPLY}]
    assert stray.status_code == 400  # a function response after no function call


@pytest.mark.parametrize("provider", ["openai"], indirect=True)
def test_die_after_cuts_the_stream_without_its_end(provider: FakeProvider) -> None:
    provider.behaviour = "die-after:2"
    texts: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in _openai(provider).chat.completions.create(model="m", messages=HI, stream=True):
            texts.append(chunk.choices[0].delta.content or "")
    assert "".join(texts) == REPLY[: len("".join(texts))]
    assert 0 < len("".join(texts)) < len(REPLY)
    assert len(provider.chunk_times) == 2


@pytest.mark.parametrize("provider", ["gemini"], indirect=True)
def test_a_stalled_stream_sees_its_client_hang_up_within_milliseconds(
    provider: FakeProvider,
) -> None:
    provider.behaviour = "stall-after:1"
    body = {"contents": [{"role": "user", "parts": [{"text": "Why?"}]}]}
    with httpx.stream(
        "POST",
        f"{provider.url}/models/gemini-model:streamGenerateContent?alt=sse",
        headers={"x-goog-api-key": KEYS["gemini"]},
        json=body,
        timeout=10,
    ) as answer:
        first = next(answer.iter_lines())
        hung_up = time.monotonic()
    assert first.startswith("data: ")
    assert provider.first_chunk_at is not None and provider.first_chunk_at < hung_up
    assert wait_for(lambda: provider.closed_at, timeout=2)
    # the bound (100 ms): 50 ms failed once on a machine loaded by two suites
    assert provider.closed_at[-1] - hung_up < 0.1


@pytest.mark.parametrize("provider", ["anthropic"], indirect=True)
def test_slow_chunks_space_the_events(provider: FakeProvider) -> None:
    provider.behaviour = "slow-chunks:0.05"
    with _anthropic(provider).messages.stream(model="c", max_tokens=10, messages=HI) as stream:
        assert "".join(stream.text_stream) == REPLY
    gaps = [b - a for a, b in zip(provider.chunk_times, provider.chunk_times[1:], strict=False)]
    assert gaps and min(gaps) >= 0.045


def _turn(role: str, content: Any) -> Any:
    """A message for an SDK call, from an earlier answer's dump (not a typed literal)."""
    if isinstance(content, dict):
        return {**content, "role": role}
    return {"role": role, "content": content}
