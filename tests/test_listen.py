"""``addresses.cannot_listen``: the one check ``grove up``, ``grove serve`` and the
worker supervisor make before they print or start anything."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from reconciler.manifests import addresses


def test_a_free_port_can_be_listened_on() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    assert addresses.cannot_listen("127.0.0.1", port) is None


def test_a_port_in_use_is_named() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        refused = addresses.cannot_listen("127.0.0.1", port)
        assert refused == (True, f"127.0.0.1:{port} is already in use")


@pytest.mark.skipif(
    Path("/proc/sys/net/ipv4/ip_nonlocal_bind").exists()
    and Path("/proc/sys/net/ipv4/ip_nonlocal_bind").read_text().strip() == "1",
    reason="this machine lets a socket bind any address (net.ipv4.ip_nonlocal_bind=1)",
)
def test_an_address_of_another_machine_says_why() -> None:
    refused = addresses.cannot_listen("192.0.2.1", 8000)  # TEST-NET-1: never this machine's
    assert refused is not None and not refused.in_use
    assert refused.reason.startswith("cannot listen on 192.0.2.1:8000: ")


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
def test_an_ipv6_host_is_checked_as_ipv6() -> None:
    try:
        taken = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("::1 is not configured here")
    with taken:
        port = taken.getsockname()[1]
        refused = addresses.cannot_listen("::1", port)
        assert refused is not None and refused.in_use
    assert addresses.cannot_listen("::1", port) is None
