"""A response's head goes out with the first of its body, in one write
(``api.connections.HeldHead``): what the client reads is unchanged in every shape of
answer (plain, streamed with a slow first event, body-less, pipelined, after a
``100 Continue``), and a head never waits for a body that is not ready.

The first tests drive :class:`HeldHead` with a transport that records its writes (the
asyncio interface, not Grove's code); the others run uvicorn with Grove's connection
options on loopback and read raw bytes from a socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from reconciler.api import connections
from reconciler.base import settings as settings_module
from tests.api.conftest import free_port

WAIT_S = 10.0


class Recording(asyncio.Transport):
    """A transport that keeps what is written, as writes (each ``write`` or
    ``writelines`` one entry), and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.writes.append(b"".join(list_of_data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )


def _held() -> tuple[connections.HeldHead, Recording, SimpleNamespace]:
    transport = Recording()
    cycle = SimpleNamespace()
    held = connections.HeldHead(transport, cycle)  # type: ignore[arg-type]
    cycle.transport = held
    return held, transport, cycle


def test_the_head_and_the_first_body_go_in_one_write() -> None:
    asyncio.run(_one_write())


async def _one_write() -> None:
    held, transport, cycle = _held()
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert transport.writes == []
    held.write(b"5\r\nfirst\r\n")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n5\r\nfirst\r\n"]
    assert cycle.transport is transport  # the rest is written straight through
    await asyncio.sleep(0)
    assert len(transport.writes) == 1  # the turn's end writes nothing more


def test_a_head_without_a_body_in_the_same_turn_is_written_at_its_end() -> None:
    asyncio.run(_head_alone())


async def _head_alone() -> None:
    held, transport, cycle = _held()
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    await asyncio.sleep(0)  # one turn of the loop: the head alone, not waiting for a body
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
    assert cycle.transport is transport


def test_closing_writes_the_held_head_first_and_a_closed_transport_gets_nothing() -> None:
    asyncio.run(_closing())


async def _closing() -> None:
    held, transport, _ = _held()
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    held.close()
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n"] and transport.closed

    held, transport, _ = _held()
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.closed = True  # the client went: nothing to write to
    await asyncio.sleep(0)
    assert transport.writes == []
    assert held.is_closing()  # anything else is the transport's own


# ---------------------------------------------------------------- Grove's connections


def test_a_grove_connection_sends_an_answer_in_one_write() -> None:
    """uvicorn's protocol as Grove's servers run it (``connections.options``), fed a
    request: the answer's head and body reach the transport as one write."""

    async def serve() -> Recording:
        app = Starlette(routes=[Route("/plain", _plain)])
        config = uvicorn.Config(app, **connections.options(settings_module.Settings()))
        config.load()
        protocol = config.http_protocol_class(
            config=config, server_state=uvicorn.server.ServerState(), app_state={}
        )
        transport = Recording()
        protocol.connection_made(transport)
        protocol.data_received(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
        for _ in range(200):  # the app runs in a task of its own
            if transport.writes:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)  # anything written after the first write lands too
        protocol.connection_lost(None)
        return transport

    transport = asyncio.run(serve())
    [written] = transport.writes
    assert written.startswith(b"HTTP/1.1 200 ") and written.endswith(b"\r\n\r\nplain body")


def test_what_uvicorn_writes_itself_goes_after_a_held_head() -> None:
    """A head held for its body, and in the same turn bytes that uvicorn answers itself
    (a 400 for what does not parse): the head is written first, then the 400."""

    async def serve() -> bytes:
        protocol: Any = None

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            protocol.data_received(b"NOT HTTP\r\n\r\n")  # before the head's turn ends
            await asyncio.sleep(0.02)

        config = uvicorn.Config(app, **connections.options(settings_module.Settings()))
        config.load()
        protocol = config.http_protocol_class(
            config=config, server_state=uvicorn.server.ServerState(), app_state={}
        )
        transport = Recording()
        protocol.connection_made(transport)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        for _ in range(200):
            if b"400" in b"".join(transport.writes):
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)
        protocol.connection_lost(None)
        return b"".join(transport.writes)

    written = asyncio.run(serve())
    assert written.startswith(b"HTTP/1.1 200 "), written[:80]
    assert b"HTTP/1.1 400 " in written


# ---------------------------------------------------------------- a real server

release = threading.Event()  # the slow stream's first event waits for it


async def _plain(request: Request) -> Response:
    return Response(b"plain body", media_type="text/plain")


async def _empty(request: Request) -> Response:
    return Response(status_code=204)


async def _echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


async def _slow_stream(request: Request) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        while not release.is_set():
            await asyncio.sleep(0.01)
        yield b"data: first\n\n"
        yield b"data: second\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = Starlette(
        routes=[
            Route("/plain", _plain),
            Route("/empty", _empty),
            Route("/echo", _echo, methods=["POST"]),
            Route("/slow", _slow_stream),
        ]
    )
    options = connections.options(settings_module.Settings())
    number = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=number, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    try:
        yield number
    finally:
        server.should_exit = True
        thread.join(WAIT_S)


@contextlib.contextmanager
def _connected(port: int) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as conn:
        yield conn


def _read_until(conn: socket.socket, marker: bytes, have: bytes = b"") -> bytes:
    while marker not in have:
        data = conn.recv(65536)
        assert data, f"closed before {marker!r}; read {have!r}"
        have += data
    return have


def _answers(conn: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` answers with a Content-Length, as (head, body), in the order read."""
    out: list[tuple[bytes, bytes]] = []
    have = b""
    for _ in range(count):
        have = _read_until(conn, b"\r\n\r\n", have)
        head, _, have = have.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(have) < length:
            data = conn.recv(65536)
            assert data
            have += data
        out.append((head, have[:length]))
        have = have[length:]
    return out


def test_plain_and_bodiless_answers_read_as_before(port: int) -> None:
    with _connected(port) as conn:
        conn.sendall(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
        [(head, body)] = _answers(conn, 1)
        assert head.startswith(b"HTTP/1.1 200 ") and body == b"plain body"
        conn.sendall(b"GET /empty HTTP/1.1\r\nHost: t\r\n\r\n")
        [(head, body)] = _answers(conn, 1)
        assert head.startswith(b"HTTP/1.1 204 ") and body == b""
        conn.sendall(b"HEAD /plain HTTP/1.1\r\nHost: t\r\n\r\n")
        head = _read_until(conn, b"\r\n\r\n")  # a head alone: no body follows
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")


def test_pipelined_requests_get_their_answers_in_order(port: int) -> None:
    with _connected(port) as conn:
        conn.sendall(
            b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\necho"
            b"GET /empty HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        answers = _answers(conn, 3)
    assert [body for _, body in answers] == [b"plain body", b"echo", b""]
    assert [head.split(b" ")[1] for head, _ in answers] == [b"200", b"200", b"204"]


def test_a_stream_sends_its_head_before_its_first_event_is_ready(port: int) -> None:
    release.clear()
    with _connected(port) as conn:
        conn.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        head = _read_until(conn, b"\r\n\r\n")  # the first event is not released yet
        assert head.startswith(b"HTTP/1.1 200 ") and b"text/event-stream" in head
        assert b"data:" not in head
        release.set()
        rest = _read_until(conn, b"0\r\n\r\n", head.partition(b"\r\n\r\n")[2])
    assert b"data: first" in rest and b"data: second" in rest


def test_a_request_expecting_100_continue_is_answered_in_order(port: int) -> None:
    with _connected(port) as conn:
        conn.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = _read_until(conn, b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.sendall(b"hello")
        [(head, body)] = _answers(conn, 1)
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"hello"
