"""Which answers a stopping server ends: only the streams whose route marks them endless
(``base.endless``: ``GET /api/events``, the console's ``GET /console/events``); every
other answer finishes (the gateway's: tests/gateway/test_stopping.py)."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from reconciler.api import connections
from reconciler.base import endless
from reconciler.base import settings as settings_module
from tests.api.serving import api_process
from tests.api.test_held_head import Recording
from tests.api.test_shutdown import EXIT_WITHIN_S, open_stream, rest_of
from tests.conftest import Registry
from tests.web.conftest import csrf_of


def _console_stream(url: str, port: int, token: str) -> socket.socket:
    """The console's live feed on a raw connection (signed in), once it has started."""
    with httpx.Client(base_url=url) as client:
        form = client.get("/login").text
        signed = client.post("/login", data={"token": token, "csrf": csrf_of(form), "next": "/"})
        assert signed.status_code == 303, signed.text
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    return open_stream(port, "", path="/console/events", cookie=cookie)


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # processes, not the database
def test_the_consoles_live_feed_ends_when_the_server_stops(
    registry: Registry, tmp_path: Path
) -> None:
    with api_process(registry, tmp_path, "--no-loop") as server:
        conn = _console_stream(server.url, server.port, server.token)
        try:
            started = time.monotonic()
            code, err = server.stop(signal.SIGTERM)
            took = time.monotonic() - started
            end = rest_of(conn)
        finally:
            conn.close()
    assert code == 0, err
    assert took < EXIT_WITHIN_S, f"the server took {took:.1f}s to exit"
    assert end.endswith(b"0\r\n\r\n")  # the last chunk: the page reads a whole stream


@pytest.mark.parametrize("marked", [False, True], ids=["unmarked", "endless"])
def test_a_stopping_connection_ends_only_a_stream_marked_endless(marked: bool) -> None:
    """Grove's uvicorn protocol, a stream under way when the server stops: a stream its
    route marked endless gets its last chunk and its connection closed at once; any
    other streamed answer is let finish, whole, and only then is the connection closed."""

    async def drive() -> tuple[bytes, bytes, bool]:
        go_on = asyncio.Event()

        async def stream(request: Request) -> StreamingResponse:
            if marked:
                endless.mark(request.scope)

            async def body() -> AsyncIterator[bytes]:
                yield b"first;"
                await go_on.wait()
                yield b"second;"

            return StreamingResponse(body(), media_type="text/plain")

        app = Starlette(routes=[Route("/stream", stream)])
        config = uvicorn.Config(app, **connections.options(settings_module.Settings()))
        config.load()
        protocol = config.http_protocol_class(
            config=config, server_state=uvicorn.server.ServerState(), app_state={}
        )
        transport = Recording()
        protocol.connection_made(transport)
        protocol.data_received(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        for _ in range(400):
            if b"first;" in b"".join(transport.writes):
                break
            await asyncio.sleep(0.005)
        protocol.shutdown()
        at_stop = b"".join(transport.writes)
        closed_at_stop = transport.closed
        go_on.set()
        for _ in range(400):
            if transport.closed:
                break
            await asyncio.sleep(0.005)
        protocol.connection_lost(None)
        return at_stop, b"".join(transport.writes), closed_at_stop

    at_stop, written, closed_at_stop = asyncio.run(drive())
    assert b"first;" in at_stop
    if marked:  # ended now: the last chunk, the connection closed, nothing more
        assert at_stop.endswith(b"0\r\n\r\n") and closed_at_stop
        assert b"second;" not in written
    else:  # let finish: nothing ended at the stop, the rest and the end came after it
        assert not at_stop.endswith(b"0\r\n\r\n") and not closed_at_stop
        assert b"second;" in written and written.endswith(b"0\r\n\r\n")
