"""``addresses.cannot_listen``: the one check ``grove up``, ``grove serve`` and the
worker supervisor make before they print or start anything."""

from __future__ import annotations

import socket

from reconciler import addresses


def test_a_free_port_can_be_listened_on() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    assert addresses.cannot_listen("127.0.0.1", port) is None


def test_a_port_in_use_is_named() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert addresses.cannot_listen("127.0.0.1", port) == f"127.0.0.1:{port} is already in use"


def test_an_address_of_another_machine_says_why() -> None:
    reason = addresses.cannot_listen("192.0.2.1", 8000)  # TEST-NET-1: never this machine's
    assert reason is not None
    assert reason.startswith("cannot listen on 192.0.2.1:8000: ")
    assert "in use" not in reason
