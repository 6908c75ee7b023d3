"""Fake model providers: real HTTP servers on loopback speaking each provider's wire format.

Each server checks the request the way the real API would (path, auth header,
body shape, tool turns that answer no call) and answers in that provider's format,
or misbehaves on purpose: error statuses, 429 with Retry-After, headers that never
come, a body that trickles, malformed JSON, an HTML page, a huge body, a redirect,
or its usual answer with one field replaced by any raw JSON text
(:meth:`FakeProvider.answering`). HTTP/1.1 with keep-alive is implemented by hand
so that every fault is byte-exact.

Streaming is answered when asked as the real API is asked: OpenAI's and
Anthropic's ``"stream": true``, Gemini's ``:streamGenerateContent?alt=sse`` path.
The stream is server-sent events in ``Transfer-Encoding: chunked``, one event per
HTTP chunk, in the provider's own sequence (:meth:`FakeProvider._events`); the
reply is cut into a few pieces whose concatenation is exactly the non-streamed
text. With ``tool_call`` set to ``(name, arguments)``, a request that offers tools
gets that call back (its arguments streamed in fragments) unless its last message
is a tool result, which the model answers with its reply text.

A provider that refuses connections cannot be a running server: a test closes the
fake (:meth:`FakeProvider.close`) and points a model at its port, which is then
unused.
"""

from __future__ import annotations

import dataclasses
import json
import select
import socket
import socketserver
import ssl
import threading
import time
from typing import Any

KEYS = {
    "openai": "sk-test-openai-0000",
    "anthropic": "sk-ant-test-0000",
    "gemini": "AIza-test-0000",
}

_RAW = "@@raw-json@@"  # stands for a raw JSON literal in :meth:`FakeProvider.answering`

# where the three wire formats carry the key (header names as the fake stores them)
_KEY_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")

INPUT_TOKENS = 12  # what every answer reports, streamed or not
OUTPUT_TOKENS = 5
PIECES = 4  # a streamed reply comes in at most this many pieces
POLL_S = 0.003  # how often a waiting stream looks whether the client hung up
STALL_LIMIT_S = 120.0  # a stalled stream whose client never hangs up ends by itself


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        connection: socket.socket = self.request
        connection.settimeout(30)
        if self.server.fake.tls is None:
            self._serve(connection)
            return
        try:  # the TLS socket takes the connection over; socketserver would not close it
            secured = self.server.fake.tls.wrap_socket(connection, server_side=True)
        except (ssl.SSLError, OSError):  # the client refused our certificate
            return
        with secured:
            self._serve(secured)

    def _serve(self, connection: socket.socket) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                try:
                    chunk = connection.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])
            }
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            body, buffer = buffer[:length], buffer[length:]
            keep = self.server.fake.answer(connection, method, path, headers, body)
            if not keep:
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    # hundreds of calls at once: socketserver's backlog of 5 made connects wait for SYN
    # retries (1, 3, 7, 15, 31 s...) past the callers' deadlines
    request_queue_size = 1024
    fake: FakeProvider


@dataclasses.dataclass(frozen=True)
class _Event:
    """One server-sent event of a stream, encoded; ``part`` says where it stands:
    "framing" (before the first piece: OpenAI's role chunk, Anthropic's message_start,
    content_block_start and ping), "piece" (a piece of the text or of the tool call's
    arguments) or "end" (what closes the answer: finish reason, usage, end marker)."""

    data: bytes
    part: str


class FakeProvider:
    """One provider endpoint. Set ``behaviour`` to script its next answers, ``script``
    to give the Nth call (counted from 1) a behaviour of its own, ``delay_s`` to
    make every answer take that long (as a real provider does), and ``tool_call`` to
    ``(name, arguments)`` to have it call that tool when the request offers tools.

    Behaviours for streams (a "chunk" is a piece of the text or of the tool call's
    arguments; the framing events before the first piece always go out):
    ``die-after:N`` sends N chunks, then closes the connection without the end;
    ``stall-after:N`` sends N chunks, then nothing, until the client hangs up;
    ``slow-chunks:S`` waits S seconds before each event after the first. Asked
    without streaming, ``die-after`` sends half the body and hangs up,
    ``stall-after`` half the body and waits for the client to hang up, and
    ``slow-chunks`` answers after S seconds.

    ``closed_at`` gets the ``time.monotonic()`` at which a streaming answer found its
    connection closed by the client (a waiting stream looks every few milliseconds);
    ``chunk_times`` the time each chunk was sent, ``first_chunk_at`` that of the
    latest stream's first chunk."""

    def __init__(
        self,
        kind: str,
        *,
        reply: str = "fake answer",
        tls: ssl.SSLContext | None = None,
        key: str | None = None,
    ) -> None:
        assert kind in KEYS
        self.kind = kind
        self.key = key or KEYS[kind]  # the key it accepts
        self.tls = tls
        self.reply = reply
        self.behaviour = "ok"
        self.script: dict[int, str] = {}
        self.delay_s = 0.0
        self.tool_call: tuple[str, dict[str, Any]] | None = None
        self.calls = 0
        self.requests: list[dict[str, Any]] = []
        self.closed_at: list[float] = []
        self.chunk_times: list[float] = []
        self.first_chunk_at: float | None = None
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.fake = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        if self.tls is not None:  # certificates name a host, not an address
            return f"https://localhost:{self.port}/v1"
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        """Stop listening (the port then refuses connections) and end stalled streams."""
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def sent(self, index: int = -1) -> dict[str, Any]:
        """The JSON body of request number ``index`` (the latest by default)."""
        body: dict[str, Any] = json.loads(self.requests[index]["body"])
        return body

    # ---------------------------------------------------------------- answering

    def answer(
        self,
        connection: socket.socket,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
    ) -> bool:
        with self.lock:
            self.calls += 1
            number = self.calls
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
            behaviour = self.script.get(number, self.behaviour)
        if self.delay_s:
            time.sleep(self.delay_s)
        problem = self._check(method, path, headers, body)
        if problem is not None:
            return _send(connection, problem[0], json.dumps({"error": problem[1]}).encode())
        if behaviour == "flaky":
            behaviour = "status:503" if number % 2 else "ok"
        if behaviour.startswith("fail-rate:"):  # exactly that share of 500s, spread evenly
            rate = float(behaviour.split(":")[1])
            behaviour = "status:500" if int(number * rate) != int((number - 1) * rate) else "ok"
        streamed = self._streamed(path, body)
        if behaviour == "ok" or behaviour.startswith(_STREAM_FAULTS):
            if streamed:
                return self._stream(connection, self._events(path, body, number), behaviour)
            return self._whole(connection, path, body, number, behaviour)
        if behaviour.startswith("body:"):  # a 200 with exactly these bytes
            return _send(connection, 200, behaviour.removeprefix("body:").encode())
        if behaviour == "echo-key":  # as real providers do: "Incorrect API key provided: sk-..."
            seen = " ".join(v for k, v in headers.items() if k in _KEY_HEADERS)
            message = json.dumps({"error": {"message": f"Incorrect API key provided: {seen}"}})
            return _send(connection, 401, message.encode())
        if behaviour.startswith("status:"):
            status = int(behaviour.split(":")[1])
            return _send(connection, status, b'{"error": {"message": "scripted failure"}}')
        if behaviour.startswith(("429:", "503:")):
            code, value = behaviour.split(":", 1)
            return _send(connection, int(code), b'{"error": "slow down"}', {"Retry-After": value})
        if behaviour == "no-headers":
            time.sleep(30)
            return False
        if behaviour == "trickle":
            payload = json.dumps(self._success(body, number)).encode()
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            )
            for byte in payload:
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return False
                time.sleep(1.0)
            return False
        if behaviour == "deep":  # valid-looking JSON nested past Python's recursion limit
            return _send(connection, 200, b"[" * 100_000 + b"]" * 100_000)
        if behaviour == "malformed":
            return _send(connection, 200, b'{"choices": [ {"message": ')
        if behaviour == "html":
            return _send(
                connection, 200, b"<html><body>Login</body></html>", {"Content-Type": "text/html"}
            )
        if behaviour == "huge":
            size = 50 * 1024 * 1024
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {size}\r\n\r\n".encode()
            )
            chunk = b"x" * 65536
            sent = 0
            try:
                while sent < size:
                    connection.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            return False
        if behaviour == "cut":  # promises 1,000 bytes, sends ten, hangs up
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n" + b'{"choices"'
            )
            return False
        if behaviour == "endless":  # no Content-Length: the body ends when the server closes
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
            )
            chunk = b"x" * 65536
            try:
                for _ in range(50 * 16):  # 50 MiB at most
                    connection.sendall(chunk)
            except OSError:
                pass
            return False
        if behaviour == "redirect":
            return _send(
                connection, 302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}
            )
        raise AssertionError(f"unknown behaviour {behaviour}")

    def answering(self, path: str, literal: str | None) -> str:
        """A behaviour: the usual successful answer, with the value at ``path`` (dotted;
        numbers index arrays, as in ``choices.0.message.content``) replaced by the raw
        JSON text ``literal`` (``1e400``, a 400-digit integer, ``"7"``), or removed
        when ``literal`` is None."""
        answer = self._success(b"", 0)
        *parents, last = path.split(".")
        holder: Any = answer
        for step in parents:
            holder = holder[int(step)] if isinstance(holder, list) else holder[step]
        key: Any = int(last) if isinstance(holder, list) else last
        if literal is None:
            del holder[key]
            return "body:" + json.dumps(answer)
        holder[key] = _RAW
        return "body:" + json.dumps(answer).replace(json.dumps(_RAW), literal, 1)

    # ---------------------------------------------------------------- checking

    def _check(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str] | None:
        """Refuse what the real API would refuse: wrong method, path, key or body."""
        if method != "POST":
            return 405, "method"
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, "body is not JSON"
        key = self.key
        if self.kind == "openai":
            if not path.endswith("/chat/completions"):
                return 404, "path"
            if headers.get("authorization") not in (f"Bearer {key}", None):
                return 401, "key"
            if not isinstance(payload.get("messages"), list) or "model" not in payload:
                return 400, "shape"
            if "stream_options" in payload and payload.get("stream") is not True:
                return 400, "stream_options is only allowed when stream is enabled"
            return _openai_tool_turns(payload)
        if self.kind == "anthropic":
            if not path.endswith("/messages"):
                return 404, "path"
            # the API takes the key as x-api-key, and as a bearer token (the SDK's way)
            given = headers.get("x-api-key") or headers.get("authorization", "")
            if given.removeprefix("Bearer ") != key or "anthropic-version" not in headers:
                return 401, "key"
            if "max_tokens" not in payload or any(
                m["role"] == "system" for m in payload["messages"]
            ):
                return 400, "shape"
            return _anthropic_tool_turns(payload)
        if ":generateContent" not in path and ":streamGenerateContent" not in path:
            return 404, "path"
        if "/models/" not in path:
            return 404, "path"
        if headers.get("x-goog-api-key") != key:
            return 403, "key"
        if not isinstance(payload.get("contents"), list):
            return 400, "shape"
        return _gemini_tool_turns(payload)

    def _streamed(self, path: str, body: bytes) -> bool:
        """Whether the request asks for server-sent events, as the real API is asked."""
        if self.kind == "gemini":
            return ":streamGenerateContent" in path and "alt=sse" in path
        return json.loads(body).get("stream") is True

    def _calls_tool(self, body: bytes) -> tuple[str, dict[str, Any]] | None:
        """The tool call to answer with: ``tool_call`` when the request offers tools, lets
        the model use them, and does not end with a tool result (which the model answers
        with text)."""
        if self.tool_call is None or not body:
            return None
        payload = json.loads(body)
        if not payload.get("tools"):
            return None
        if self.kind == "openai":
            last = payload["messages"][-1] if payload["messages"] else {}
            if last.get("role") == "tool" or payload.get("tool_choice") == "none":
                return None
        elif self.kind == "anthropic":
            last = payload["messages"][-1] if payload["messages"] else {}
            content = last.get("content")
            if isinstance(content, list) and any(
                isinstance(b, dict) and b.get("type") == "tool_result" for b in content
            ):
                return None
            if (payload.get("tool_choice") or {}).get("type") == "none":
                return None
        else:
            last = payload["contents"][-1] if payload["contents"] else {}
            if any("functionResponse" in part for part in last.get("parts", [])):
                return None
            config = (payload.get("toolConfig") or {}).get("functionCallingConfig") or {}
            if config.get("mode") == "NONE":
                return None
        return self.tool_call

    # ---------------------------------------------------------------- whole answers

    def _whole(
        self, connection: socket.socket, path: str, body: bytes, number: int, behaviour: str
    ) -> bool:
        """The answer in one body (Gemini's stream without ``alt=sse`` is a JSON array of
        chunks: this answer as its one chunk), with ``behaviour``'s fault."""
        payload = json.dumps(self._success(body, number)).encode()
        if ":streamGenerateContent" in path:
            payload = b"[" + payload + b"]"
        if behaviour.startswith("slow-chunks:"):
            if not self._wait(connection, float(behaviour.split(":")[1])):
                return False
            behaviour = "ok"
        if behaviour == "ok":
            return _send(connection, 200, payload)
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        )
        try:
            connection.sendall(head + payload[: len(payload) // 2])
        except OSError:
            self.closed_at.append(time.monotonic())
            return False
        if behaviour.startswith("stall-after:"):
            self._wait(connection, None)
        return False

    def _success(self, body: bytes, number: int) -> dict[str, Any]:
        call = self._calls_tool(body)
        if self.kind == "openai":
            message: dict[str, Any] = {"role": "assistant", "content": self.reply}
            if call is not None:
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": self._call_id(number),
                            "type": "function",
                            "function": {"name": call[0], "arguments": json.dumps(call[1])},
                        }
                    ],
                }
            return {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "stop" if call is None else "tool_calls",
                    }
                ],
                "usage": {
                    "prompt_tokens": INPUT_TOKENS,
                    "completion_tokens": OUTPUT_TOKENS,
                    "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
                },
            }
        if self.kind == "anthropic":
            block: dict[str, Any] = {"type": "text", "text": self.reply}
            if call is not None:
                block = {
                    "type": "tool_use",
                    "id": self._call_id(number),
                    "name": call[0],
                    "input": call[1],
                }
            return {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [block],
                "stop_reason": "end_turn" if call is None else "tool_use",
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
            }
        part: dict[str, Any] = {"text": self.reply}
        if call is not None:
            part = {"functionCall": {"name": call[0], "args": call[1]}}
        return {
            "candidates": [
                {
                    "content": {"parts": [part], "role": "model"},
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": INPUT_TOKENS,
                "candidatesTokenCount": OUTPUT_TOKENS,
                "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS,
            },
        }

    def _call_id(self, number: int) -> str:
        """The id of call ``number``'s tool call, in the provider's style (Gemini has none)."""
        prefix = "call_" if self.kind == "openai" else "toolu_"
        return f"{prefix}{self.port:05d}{number:019d}"

    # ---------------------------------------------------------------- streams

    def _events(self, path: str, body: bytes, number: int) -> list[_Event]:
        """The provider's event sequence for this request: text, or a tool call."""
        payload = json.loads(body)
        call = self._calls_tool(body)
        if self.kind == "openai":
            return self._openai_events(payload, call, number)
        if self.kind == "anthropic":
            return self._anthropic_events(payload, call, number)
        return self._gemini_events(path, call)

    def _openai_events(
        self, payload: dict[str, Any], call: tuple[str, dict[str, Any]] | None, number: int
    ) -> list[_Event]:
        usage = bool((payload.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return _sse(None, {**base, "choices": [choice], **({"usage": None} if usage else {})})

        base = {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": payload["model"],
            "system_fingerprint": "fp_fake",
        }
        if call is None:
            events = [_Event(chunk({"role": "assistant", "content": ""}), "framing")]
            events += [_Event(chunk({"content": p}), "piece") for p in _pieces(self.reply)]
            finish = "stop"
        else:
            opening = {
                "index": 0,
                "id": self._call_id(number),
                "type": "function",
                "function": {"name": call[0], "arguments": ""},
            }
            first = {"role": "assistant", "content": None, "tool_calls": [opening]}
            events = [_Event(chunk(first), "framing")]
            events += [
                _Event(chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}), "piece")
                for p in _pieces(json.dumps(call[1]))
            ]
            finish = "tool_calls"
        events.append(_Event(chunk({}, finish), "end"))
        if usage:
            counts = {
                "prompt_tokens": INPUT_TOKENS,
                "completion_tokens": OUTPUT_TOKENS,
                "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
            }
            events.append(_Event(_sse(None, {**base, "choices": [], "usage": counts}), "end"))
        events.append(_Event(b"data: [DONE]\n\n", "end"))
        return events

    def _anthropic_events(
        self, payload: dict[str, Any], call: tuple[str, dict[str, Any]] | None, number: int
    ) -> list[_Event]:
        message: dict[str, Any] = {
            "id": f"msg_{number}",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": payload.get("model"),
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1},
        }
        if call is None:
            block: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(self.reply)]
            stop = "end_turn"
        else:
            block = {"type": "tool_use", "id": self._call_id(number), "name": call[0], "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in _pieces(json.dumps(call[1]))
            ]
            stop = "tool_use"
        events = [
            _Event(_sse("message_start", {"type": "message_start", "message": message}), "framing"),
            _Event(
                _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": block},
                ),
                "framing",
            ),
            _Event(_sse("ping", {"type": "ping"}), "framing"),
        ]
        events += [
            _Event(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                ),
                "piece",
            )
            for delta in deltas
        ]
        closing = {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": OUTPUT_TOKENS},
        }
        events += [
            _Event(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}), "end"),
            _Event(_sse("message_delta", closing), "end"),
            _Event(_sse("message_stop", {"type": "message_stop"}), "end"),
        ]
        return events

    def _gemini_events(self, path: str, call: tuple[str, dict[str, Any]] | None) -> list[_Event]:
        """Gemini's chunks: every one a GenerateContentResponse; the last carries the
        finish reason and the full usage; no end marker (the stream ends with the body).
        Google ends each event with CRLF CRLF."""
        version = path.split("/models/", 1)[1].split(":", 1)[0]
        parts: list[dict[str, Any]]
        if call is None:
            parts = [{"text": p} for p in _pieces(self.reply)]
        else:
            parts = [{"functionCall": {"name": call[0], "args": call[1]}}]
        events = []
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}, "index": 0}
            usage: dict[str, Any] = {
                "promptTokenCount": INPUT_TOKENS,
                "totalTokenCount": INPUT_TOKENS,
            }
            if last:
                candidate["finishReason"] = "STOP"
                usage = {
                    "promptTokenCount": INPUT_TOKENS,
                    "candidatesTokenCount": OUTPUT_TOKENS,
                    "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS,
                }
            chunk = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": version}
            data = b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n"
            events.append(_Event(data, "piece"))
        return events

    def _stream(self, connection: socket.socket, events: list[_Event], behaviour: str) -> bool:
        """Send ``events`` as a chunked text/event-stream, with ``behaviour``'s fault;
        True when the stream ended well (the connection may serve the next request)."""
        fault, _, value = behaviour.partition(":")
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        if not self._send_or_note(connection, head):
            return False
        pieces = 0
        self.first_chunk_at = None
        for position, event in enumerate(events):
            cut = fault in ("die-after", "stall-after") and event.part != "framing"
            if cut and pieces >= int(value):
                if fault == "stall-after":
                    self._wait(connection, None)
                return False  # the handler closes the connection: no end, no last chunk
            slow = fault == "slow-chunks" and position > 0
            if slow and not self._wait(connection, float(value)):
                return False
            framed = f"{len(event.data):x}\r\n".encode() + event.data + b"\r\n"
            if event.part == "piece":
                # noted before the send: a client may read the chunk and hang up before
                # this thread runs again, and a test compares the two times
                pieces += 1
                now = time.monotonic()
                self.chunk_times.append(now)
                if self.first_chunk_at is None:
                    self.first_chunk_at = now
            if not self._send_or_note(connection, framed):
                return False
        return self._send_or_note(connection, b"0\r\n\r\n")

    def _send_or_note(self, connection: socket.socket, data: bytes) -> bool:
        """Send; a connection the client closed is noted in ``closed_at``."""
        try:
            connection.sendall(data)
        except OSError:
            self.closed_at.append(time.monotonic())
            return False
        return True

    def _wait(self, connection: socket.socket, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: until the client hangs up), looking every few
        milliseconds whether it did, so a test can time how soon its hang-up reaches the
        provider. False when the client closed (noted in ``closed_at``) or the fake
        stopped."""
        limit = STALL_LIMIT_S if seconds is None else seconds
        deadline = time.monotonic() + limit
        watcher = select.poll()
        watcher.register(connection.fileno(), select.POLLIN | select.POLLRDHUP)
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return seconds is not None
            if _hung_up(connection, watcher, min(POLL_S, left)):
                self.closed_at.append(time.monotonic())
                return False
        return False


_STREAM_FAULTS = ("die-after:", "stall-after:", "slow-chunks:")


def _hung_up(connection: socket.socket, watcher: select.poll, timeout_s: float) -> bool:
    """Whether the client closed its end (a FIN or a reset), waiting ``timeout_s`` for news."""
    events = watcher.poll(max(1, round(timeout_s * 1000)))
    if not events:
        return False
    flags = events[0][1]
    if flags & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL):
        return True
    try:
        if isinstance(connection, ssl.SSLSocket):  # TLS cannot peek; a stalled client sends nothing
            data = connection.recv(1)
        else:
            data = connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
        return False
    except OSError:
        return True
    if data:  # the client sent something (a pipelined request): not a hang-up
        time.sleep(timeout_s)
        return False
    return True


def _pieces(text: str) -> list[str]:
    """``text`` cut into up to :data:`PIECES` pieces that join to exactly ``text``."""
    count = max(1, min(PIECES, len(text)))
    cuts = [len(text) * i // count for i in range(count + 1)]
    return [text[cuts[i] : cuts[i + 1]] for i in range(count)]


def _sse(name: str | None, data: dict[str, Any]) -> bytes:
    event = f"event: {name}\n" if name else ""
    return f"{event}data: {json.dumps(data)}\n\n".encode()


# ---------------------------------------------------------------- tool turns, as checked


def _openai_tool_turns(payload: dict[str, Any]) -> tuple[int, str] | None:
    """OpenAI's rules: a tool message answers a call of the assistant message before
    it, and an assistant message with tool calls is followed by an answer to each."""
    for tool in payload.get("tools") or []:
        if tool.get("type") != "function" or "name" not in (tool.get("function") or {}):
            return 400, "tools[].function.name is required"
    open_calls: set[str] = set()
    for index, message in enumerate(payload["messages"]):
        role = message.get("role")
        if role == "tool":
            if message.get("tool_call_id") not in open_calls:
                return 400, f"messages[{index}]: a tool message must answer a preceding tool call"
            open_calls.discard(message["tool_call_id"])
            continue
        if open_calls:
            return 400, f"messages[{index}]: tool calls {sorted(open_calls)} have no answer"
        if role == "assistant" and message.get("tool_calls"):
            for call in message["tool_calls"]:
                function = call.get("function") or {}
                if not isinstance(function.get("arguments"), str) or "name" not in function:
                    return 400, f"messages[{index}].tool_calls: name and string arguments"
                open_calls.add(call.get("id"))
    if open_calls:
        return 400, f"tool calls {sorted(open_calls)} have no answer"
    return None


def _anthropic_tool_turns(payload: dict[str, Any]) -> tuple[int, str] | None:
    """Anthropic's rules: each tool_use is answered by a tool_result in the next (user)
    message, and a tool_result answers a tool_use of the message before it."""
    for tool in payload.get("tools") or []:
        if "name" not in tool or "input_schema" not in tool:
            return 400, "tools[]: name and input_schema are required"
    asked: set[str] = set()
    for index, message in enumerate(payload["messages"]):
        blocks = message.get("content")
        blocks = blocks if isinstance(blocks, list) else []
        answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
        if answered - asked or asked - answered:
            return 400, f"messages[{index}]: tool_result blocks must answer the tool_use blocks"
        asked = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
        if asked and message.get("role") != "assistant":
            return 400, f"messages[{index}]: only the assistant uses tools"
    return None


def _gemini_tool_turns(payload: dict[str, Any]) -> tuple[int, str] | None:
    """Gemini's rule: a function response turn comes right after a function call turn,
    with one response per call, by name."""
    for tool in payload.get("tools") or []:
        for declaration in tool.get("functionDeclarations") or []:
            if "name" not in declaration:
                return 400, "tools[].functionDeclarations[].name is required"
    called: list[str] = []
    for index, content in enumerate(payload["contents"]):
        parts = content.get("parts") or []
        answered = [p["functionResponse"].get("name") for p in parts if "functionResponse" in p]
        if answered and sorted(answered) != sorted(called):
            return 400, (
                f"contents[{index}]: please ensure that function response turn comes "
                "immediately after a function call turn, one response per call"
            )
        called = [p["functionCall"].get("name") for p in parts if "functionCall" in p]
    return None


def _send(
    connection: socket.socket, status: int, body: bytes, headers: dict[str, str] | None = None
) -> bool:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    if "Content-Type" not in (headers or {}):
        extra += "Content-Type: application/json\r\n"
    try:
        connection.sendall(
            f"HTTP/1.1 {status} X\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
    except OSError:
        return False
    return True
