"""Fake model providers: real HTTP servers on loopback speaking each provider's wire format.

Each server checks the request the way the real API would (path, auth header,
body shape) and answers in that provider's format, or misbehaves on purpose:
error statuses, 429 with Retry-After, headers that never come, a body that
trickles, malformed JSON, an HTML page, a huge body, a redirect, or its usual
answer with one field replaced by any raw JSON text (:meth:`FakeProvider.answering`). HTTP/1.1 with
keep-alive is implemented by hand so that every fault is byte-exact.
"""

from __future__ import annotations

import json
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


class FakeProvider:
    """One provider endpoint. Set ``behaviour`` to script its next answers, ``script``
    to give the Nth call (counted from 1) a behaviour of its own, and ``delay_s`` to
    make every answer take that long (as a real provider does)."""

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
        self.calls = 0
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
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
        self.server.shutdown()
        self.server.server_close()

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
        if behaviour == "ok":
            return _send(connection, 200, json.dumps(self._success(body)).encode())
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
            payload = json.dumps(self._success(body)).encode()
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
        answer = self._success(b"")
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
        elif self.kind == "anthropic":
            if not path.endswith("/messages"):
                return 404, "path"
            if headers.get("x-api-key") != key or "anthropic-version" not in headers:
                return 401, "key"
            if "max_tokens" not in payload or any(
                m["role"] == "system" for m in payload["messages"]
            ):
                return 400, "shape"
        else:
            if ":generateContent" not in path or "/models/" not in path:
                return 404, "path"
            if headers.get("x-goog-api-key") != key:
                return 403, "key"
            if not isinstance(payload.get("contents"), list):
                return 400, "shape"
        return None

    def _success(self, body: bytes) -> dict[str, Any]:
        if self.kind == "openai":
            return {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.reply},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
            }
        if self.kind == "anthropic":
            return {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": self.reply}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 12, "output_tokens": 5},
            }
        return {
            "candidates": [
                {
                    "content": {"parts": [{"text": self.reply}], "role": "model"},
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 12,
                "candidatesTokenCount": 5,
                "totalTokenCount": 17,
            },
        }


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
