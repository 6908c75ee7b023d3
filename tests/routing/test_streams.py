"""Streams from providers over real loopback HTTP: the transport's events, its deadlines,
caps and cuts, and each reader on its provider's real event sequence.

:class:`Provider` is a real HTTP/1.1 server on 127.0.0.1 (asyncio streams, in the
test's own event loop) answering each POST with a :class:`Reply`: a status and
headers, then body pieces sent one by one (pauses between them), then an ending
(the chunked terminator, a cut, a reset, or a stall that waits for the client to
hang up and notes when it did). Byte-exact, so every fault is the one meant.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from reconciler.manifests import kinds as manifests
from reconciler.providers import streams, transport
from reconciler.providers.base import (
    Delta,
    FailureKind,
    FinishReason,
    ProviderError,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
)
from tests.routing.conftest import model_doc

SSE = {"Content-Type": "text/event-stream; charset=utf-8"}


@dataclasses.dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=lambda: dict(SSE))
    body: Sequence[bytes | float] = ()  # float: a pause
    # "end": the chunked terminator; "cut": closed before it; "reset": a TCP reset;
    # "close": no framing at all, the body ends when the connection does;
    # "stall": nothing more, until the client hangs up; "silent": not even the status
    ending: str = "end"


class Provider:
    """Answers the requests it gets with its replies, in order (keep-alive between)."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.hung_up = asyncio.Event()  # a stalled reply saw its client go
        self.hung_up_at: float | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Provider:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1/stream"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.append(writer)
        self.connections += 1
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(
                    {"path": lines[0].split(" ")[1], "headers": headers, "body": json.loads(body)}
                )
                if not await self._answer(self.replies.pop(0), reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()
            self._handlers.discard(task)

    async def _answer(
        self, reply: Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Send one reply; whether the connection may serve another request."""
        if reply.ending == "silent":
            await self._wait_for_hang_up(reader)
            return False
        framed = reply.ending != "close"
        head = [f"HTTP/1.1 {reply.status} Whatever"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        head.append("Transfer-Encoding: chunked" if framed else "Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        for piece in reply.body:
            if isinstance(piece, float):
                await writer.drain()
                await asyncio.sleep(piece)
                continue
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if framed else piece)
        await writer.drain()
        if reply.ending == "end":
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if reply.ending == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if reply.ending == "stall":
            await self._wait_for_hang_up(reader)
        return False  # "cut", "close", "stall": the connection ends here

    async def _wait_for_hang_up(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        self.hung_up_at = asyncio.get_running_loop().time()
        self.hung_up.set()


@contextlib.asynccontextmanager
async def http_client(**options: Any) -> AsyncIterator[transport.Http]:
    http = transport.Http(allow_local=True, **options)
    try:
        yield http
    finally:
        await http.aclose()


def sse(*events: tuple[str | None, Any], newline: str = "\n") -> list[bytes]:
    """Each event as its own piece: ``event:`` when named, its data as JSON (or as is)."""
    pieces = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        lines = ([f"event: {name}"] if name else []) + [f"data: {text}"]
        pieces.append((newline.join(lines) + newline + newline).encode())
    return pieces


# ---------------------------------------------------------------- real event sequences

_ID = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x"}


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {**_ID, "system_fingerprint": "fp_1", "choices": [choice], "usage": None}


OPENAI_USAGE = {
    **_ID,
    "choices": [],
    "usage": {
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}

OPENAI_TEXT = [
    (None, openai_chunk({"role": "assistant", "content": "", "refusal": None})),
    (None, openai_chunk({"content": "Hel"})),
    (None, openai_chunk({"content": "lo"})),
    (None, openai_chunk({}, "stop")),
    (None, OPENAI_USAGE),
    (None, "[DONE]"),
]


def _fragment(index: int, arguments: str, **first: Any) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index}
    if first:
        call.update(id=first["id"], type="function")
        call["function"] = {"name": first["name"], "arguments": arguments}
    else:
        call["function"] = {"arguments": arguments}
    return openai_chunk({"tool_calls": [call]})


OPENAI_TOOLS = [
    (
        None,
        openai_chunk(
            {"role": "assistant", "content": None, "refusal": None}
            | _fragment(0, "", id="call_a", name="weather")["choices"][0]["delta"]
        ),
    ),
    (None, _fragment(0, '{"ci')),
    (None, _fragment(0, 'ty": "Paris"}')),
    (None, _fragment(1, "", id="call_b", name="clock")),
    (None, _fragment(1, "{}")),
    (None, openai_chunk({}, "tool_calls")),
    (None, OPENAI_USAGE),
    (None, "[DONE]"),
]

_MESSAGE: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "content": [],
    "stop_reason": None,
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 1,
    },
}


def anthropic(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return kind, {"type": kind, **fields}


def _text_delta(index: int, text: str) -> tuple[str, dict[str, Any]]:
    return anthropic("content_block_delta", index=index, delta={"type": "text_delta", "text": text})


def _json_delta(index: int, text: str) -> tuple[str, dict[str, Any]]:
    delta = {"type": "input_json_delta", "partial_json": text}
    return anthropic("content_block_delta", index=index, delta=delta)


ANTHROPIC_TOOLS = [
    anthropic("message_start", message=_MESSAGE),
    anthropic("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    anthropic("ping"),
    _text_delta(0, "Hel"),
    _text_delta(0, "lo"),
    anthropic("content_block_stop", index=0),
    anthropic(
        "content_block_start",
        index=1,
        content_block={"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}},
    ),
    _json_delta(1, ""),
    _json_delta(1, '{"city": "Par'),
    _json_delta(1, 'is"}'),
    anthropic("content_block_stop", index=1),
    anthropic(
        "content_block_start",
        index=2,
        content_block={"type": "tool_use", "id": "toolu_b", "name": "clock", "input": {}},
    ),
    _json_delta(2, ""),
    anthropic("content_block_stop", index=2),
    anthropic(
        "message_delta",
        delta={"stop_reason": "tool_use", "stop_sequence": None},
        usage={"output_tokens": 5},
    ),
    anthropic("message_stop"),
]

ANTHROPIC_TEXT = [
    anthropic("message_start", message=_MESSAGE),
    anthropic("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    anthropic("ping"),
    _text_delta(0, "Hel"),
    _text_delta(0, "lo"),
    anthropic("content_block_stop", index=0),
    anthropic(
        "message_delta",
        delta={"stop_reason": "end_turn", "stop_sequence": None},
        usage={"output_tokens": 5},
    ),
    anthropic("message_stop"),
]


def gemini(parts: list[dict[str, Any]], finish: str | None = None, out: int = 0) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    usage = {"promptTokenCount": 12, "totalTokenCount": 12 + out}
    if out:
        usage["candidatesTokenCount"] = out
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-x"}


GEMINI_TEXT = [
    (None, gemini([{"text": "Hel"}])),
    (None, gemini([{"text": "lo"}], "STOP", out=5)),
]

GEMINI_TOOLS = [
    (None, gemini([{"functionCall": {"name": "weather", "args": {"city": "Paris"}}}])),
    (None, gemini([{"functionCall": {"name": "clock"}}], "STOP", out=5)),
]


# ---------------------------------------------------------------- running


def run(test: Any) -> Any:
    """Run one async test body in a fresh event loop."""
    return asyncio.run(test())


async def collect(
    http: transport.Http, url: str, *, deadline_s: float = 2.0, idle_s: float = 1.0
) -> list[tuple[str | None, str]]:
    events = http.events(url, {}, {"stream": True}, deadline_s=deadline_s, idle_s=idle_s)
    return [event async for event in events]


def failure(http_call: Any) -> ProviderError:
    """The ProviderError an async call raises (pytest.raises in the test's own loop)."""

    async def body() -> ProviderError:
        with pytest.raises(ProviderError) as caught:
            await http_call()
        return caught.value

    error: ProviderError = run(body)
    return error


def model(timeout_ms: int = 2000) -> manifests.AIModel:
    document = model_doc("m", timeoutMs=timeout_ms)
    parsed = manifests.parse_document(document, allow_local_endpoints=True)
    assert isinstance(parsed, manifests.AIModel)
    return parsed


async def streamed(
    reply: Reply, reader: streams.Reader, *, timeout_ms: int = 2000, idle_s: float = 1.0
) -> list[Delta]:
    async with Provider(reply) as provider, http_client(stream_idle_s=idle_s) as http:
        items = streams.deltas(http, model(timeout_ms), reader, provider.url, {}, {})
        return [item async for item in items]


# ---------------------------------------------------------------- the transport's events


def test_events_arrive_as_the_provider_sends_them() -> None:
    pieces = [
        b": a comment\n\n",
        b"event: first\ndata: one\n",
        b"data: two\n\n",
        b'data: {"a"',  # an event split across chunks
        b": 1}\r\n\r\n",
        b"data:x\r\rdata\n\n",  # CR alone, no space after the colon, a field without colon
    ]

    async def body() -> None:
        async with Provider(Reply(body=pieces)) as provider, http_client() as http:
            assert await collect(http, provider.url) == [
                ("first", "one\ntwo"),
                (None, '{"a": 1}'),
                (None, "x"),
                (None, ""),
            ]
            assert provider.requests[0]["body"] == {"stream": True}
            assert provider.requests[0]["headers"]["content-type"] == "application/json"

    run(body)


def test_a_stream_read_to_its_end_gives_its_connection_back_to_the_pool() -> None:
    async def body() -> None:
        replies = (Reply(body=sse((None, "1"))), Reply(body=sse((None, "2"))))
        async with Provider(*replies) as provider, http_client() as http:
            assert await collect(http, provider.url) == [(None, "1")]
            assert await collect(http, provider.url) == [(None, "2")]
            assert provider.connections == 1

    run(body)


@pytest.mark.parametrize(
    ("status", "headers", "kind", "message"),
    [
        (500, {}, FailureKind.SERVER_ERROR, "HTTP 500"),
        (429, {"Retry-After": "7"}, FailureKind.RATE_LIMIT, "HTTP 429 rate limited"),
        (401, {}, FailureKind.CONFIGURATION, "HTTP 401; check the API key"),
        (404, {}, FailureKind.CONFIGURATION, "HTTP 404; check providerModel and endpoint"),
        (400, {}, FailureKind.CLIENT_ERROR, "HTTP 400"),
        (302, {"Location": "http://example.com/"}, FailureKind.BAD_RESPONSE, "redirect 302"),
    ],
)
def test_a_failure_before_the_stream_is_classified_as_a_whole_answer_s(
    status: int, headers: dict[str, str], kind: FailureKind, message: str
) -> None:
    reply = Reply(status, {"Content-Type": "application/json", **headers}, [b'{"error": {}}'])

    async def call() -> None:
        async with Provider(reply) as provider, http_client() as http:
            await collect(http, provider.url)

    error = failure(call)
    assert error.kind is kind
    assert message in str(error)
    assert error.status == status
    if status == 429:
        assert error.retry_after_s == 7.0


def test_a_huge_error_body_before_the_stream_is_not_read_past_the_cap() -> None:
    reply = Reply(500, {"Content-Type": "text/plain"}, [b"x" * 5000])

    async def call() -> None:
        async with Provider(reply) as provider, http_client(max_response_bytes=1000) as http:
            await collect(http, provider.url)

    error = failure(call)
    assert error.kind is FailureKind.BAD_RESPONSE
    assert "larger than 1000 bytes" in str(error)


def test_an_answer_that_is_no_event_stream_is_a_bad_response() -> None:
    reply = Reply(200, {"Content-Type": "application/json"}, [b'{"choices": []}'])

    async def call() -> None:
        async with Provider(reply) as provider, http_client() as http:
            await collect(http, provider.url)

    error = failure(call)
    assert error.kind is FailureKind.BAD_RESPONSE
    assert str(error) == "127.0.0.1: a stream was asked for and the answer is not text/event-stream"


def test_a_refused_connection_is_a_connection_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    async def call() -> None:
        async with http_client() as http:
            await collect(http, f"http://127.0.0.1:{port}/v1/stream")

    error = failure(call)
    assert error.kind is FailureKind.CONNECTION_ERROR
    assert "cannot connect" in str(error)


def test_a_private_address_is_refused_before_connecting() -> None:
    async def call() -> None:
        http = transport.Http(allow_local=False)
        try:
            await collect(http, "http://127.0.0.1:9/v1/stream")
        finally:
            await http.aclose()

    error = failure(call)
    assert error.kind is FailureKind.CONFIGURATION


@pytest.mark.parametrize(
    ("ending", "body", "why"),
    [
        ("cut", [*sse((None, "1")), b"data: 2\n"], "ClientPayloadError"),
        ("reset", [*sse((None, "1")), b"data: 2\n"], "ClientPayloadError"),
        ("close", [*sse((None, "1")), b"data: 2\n"], "it ended inside an event"),
        ("close", [*sse((None, "1")), b"data: 2"], "it ended inside an event"),
    ],
)
def test_a_stream_cut_before_its_end_is_a_connection_error(
    ending: str, body: list[bytes | float], why: str
) -> None:
    seen: list[tuple[str | None, str]] = []

    async def call() -> None:
        async with Provider(Reply(body=body, ending=ending)) as provider, http_client() as http:
            events = http.events(provider.url, {}, {}, deadline_s=2, idle_s=1)
            async for event in events:
                seen.append(event)

    error = failure(call)
    assert seen == [(None, "1")]
    assert error.kind is FailureKind.CONNECTION_ERROR
    assert str(error).startswith("127.0.0.1: the stream was cut (")
    if ending != "reset":  # a reset reads as the payload's error or the socket's
        assert why in str(error)


def test_a_stream_that_ends_after_a_whole_event_just_ends() -> None:
    async def body() -> None:
        reply = Reply(body=sse((None, "1"), (None, "2")), ending="close")
        async with Provider(reply) as provider, http_client() as http:
            assert await collect(http, provider.url) == [(None, "1"), (None, "2")]

    run(body)


def test_a_provider_silent_for_the_idle_deadline_fails_the_stream() -> None:
    reply = Reply(body=[*sse((None, "1")), 1.0, *sse((None, "2"))])

    async def call() -> None:
        async with Provider(reply) as provider, http_client() as http:
            await collect(http, provider.url, deadline_s=5, idle_s=0.2)

    started = time.monotonic()
    error = failure(call)
    assert error.kind is FailureKind.TIMEOUT
    assert str(error) == "127.0.0.1: no chunk within 0.2s"
    assert time.monotonic() - started < 0.9


def test_a_provider_that_sends_no_status_within_the_idle_deadline_fails_too() -> None:
    async def call() -> None:
        async with Provider(Reply(ending="silent")) as provider, http_client() as http:
            await collect(http, provider.url, deadline_s=5, idle_s=0.2)

    error = failure(call)
    assert str(error) == "127.0.0.1: no chunk within 0.2s"


def test_the_whole_call_deadline_holds_while_chunks_keep_coming() -> None:
    keepalives: list[bytes | float] = [0.05, b": ping\n\n"] * 40  # never idle for 0.2 s

    async def call() -> None:
        async with Provider(Reply(body=keepalives)) as provider, http_client() as http:
            await collect(http, provider.url, deadline_s=0.3, idle_s=0.2)

    started = time.monotonic()
    error = failure(call)
    assert error.kind is FailureKind.TIMEOUT
    assert str(error) == "127.0.0.1: no complete answer within 0.3s"
    assert time.monotonic() - started < 1.0


def test_the_whole_call_deadline_holds_even_when_the_next_event_is_already_here() -> None:
    pieces = [*sse((None, "1")), 0.05, *sse((None, "2"))]

    async def call() -> None:
        async with Provider(Reply(body=pieces)) as provider, http_client() as http:
            events = http.events(provider.url, {}, {}, deadline_s=0.2, idle_s=1)
            async for _ in events:
                await asyncio.sleep(0.3)  # a slow consumer: the next event waits in the buffer

    error = failure(call)
    assert str(error) == "127.0.0.1: no complete answer within 0.2s"


@pytest.mark.parametrize(
    ("pieces", "message"),
    [
        ([b"data: x\n\n"] * 60, "stream larger than 500 bytes"),  # many small events
        ([b"data: " + b"x" * 300, b"x" * 300 + b"\n\n"], "stream larger than 500 bytes"),
        ([b"data: \xff\xfe\n\n"], "the stream is not UTF-8 text"),
    ],
)
def test_oversized_or_undecodable_streams_are_bad_responses(
    pieces: list[bytes | float], message: str
) -> None:
    async def call() -> None:
        reply = Reply(body=pieces)
        async with Provider(reply) as provider, http_client(max_response_bytes=500) as http:
            await collect(http, provider.url)

    error = failure(call)
    assert error.kind is FailureKind.BAD_RESPONSE
    assert message in str(error)


@pytest.mark.parametrize("how", ["aclose", "cancel"])
def test_closing_the_stream_closes_the_provider_s_connection_at_once(how: str) -> None:
    async def body() -> None:
        reply = Reply(body=sse((None, "1")), ending="stall")
        async with Provider(reply) as provider, http_client() as http:
            events = http.events(provider.url, {}, {}, deadline_s=5, idle_s=5)
            assert await anext(events) == (None, "1")
            if how == "aclose":
                stopped = asyncio.get_running_loop().time()
                await events.aclose()
            else:  # the consumer's task is cancelled while it waits for the next event
                waiting = asyncio.ensure_future(anext(events))
                await asyncio.sleep(0.05)
                stopped = asyncio.get_running_loop().time()
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
            await asyncio.wait_for(provider.hung_up.wait(), 1.0)
            assert provider.hung_up_at is not None
            assert provider.hung_up_at - stopped < 0.1

    run(body)


# ---------------------------------------------------------------- readers on real sequences


def joined(items: list[Delta]) -> tuple[str, dict[int, list[str | None]], StreamEnd]:
    """The text, each tool call's [id, name, arguments], and the end of a stream."""
    text = "".join(item.text for item in items if isinstance(item, TextDelta))
    calls: dict[int, list[str | None]] = {}
    for item in items:
        if isinstance(item, ToolCallDelta):
            call = calls.setdefault(item.index, [item.id, item.name, ""])
            assert item.id is None or call[:2] == [item.id, item.name]
            call[2] = f"{call[2]}{item.arguments}"
    assert isinstance(items[-1], StreamEnd)
    assert not any(isinstance(item, StreamEnd) for item in items[:-1])
    return text, calls, items[-1]


def test_an_openai_stream_gives_its_text_and_usage() -> None:
    reader = streams.OpenAIReader("m", usage_required=True)
    items = run(lambda: streamed(Reply(body=sse(*OPENAI_TEXT)), reader))
    assert items == [TextDelta("Hel"), TextDelta("lo"), StreamEnd(FinishReason.STOP, 12, 5)]


def test_an_openai_stream_gives_its_tool_calls_fragment_by_fragment() -> None:
    reader = streams.OpenAIReader("m", usage_required=True)
    text, calls, end = joined(run(lambda: streamed(Reply(body=sse(*OPENAI_TOOLS)), reader)))
    assert text == ""
    assert calls == {0: ["call_a", "weather", '{"city": "Paris"}'], 1: ["call_b", "clock", "{}"]}
    assert end == StreamEnd(FinishReason.TOOL_CALLS, 12, 5)


def test_an_openai_compatible_stream_without_usage_is_uncounted() -> None:
    events = [event for event in OPENAI_TEXT if event[1] is not OPENAI_USAGE]
    reader = streams.OpenAIReader("m", usage_required=False)
    items = run(lambda: streamed(Reply(body=sse(*events)), reader))
    assert items[-1] == StreamEnd(FinishReason.STOP, 0, 0, counted=False)


def test_an_anthropic_stream_gives_text_and_numbered_tool_calls() -> None:
    reader = streams.AnthropicReader("m")
    text, calls, end = joined(run(lambda: streamed(Reply(body=sse(*ANTHROPIC_TOOLS)), reader)))
    assert text == "Hello"
    assert calls == {
        0: ["toolu_a", "weather", '{"city": "Paris"}'],
        1: ["toolu_b", "clock", "{}"],  # no arguments at all: "{}"
    }
    assert end == StreamEnd(FinishReason.TOOL_CALLS, 12, 5)


def test_an_anthropic_error_event_mid_stream_is_the_failure_it_names() -> None:
    overloaded = anthropic("error", error={"type": "overloaded_error", "message": "Overloaded"})
    reply = Reply(body=sse(*ANTHROPIC_TEXT[:4], overloaded))

    async def call() -> None:
        await streamed(reply, streams.AnthropicReader("m"))

    error = failure(call)
    assert error.kind is FailureKind.SERVER_ERROR
    assert str(error) == ("m: the provider ended the stream with an error (overloaded_error)")


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_a_gemini_stream_gives_text_and_ends_at_its_finish_reason(newline: str) -> None:
    reader = streams.GeminiReader("m")
    items = run(lambda: streamed(Reply(body=sse(*GEMINI_TEXT, newline=newline)), reader))
    assert items == [TextDelta("Hel"), TextDelta("lo"), StreamEnd(FinishReason.STOP, 12, 5)]


def test_gemini_function_calls_get_made_up_ids_and_whole_arguments() -> None:
    reader = streams.GeminiReader("m")
    items = run(lambda: streamed(Reply(body=sse(*GEMINI_TOOLS)), reader))
    _, calls, end = joined(items)
    assert [(call[1], call[2]) for call in calls.values()] == [
        ("weather", '{"city":"Paris"}'),
        ("clock", "{}"),
    ]
    ids = [call[0] for call in calls.values()]
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", str(ident)) for ident in ids)
    assert len(set(ids)) == 2
    assert end == StreamEnd(FinishReason.TOOL_CALLS, 12, 5)


@pytest.mark.parametrize(
    ("reader", "events"),
    [
        (lambda: streams.OpenAIReader("m", usage_required=True), OPENAI_TEXT),
        (lambda: streams.AnthropicReader("m"), ANTHROPIC_TEXT),
        (lambda: streams.GeminiReader("m"), GEMINI_TEXT),
    ],
)
def test_reading_stops_at_the_end_marker_without_waiting_for_the_body_to_end(
    reader: Any, events: list[tuple[str | None, Any]]
) -> None:
    reply = Reply(body=sse(*events), ending="stall")  # the body never ends
    started = time.monotonic()
    items = run(lambda: streamed(reply, reader(), idle_s=2.0))
    assert joined(items)[0] == "Hello"
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("reader", "events", "missing"),
    [
        (lambda: streams.OpenAIReader("m", usage_required=True), OPENAI_TEXT[:-1], "data: [DONE]"),
        (lambda: streams.AnthropicReader("m"), ANTHROPIC_TEXT[:-1], "message_stop"),
        (lambda: streams.GeminiReader("m"), GEMINI_TEXT[:-1], "a finishReason"),
    ],
)
def test_a_stream_whose_body_ends_before_the_provider_s_end_is_a_bad_response(
    reader: Any, events: list[tuple[str | None, Any]], missing: str
) -> None:
    async def call() -> None:
        await streamed(Reply(body=sse(*events)), reader())

    error = failure(call)
    assert error.kind is FailureKind.BAD_RESPONSE
    assert str(error).startswith(f"m: the stream ended without {missing}")


def test_the_model_s_timeout_is_the_whole_call_deadline_of_its_stream() -> None:
    reply = Reply(body=[0.05, b": ping\n\n"] * 40)

    async def call() -> None:
        await streamed(reply, streams.GeminiReader("m"), timeout_ms=300, idle_s=0.2)

    error = failure(call)
    assert str(error) == "127.0.0.1: no complete answer within 0.3s"


def test_the_http_s_idle_deadline_is_the_stream_s() -> None:
    reply = Reply(body=[*sse(GEMINI_TEXT[0]), 1.0])

    async def call() -> None:
        await streamed(reply, streams.GeminiReader("m"), idle_s=0.2)

    error = failure(call)
    assert str(error) == "127.0.0.1: no chunk within 0.2s"
