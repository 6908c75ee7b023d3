"""Idle and half-open connections are closed: a request's headers have GROVE_HEADER_TIMEOUT_S
to arrive, a kept-alive connection GROVE_KEEP_ALIVE_S to send its next request; against
``grove serve`` and ``grove serve --workers 2`` as real processes (3,000 connections
sending half a header were once held open for ever)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.api.serving import api_process
from tests.conftest import Registry

HEADER_TIMEOUT_S = 1.0
KEEP_ALIVE_S = 1
WAIT_S = 30.0  # how long a test waits for a close before it fails


def _closed_after(conn: socket.socket) -> float:
    """Seconds until the server closes ``conn`` (reading and dropping what it sends); a
    reset counts (a close while the client was still sending)."""
    started = time.monotonic()
    conn.settimeout(WAIT_S)
    with contextlib.suppress(ConnectionResetError):
        while conn.recv(65536):
            pass
    return time.monotonic() - started


def _dribble(conn: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Send ``data`` a byte every 0.2 s (a slow loris), until it is sent, ``stop`` or a
    closed connection."""
    for byte in data:
        if stop.wait(0.2):
            return
        try:
            conn.sendall(bytes([byte]))
        except OSError:
            return


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # processes, not the database
@pytest.mark.parametrize("workers", ["1", "2"])
def test_idle_and_half_open_connections_are_closed(
    registry: Registry, tmp_path: Path, workers: str
) -> None:
    settings = {
        "GROVE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "GROVE_KEEP_ALIVE_S": str(KEEP_ALIVE_S),
    }
    with api_process(registry, tmp_path, "--no-loop", "--workers", workers, **settings) as server:
        address = ("127.0.0.1", server.port)
        request = b"GET /api/status HTTP/1.1\r\nHost: grove\r\n"
        silent = socket.create_connection(address)
        half = socket.create_connection(address)
        half.sendall(request)  # and never the blank line that ends the headers
        loris = socket.create_connection(address)
        stop = threading.Event()
        dribbler = threading.Thread(target=_dribble, args=(loris, request * 10, stop))
        dribbler.start()
        kept = socket.create_connection(address)
        kept.sendall(request + b"\r\n")  # answered (401), then kept alive and idle
        later = socket.create_connection(address)
        later.sendall(request + b"\r\n")  # answered, then half of a second request
        time.sleep(0.2)
        later.sendall(request)
        try:
            closed = {
                name: _closed_after(conn)
                for name, conn in (
                    ("silent", silent),
                    ("half", half),
                    ("loris", loris),
                    ("kept", kept),
                    ("later", later),
                )
            }
        finally:
            stop.set()
            dribbler.join()
            for conn in (silent, half, loris, kept, later):
                conn.close()
        # and the server goes on answering
        with socket.create_connection(address) as fresh:
            fresh.sendall(request + b"\r\n")
            assert fresh.recv(65536).startswith(b"HTTP/1.1 401 ")
        assert server.stop() == (0, "")
    # each within its timeout (and a little more: the clocks start on the server's side)
    assert max(closed.values()) < max(HEADER_TIMEOUT_S, KEEP_ALIVE_S) + 1.5, closed


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_body_that_trickles_in_gets_408_and_its_connection_closed(
    registry: Registry, tmp_path: Path
) -> None:
    """The headers arrive at once, then the body a byte every 0.2 s: the headers' clock is
    stopped, so the body has a clock of its own (GROVE_BODY_TIMEOUT_S)."""
    with api_process(registry, tmp_path, "--no-loop", GROVE_BODY_TIMEOUT_S="1") as server:
        conn = socket.create_connection(("127.0.0.1", server.port))
        head = (
            "POST /api/routing/execute HTTP/1.1\r\nHost: grove\r\n"
            f"Authorization: Bearer {server.token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        conn.sendall(head.encode())
        stop = threading.Event()
        dribbler = threading.Thread(target=_dribble, args=(conn, b"{" + b" " * 998, stop))
        dribbler.start()
        started = time.monotonic()
        conn.settimeout(WAIT_S)
        answer = b""
        try:
            with contextlib.suppress(ConnectionResetError):
                while chunk := conn.recv(65536):
                    answer += chunk
            took = time.monotonic() - started
        finally:
            stop.set()
            dribbler.join()
            conn.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b'"code":"body-timeout"' in answer
        assert took < 1 + 1.5, took  # closed, not kept alive for the rest of the body
        assert server.stop() == (0, "")
