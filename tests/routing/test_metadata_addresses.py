"""Issue 13: cloud metadata addresses and names are refused in every spelling, at
validation, registration and connect time, even with GROVE_ALLOW_LOCAL_ENDPOINTS=true."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from reconciler.manifests import addresses
from reconciler.providers import transport

METADATA_V4 = ("169.254.169.254", "169.254.170.2", "192.0.0.192", "100.100.100.200")
METADATA_V6 = ("fd00:ec2::254", "fd20:ce::254")
METADATA_NAMES = (
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "instance-data.eu-west-1.compute.internal",
)


def _v4_spellings(dotted: str) -> list[str]:
    """Every way a URL host can spell an IPv4 address that some client reads as it."""
    a, b, c, d = (int(part) for part in dotted.split("."))
    number = int(ipaddress.IPv4Address(dotted))
    six = ipaddress.IPv6Address
    return [
        dotted,
        dotted + ".",
        str(number),
        hex(number),
        hex(number).upper().replace("X", "x"),
        ".".join(f"0{part:o}" for part in (a, b, c, d)),
        ".".join(hex(part) for part in (a, b, c, d)),
        f"{a}.{b}.{(c << 8) | d}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"[::ffff:{dotted}]",
        f"[{six(int(six('::ffff:0:0')) | number).exploded}]",
        f"[::{dotted}]",
        f"[::ffff:0:{dotted}]",
        f"[{six((0x2002 << 112) | (number << 80))}]",
        f"[64:ff9b::{dotted}]",
        f"[64:ff9b:1::{dotted}]",
    ]


def _name_spellings(name: str) -> list[str]:
    first, dot, rest = name.partition(".")
    fullwidth = chr(ord(first[0]) - ord("a") + 0xFF41) + first[1:]  # NFKC folds it back
    return [
        name,
        name.upper(),
        name + ".",
        name.title() + ".",
        "%" + format(ord(name[0]), "02x") + name[1:],
        f"xn--{fullwidth.encode('punycode').decode()}{dot}{rest}",
    ]


SPELLINGS = [
    *(spelling for address in METADATA_V4 for spelling in _v4_spellings(address)),
    *(f"[{address}]" for address in METADATA_V6),
    *(f"[{ipaddress.IPv6Address(address).exploded.upper()}]" for address in METADATA_V6),
    "[fd00:ec2::254%25eth0]",
    *(spelling for name in METADATA_NAMES for spelling in _name_spellings(name)),
]


@pytest.mark.parametrize("allow_local", [False, True], ids=["default", "allow-local"])
@pytest.mark.parametrize("scheme", ["https", "http"])
@pytest.mark.parametrize("host", SPELLINGS)
def test_every_spelling_of_a_metadata_service_is_refused(
    host: str, scheme: str, allow_local: bool
) -> None:
    with pytest.raises(addresses.EndpointRejected) as refused:
        addresses.check_endpoint(f"{scheme}://{host}/latest/meta-data", allow_local=allow_local)
    if scheme == "https" or allow_local:  # else it fails on http:// first, fine as well
        assert "metadata" in str(refused.value) or "percent-encoded" in str(refused.value)


@pytest.mark.parametrize(
    "address",
    [
        "192.0.0.192",
        "::ffff:192.0.0.192",
        "::ffff:0:c000:c0",
        "2002:a9fe:a9fe::1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a9fe:a9fe",
        "fd00:ec2::254",
        "fd20:ce::254",
    ],
)
def test_a_connection_to_a_metadata_address_is_never_opened(address: str) -> None:
    """Connect time: the socket factory sees the resolved address (any host name)."""
    parsed = ipaddress.ip_address(address)
    family = socket.AF_INET6 if parsed.version == 6 else socket.AF_INET
    sockaddr = (address, 443, 0, 0) if parsed.version == 6 else (address, 443)
    make = transport.guarded_socket(allow_local=True)
    with pytest.raises(transport.AddressRefused) as refused:
        make((family, socket.SOCK_STREAM, 6, "", sockaddr))
    assert "metadata" in refused.value.detail


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "https://metadata.example.com/v1",  # a name that only starts like one
        "https://instance-data.example.com/v1",
        "https://xn--bcher-kva.example/v1",  # bücher.example in punycode
        "https://8.8.8.8/v1",
        "https://[2001:4860::8888]/v1",
    ],
)
def test_public_names_and_addresses_still_pass(url: str) -> None:
    assert addresses.check_endpoint(url, allow_local=False) == url


@pytest.mark.parametrize("label", ["xn--", "xn--999999999999", "xn--ab-!", "xn--metadata-"])
def test_a_label_that_is_not_idna_is_refused(label: str) -> None:
    with pytest.raises(addresses.EndpointRejected, match="IDNA"):
        addresses.check_endpoint(f"https://{label}.example/v1", allow_local=True)


def test_a_label_that_folds_into_dots_is_compared_as_the_name_it_becomes() -> None:
    dotted = "ｍetadata．google．internal"  # fullwidth letter and full stops
    host = "xn--" + dotted.encode("punycode").decode()
    with pytest.raises(addresses.EndpointRejected, match="metadata"):
        addresses.check_endpoint(f"https://{host}/v1", allow_local=True)
