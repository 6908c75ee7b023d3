"""Which answers a stopping server ends: only the streams whose route marks them endless
(``base.endless``: ``GET /api/events``, the console's ``GET /console/events``); every
other answer finishes (the gateway's: tests/gateway/test_stopping.py)."""

from __future__ import annotations

import re
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from reconciler.api import connections
from reconciler.base import endless
from tests.api.serving import api_process
from tests.api.test_shutdown import EXIT_WITHIN_S, open_stream, rest_of
from tests.conftest import Registry


def _console_stream(url: str, port: int, token: str) -> socket.socket:
    """The console's live feed on a raw connection (signed in), once it has started."""
    with httpx.Client(base_url=url) as client:
        form = client.get("/login").text
        match = re.search(r'name="csrf" value="([^"]+)"', form)
        assert match is not None
        signed = client.post("/login", data={"token": token, "csrf": match[1], "next": "/"})
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


def test_only_a_marked_scope_is_endless() -> None:
    scope: dict[str, object] = {"type": "http", "path": "/api/events"}
    assert not endless.marked(scope)
    endless.mark(scope)
    assert endless.marked(scope)
    assert "gateway" not in connections.__dict__  # the connection asks the scope, not the path
