"""The pure parts of streaming: the server-sent-events parser, and each provider's reader
fed events directly: shapes refused with the field named, error events classified,
finish reasons and counts. (test_streams.py runs the same over loopback HTTP.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.providers import sse, streams
from reconciler.providers.base import (
    Delta,
    FailureKind,
    FinishReason,
    ProviderError,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
)
from tests.routing.test_streams import (
    ANTHROPIC_TEXT,
    ANTHROPIC_TOOLS,
    GEMINI_TEXT,
    OPENAI_TEXT,
    OPENAI_TOOLS,
    OPENAI_USAGE,
    _text_delta,
    anthropic,
    gemini,
    openai_chunk,
)

# ---------------------------------------------------------------- the parser

STREAM = (
    b"\xef\xbb\xbf: opening comment\r\n\r\n"
    b"event: first\r\ndata: one\r\ndata:two\r\n\r\n"
    b"id: 7\nretry: 10\ndata\nunknown: field\n\n"
    b"data: caf\xc3\xa9 \xe2\x9c\x93\r\r"
    b"event: named\nevent\ndata: {}\n\n"
    b"event: no data\n\n"
    b": trailing comment\n"
)
EVENTS = [("first", "one\ntwo"), (None, ""), (None, "café ✓"), (None, "{}")]


def parse(pieces: list[bytes], cap: int = 10_000) -> list[tuple[str | None, str]]:
    parser = sse.EventParser("host", cap)
    events = [event for piece in pieces for event in parser.feed(piece)]
    parser.finish()
    return events


def test_events_are_read_whole_whatever_the_lines_end_with() -> None:
    assert parse([STREAM]) == EVENTS


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_events_are_the_same_however_the_bytes_are_cut_up(size: int) -> None:
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert parse(pieces) == EVENTS


def test_every_split_point_gives_the_same_events() -> None:
    for split in range(len(STREAM) + 1):
        assert parse([STREAM[:split], STREAM[split:]]) == EVENTS, split


@pytest.mark.parametrize(
    "pieces",
    [
        [b"data: " + b"x" * 200 + b"\n\n"],  # one line
        [b"data: x\n"] * 30,  # many lines of one event
        [b"data: " + b"x" * 50] * 5,  # a line arriving in pieces, no end yet
        [b": " + b"x" * 200 + b"\n"],  # comments count too
    ],
)
def test_an_event_over_the_cap_is_a_bad_response(pieces: list[bytes]) -> None:
    with pytest.raises(ProviderError) as caught:
        parse(pieces, cap=100)
    assert caught.value.kind is FailureKind.BAD_RESPONSE
    assert str(caught.value) == "host: an event larger than 100 bytes"


def test_the_cap_is_per_event() -> None:
    assert len(parse([b"data: " + b"x" * 80 + b"\n\n"] * 20, cap=100)) == 20


@pytest.mark.parametrize("tail", [b"data: 1", b"data: 1\n", b"event: x\n", b"data: 1\n\ndata: 2\n"])
def test_a_body_that_ends_inside_an_event_was_cut(tail: bytes) -> None:
    with pytest.raises(ProviderError) as caught:
        parse([tail])
    assert caught.value.kind is FailureKind.CONNECTION_ERROR
    assert str(caught.value) == "host: the stream was cut (it ended inside an event)"


def test_bytes_that_are_not_utf8_are_a_bad_response() -> None:
    with pytest.raises(ProviderError, match=r"^host: the stream is not UTF-8 text$"):
        parse([b"data: \xc3\x28\n\n"])


# ---------------------------------------------------------------- readers, fed directly


Events = list[tuple[str | None, Any]]


def read(reader: streams.Reader, events: Events) -> list[Delta]:
    """Feed each event as the transport would hand it (data as text), then end."""
    out: list[Delta] = []
    for name, data in events:
        out += reader.feed(name, data if isinstance(data, str) else json.dumps(data))
        if reader.done:
            break
    return [*out, reader.end()]


def refusal(reader: streams.Reader, events: Events) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        read(reader, events)
    return caught.value


def openai() -> streams.OpenAIReader:
    return streams.OpenAIReader("m", usage_required=True)


def _call(index: int, **fields: Any) -> dict[str, Any]:
    return openai_chunk({"tool_calls": [{"index": index, **fields}]})


_START = [ANTHROPIC_TEXT[0], ANTHROPIC_TEXT[1]]  # message_start, a text block at 0
_MESSAGE = ANTHROPIC_TEXT[0][1]["message"]


@pytest.mark.parametrize(
    ("reader", "events", "message"),
    [
        (openai, [(None, "{nope")], "m: a chunk is not JSON"),
        (openai, [(None, [])], "m: a chunk is an empty array, not a JSON object"),
        (openai, [(None, {"id": "x"})], "m: a chunk has no choices"),
        (
            openai,
            [(None, openai_chunk({"content": 5}))],
            "m: a chunk's choices[0].delta.content is 5; input should be a valid string",
        ),
        (
            openai,
            [(None, '{"choices": [{"delta": {"content": "\\ud800"}}]}')],
            "m: a chunk's choices[0].delta.content is the string '\\ud800'; "
            "text must be Unicode text (it holds a lone surrogate)",
        ),
        (
            openai,
            [(None, {**OPENAI_USAGE, "usage": {"prompt_tokens": -1, "completion_tokens": 5}})],
            "m: a chunk's usage.prompt_tokens is -1; a token count is an integer from 0 to "
            "1,000,000,000",
        ),
        (
            openai,
            [(None, {**OPENAI_USAGE, "usage": {"prompt_tokens": "7", "completion_tokens": 5}})],
            "m: a chunk's usage.prompt_tokens is the string '7'; a token count is",
        ),
        (
            openai,
            [(None, '{"choices": [], "usage": {"prompt_tokens": 1' + "0" * 30 + "}}")],
            "m: a chunk's usage.prompt_tokens is a 31-digit integer",
        ),
        (
            openai,
            [(None, _call(0, function={"arguments": "{}"}))],
            "m: a chunk's choices[0].delta.tool_calls[0] starts tool call 0 without an id "
            "and a name",
        ),
        (
            openai,
            [(None, _call(1, id="c", function={"name": "f"}))],
            "m: a chunk's choices[0].delta.tool_calls[0].index is 1; tool call 0 comes first",
        ),
        (
            openai,
            [
                (None, _call(0, id="c", function={"name": "f"})),
                (None, _call(0, id="d", function={"arguments": "{}"})),
            ],
            "m: a chunk's choices[0].delta.tool_calls[0].id changes the id of tool call 0",
        ),
        (
            openai,
            [(None, _call(-1, id="c", function={"name": "f"}))],
            "m: a chunk's choices[0].delta.tool_calls[0].index is -1; input should be "
            "greater than or equal to 0",
        ),
        (openai, OPENAI_TEXT[:-1], "m: the stream ended without data: [DONE]"),
        (
            openai,
            [e for e in OPENAI_TEXT if e[1] is not OPENAI_USAGE],
            "m: the stream ended without usage (stream_options.include_usage)",
        ),
        (
            openai,
            [(None, OPENAI_USAGE), (None, "[DONE]")],
            "m: the stream ended without a finish_reason",
        ),
        (streams.AnthropicReader, [("ping", {})], "m: an event has no type"),
        (
            streams.AnthropicReader,
            [
                anthropic(
                    "message_start",
                    message={**_MESSAGE, "usage": {"input_tokens": "12", "output_tokens": 1}},
                )
            ],
            "m: a message_start event's message.usage.input_tokens is the string '12'; "
            "a token count is",
        ),
        (
            streams.AnthropicReader,
            [ANTHROPIC_TEXT[0], ANTHROPIC_TEXT[3]],
            "m: a content_block_delta event names block 0, which never started",
        ),
        (
            streams.AnthropicReader,
            [*_START, anthropic("content_block_delta", index=0, delta={"type": "text_delta"})],
            "m: a content_block_delta event's delta is an object; a text_delta must have a text",
        ),
        (
            streams.AnthropicReader,
            [
                *_START,
                anthropic(
                    "content_block_delta",
                    index=0,
                    delta={"type": "input_json_delta", "partial_json": "{}"},
                ),
            ],
            "m: a content_block_delta event has input_json for block 0, a text block",
        ),
        (
            streams.AnthropicReader,
            [
                ANTHROPIC_TEXT[0],
                anthropic("content_block_start", index=0, content_block={"type": "tool_use"}),
            ],
            "m: a content_block_start event's content_block is an object; a tool_use block "
            "must have an id and a name",
        ),
        (
            streams.AnthropicReader,
            [*_START, ANTHROPIC_TEXT[1]],
            "m: a content_block_start event starts block 0 again",
        ),
        (
            streams.AnthropicReader,
            [*ANTHROPIC_TOOLS[:7], _text_delta(1, "x")],
            "m: a content_block_delta event has text for block 1, a tool_use block",
        ),
        (
            streams.AnthropicReader,
            [*_START, anthropic("content_block_stop", index=0), anthropic("message_stop")],
            "m: the stream ended without a stop_reason",
        ),
        (
            streams.AnthropicReader,
            ANTHROPIC_TEXT[1:],
            "m: the stream ended without message_start",
        ),
        (
            streams.GeminiReader,
            [(None, {"candidates": {"content": {}}})],
            "m: a chunk's candidates is an object; input should be a valid list",
        ),
        (
            streams.GeminiReader,
            [(None, gemini([{"functionCall": {"name": "f", "args": [1]}}], "STOP"))],
            "m: a chunk's candidates[0].content.parts[0].functionCall.args is an array of 1 "
            "items; a tool call's arguments must be a JSON object",
        ),
        (
            streams.GeminiReader,
            [(None, '{"candidates": [], "usageMetadata": {"promptTokenCount": 1e400}}')],
            "m: a chunk's usageMetadata.promptTokenCount is inf; a token count is",
        ),
    ],
)
def test_an_event_not_in_the_provider_s_shape_is_a_bad_response_naming_the_field(
    reader: Callable[..., streams.Reader], events: Events, message: str
) -> None:
    made = reader("m") if reader is not openai else reader()
    error = refusal(made, events)
    assert error.kind is FailureKind.BAD_RESPONSE
    assert str(error).startswith(message), str(error)


@pytest.mark.parametrize(
    ("kind", "failure"),
    [
        ("overloaded_error", FailureKind.SERVER_ERROR),
        ("api_error", FailureKind.SERVER_ERROR),
        ("rate_limit_error", FailureKind.RATE_LIMIT),
        ("invalid_request_error", FailureKind.CLIENT_ERROR),
        ("permission_error", FailureKind.CLIENT_ERROR),
    ],
)
def test_an_anthropic_error_event_is_the_failure_its_type_names(
    kind: str, failure: FailureKind
) -> None:
    error_event = anthropic("error", error={"type": kind, "message": "it went wrong"})
    error = refusal(streams.AnthropicReader("m"), [*_START, error_event])
    assert error.kind is failure
    assert str(error) == f"m: the provider ended the stream with an error ({kind})"


def test_a_provider_s_error_message_is_never_repeated_only_its_short_type() -> None:
    # providers put keys in their messages ("Incorrect API key provided: sk-..."); this
    # text reaches the caller and the routing log
    words = "Incorrect API key provided: sk-test-openai-0000"
    error_event = anthropic("error", error={"type": "api_error", "message": words})
    shown = str(refusal(streams.AnthropicReader("m"), [error_event]))
    assert shown == "m: the provider ended the stream with an error (api_error)"
    odd = anthropic("error", error={"type": "api\n\x1b[31m", "message": words})
    shown = str(refusal(streams.AnthropicReader("m"), [odd]))
    assert "sk-test" not in shown and "\n" not in shown and "\x1b" not in shown


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        ({"message": "The server had an error", "type": "server_error"}, FailureKind.SERVER_ERROR),
        ({"message": "slow down", "type": "rate_limit_exceeded"}, FailureKind.RATE_LIMIT),
        ({"message": "bad", "type": "invalid_request_error"}, FailureKind.CLIENT_ERROR),
    ],
)
def test_an_openai_error_chunk_mid_stream_is_the_failure_its_type_names(
    error: dict[str, Any], failure: FailureKind
) -> None:
    caught = refusal(openai(), [OPENAI_TEXT[1], (None, {"error": error})])
    assert caught.kind is failure
    assert error["type"] in str(caught)
    assert error["message"] not in str(caught)  # a provider's words may hold a key


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("stop", FinishReason.STOP),
        ("length", FinishReason.LENGTH),
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("tool_calls", FinishReason.TOOL_CALLS),
    ],
)
def test_openai_finish_reasons(reason: str, finish: FinishReason) -> None:
    events: Events = [OPENAI_TEXT[1], (None, openai_chunk({}, reason)), *OPENAI_TEXT[-2:]]
    assert read(openai(), events)[-1] == StreamEnd(finish, 12, 5)


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", FinishReason.STOP),
        ("stop_sequence", FinishReason.STOP),
        ("max_tokens", FinishReason.LENGTH),
        ("refusal", FinishReason.CONTENT_FILTER),
        ("tool_use", FinishReason.TOOL_CALLS),
    ],
)
def test_anthropic_stop_reasons(reason: str, finish: FinishReason) -> None:
    delta = anthropic("message_delta", delta={"stop_reason": reason}, usage={"output_tokens": 9})
    items = read(streams.AnthropicReader("m"), [*_START, delta, anthropic("message_stop")])
    assert items[-1] == StreamEnd(finish, 12, 9)


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", FinishReason.STOP),
        ("MAX_TOKENS", FinishReason.LENGTH),
        ("SAFETY", FinishReason.CONTENT_FILTER),
        ("RECITATION", FinishReason.CONTENT_FILTER),
        ("BLOCKLIST", FinishReason.CONTENT_FILTER),
        ("PROHIBITED_CONTENT", FinishReason.CONTENT_FILTER),
        ("SPII", FinishReason.CONTENT_FILTER),
    ],
)
def test_gemini_finish_reasons(reason: str, finish: FinishReason) -> None:
    items = read(streams.GeminiReader("m"), [GEMINI_TEXT[0], (None, gemini([], reason, out=3))])
    assert items[-1] == StreamEnd(finish, 12, 3)


def test_a_tool_call_makes_gemini_s_stop_tool_calls_and_openai_s_too() -> None:
    call = {"functionCall": {"name": "f", "args": {}}}
    items = read(streams.GeminiReader("m"), [(None, gemini([call], "STOP"))])
    assert items[-1] == StreamEnd(FinishReason.TOOL_CALLS, 12, 0)
    events: Events = [
        *OPENAI_TOOLS[:5],
        (None, openai_chunk({}, "stop")),  # some compatible servers say stop
        *OPENAI_TOOLS[-2:],
    ]
    assert read(openai(), events)[-1].finish_reason is FinishReason.TOOL_CALLS  # type: ignore[union-attr]


def test_anthropic_tool_calls_are_numbered_apart_from_text_and_other_blocks() -> None:
    thinking = anthropic(
        "content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}
    )
    thought = anthropic(
        "content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "hm"}
    )
    shifted = [
        (name, {**data, "index": data["index"] + 1} if "index" in data else data)
        for name, data in ANTHROPIC_TOOLS
    ]
    events: Events = [shifted[0], thinking, thought, anthropic("content_block_stop", index=0)]
    events += [anthropic("some_future_event", whatever=1), *shifted[1:]]
    items = read(streams.AnthropicReader("m"), events)
    calls = [item for item in items if isinstance(item, ToolCallDelta)]
    assert calls[0] == ToolCallDelta(0, "toolu_a", "weather")
    assert {call.index for call in calls} == {0, 1}
    assert [item for item in items if isinstance(item, TextDelta)] == [
        TextDelta("Hel"),
        TextDelta("lo"),
    ]


def test_anthropic_s_later_input_count_wins() -> None:
    delta = anthropic(
        "message_delta",
        delta={"stop_reason": "end_turn"},
        usage={"input_tokens": 40, "output_tokens": 9},
    )
    items = read(streams.AnthropicReader("m"), [*_START, delta, anthropic("message_stop")])
    assert items[-1] == StreamEnd(FinishReason.STOP, 40, 9)


def test_gemini_usage_latest_wins_and_absent_is_zero() -> None:
    first = gemini([{"text": "a"}], out=2)
    last = {"candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"}]}
    assert read(streams.GeminiReader("m"), [(None, first), (None, last)])[-1] == StreamEnd(
        FinishReason.STOP, 12, 2
    )
    assert read(streams.GeminiReader("m"), [(None, last)])[-1] == StreamEnd(FinishReason.STOP, 0, 0)


def test_gemini_thoughts_are_not_the_answer_and_a_blocked_prompt_ends_filtered() -> None:
    parts: list[dict[str, Any]] = [{"text": "thinking...", "thought": True}, {"text": "answer"}]
    assert read(streams.GeminiReader("m"), [(None, gemini(parts, "STOP", out=1))]) == [
        TextDelta("answer"),
        StreamEnd(FinishReason.STOP, 12, 1),
    ]
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 8},
    }
    assert read(streams.GeminiReader("m"), [(None, blocked)]) == [
        StreamEnd(FinishReason.CONTENT_FILTER, 8, 0)
    ]


def test_events_after_the_end_marker_are_not_read() -> None:
    reader = openai()
    for _, data in OPENAI_TEXT:
        reader.feed(None, data if isinstance(data, str) else json.dumps(data))
    assert reader.done
    assert reader.feed(None, "not even JSON") == []
    assert reader.end() == StreamEnd(FinishReason.STOP, 12, 5)
