"""An event stream lives no longer than its token: ``grove token revoke`` ends the open
streams of that token within 5 s (they went on receiving events 11 and 18 s later),
and no other."""

from __future__ import annotations

import socket
import time

import pytest

from tests.api.conftest import Server
from tests.api.test_shutdown import open_stream
from tests.conftest import GroveRunner

ENDS_WITHIN_S = 5.0


def _until_the_end(conn: socket.socket) -> bytes:
    """What the stream sends until its last chunk (the connection itself stays open);
    fails after 30 s (a stream that goes on sends a comment every 15 s)."""
    conn.settimeout(30)
    received = b""
    deadline = time.monotonic() + 30
    while not received.endswith(b"0\r\n\r\n"):
        assert time.monotonic() < deadline, f"the stream went on: {received!r}"
        chunk = conn.recv(65536)
        assert chunk, f"closed before the stream's last chunk: {received!r}"
        received += chunk
    return received


def _still_open(conn: socket.socket) -> bool:
    """Whether ``conn``'s stream neither ended nor was closed (nothing more to read now)."""
    conn.setblocking(False)
    try:
        return b"0\r\n\r\n" not in conn.recv(65536)
    except BlockingIOError:
        return True
    finally:
        conn.setblocking(True)


@pytest.mark.slow
def test_a_revoked_tokens_streams_end_within_seconds(server: Server, grove: GroveRunner) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    revoked = [open_stream(port, server.tokens["viewer"]) for _ in range(2)]
    other = open_stream(port, server.tokens["admin"])
    try:
        started = time.monotonic()
        assert grove("token", "revoke", "viewer-token").code == 0
        ends = [_until_the_end(conn) for conn in revoked]
        took = time.monotonic() - started
        assert _still_open(other)
    finally:
        for conn in [*revoked, other]:
            conn.close()
    assert took < ENDS_WITHIN_S, f"the streams ended {took:.1f}s after the revocation"
    for end in ends:
        assert end.endswith(b": token revoked\n\n\r\n0\r\n\r\n")
