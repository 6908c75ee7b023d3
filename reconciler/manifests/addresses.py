"""Endpoint address policy: which model endpoints Grove may talk to.

Called by the manifest classes (validation), later by registration and by the
provider adapters at connect time, so one policy holds at all three places.
The policy is pure: it parses URLs and IP literals and never resolves a name
or opens a socket; connect-time callers resolve first and pass the resolved
address to :func:`check_ip`. (:func:`cannot_listen`, for the servers' start-up,
is the one function here that opens a socket.)

By default only ``https://`` URLs to public hosts are allowed. With
``allow_local`` (``GROVE_ALLOW_LOCAL_ENDPOINTS=true``, for development and
tests only) ``http://`` and loopback or private addresses are admitted too.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import unicodedata
from typing import NamedTuple
from urllib.parse import urlsplit

from reconciler.base import errors

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names that always mean "this machine".
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
# Names of cloud metadata services (the short ones resolve through a search domain).
_METADATA_NAMES = frozenset(
    {
        "metadata",  # GCP, from inside a VM
        "metadata.google.internal",  # GCP
        "metadata.goog",  # GCP
        "instance-data",  # AWS EC2
        "instance-data.ec2.internal",  # AWS EC2 (us-east-1)
        "metadata.tencentyun.com",  # Tencent Cloud
    }
)
# ... and any NAME.internal whose first label is one of these (AWS regions name theirs
# instance-data.REGION.compute.internal).
_METADATA_FIRST_LABELS = frozenset({"metadata", "instance-data"})


class EndpointRejected(errors.PermanentError, ValueError):
    """The endpoint breaks the policy; the message says why without echoing secrets. A
    ValueError too: pydantic turns it into a field error."""


def parse_ip_literal(host: str) -> IPAddress | None:
    """Return the address a host string denotes when it is an IP literal in any form.

    Browsers and C resolvers accept more than dotted quads: ``2130706433``,
    ``0x7f.1``, ``0177.1`` and ``127.1`` all mean 127.0.0.1, as does ``127.0.0.1.``
    with a trailing dot, so they are normalized here the way ``inet_aton`` does
    before any policy decision. An IPv6 zone (``%eth0``) is dropped.
    """
    candidate = host.strip("[]").rstrip(".")
    if ":" in candidate:
        candidate = candidate.split("%", 1)[0]  # the zone of fe80::1%eth0
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        pass
    if candidate and all(part.isalnum() for part in candidate.split(".")):
        try:
            packed = socket.inet_aton(candidate)
        except OSError:
            return None
        return ipaddress.IPv4Address(packed)
    return None


def _spelled(host: str) -> str:
    """A host name as a resolver compares it: lower case, no trailing dot, each IDNA
    label (``xn--...``) decoded and folded (NFKC, case), so no spelling hides a name.
    A label that does not decode is refused."""
    labels = []
    for label in host.lower().rstrip(".").split("."):
        if not label.startswith("xn--"):
            labels.append(label)
            continue
        try:
            decoded = label[4:].encode("ascii").decode("punycode")
        except (UnicodeError, ValueError):
            decoded = ""
        if decoded.isascii():  # undecodable, or ASCII that needed no encoding
            raise EndpointRejected("endpoint host has a label that is not valid IDNA")
        labels.append(unicodedata.normalize("NFKC", decoded).casefold())
    return ".".join(labels)


def is_metadata_name(host: str) -> bool:
    """Whether a host name (already :func:`_spelled`) names a cloud metadata service."""
    first = host.split(".", 1)[0]
    return host in _METADATA_NAMES or (
        first in _METADATA_FIRST_LABELS and host.endswith(".internal")
    )


def is_local_ip(address: IPAddress) -> bool:
    """Loopback, private, link-local, unspecified, reserved or multicast."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
        or address.is_multicast
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
    )


_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")


# Cloud metadata and credential services: never an endpoint, whatever the settings.
_METADATA_IPS = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, Oracle, OpenStack, DigitalOcean... metadata
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "169.254.0.23",  # Tencent Cloud metadata
        "168.63.129.16",  # Azure wire server
        "100.100.100.200",  # Alibaba Cloud metadata
        "192.0.0.192",  # Oracle Cloud metadata
        "fd00:ec2::254",  # AWS IPv6 metadata
        "fd00:ec2::23",  # AWS EKS pod identity (IPv6)
        "fd20:ce::254",  # GCP IPv6 metadata
    )
)


def _embedded_v4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, translated, 6to4, Teredo, NAT64 or
    compatible), which is where a packet to it may end up."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    packed = address.packed
    if packed[:12] == bytes(12) and packed[12:] != bytes(4):  # ::a.b.c.d (deprecated form)
        return ipaddress.IPv4Address(packed[12:])
    if any(address in network for network in _LAST_32_BITS_V4):
        return ipaddress.IPv4Address(packed[12:])
    return None


# IPv6 networks whose last 32 bits are an IPv4 address: NAT64 (RFC 6052, and the local-use
# prefix of RFC 8215 as networks deploy it, /96) and IPv4-translated (SIIT, ::ffff:0:a.b.c.d).
_LAST_32_BITS_V4 = tuple(
    ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96")
)


def check_ip(address: IPAddress, *, allow_local: bool) -> None:
    """Refuse a resolved address that is not public, unless local endpoints are allowed.

    Cloud metadata addresses are refused even then.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(int(address))  # fe80::1%eth0 is fe80::1
    inner = _embedded_v4(address)
    if address in _METADATA_IPS or inner in _METADATA_IPS:
        raise EndpointRejected(f"address {address} is a cloud metadata service")
    if not allow_local and (is_local_ip(address) or (inner is not None and is_local_ip(inner))):
        raise EndpointRejected(
            f"address {address} is loopback, private or link-local; "
            "set GROVE_ALLOW_LOCAL_ENDPOINTS=true only for development"
        )


def check_endpoint(url: str, *, allow_local: bool) -> str:
    """Validate a model endpoint URL against the policy and return it unchanged.

    Messages name the rule that failed, never the userinfo part of the URL.
    """
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise EndpointRejected("endpoint must not contain whitespace or control characters")
    if len(url) > 2048:
        raise EndpointRejected("endpoint is longer than 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EndpointRejected("endpoint is not a valid URL") from exc
    allowed_schemes = ("https", "http") if allow_local else ("https",)
    if parts.scheme not in allowed_schemes:
        raise EndpointRejected(
            "endpoint must use https://"
            + ("" if allow_local else " (http:// only with GROVE_ALLOW_LOCAL_ENDPOINTS=true)")
        )
    if "@" in parts.netloc:
        raise EndpointRejected("endpoint must not carry credentials (user@host)")
    host = (parts.hostname or "").lower()
    if not host:
        raise EndpointRejected("endpoint has no host")
    if parts.query or parts.fragment:
        raise EndpointRejected("endpoint must not have a query string or fragment")
    if port == 0:
        raise EndpointRejected("endpoint port 0 is not valid")
    if not host.isascii():
        raise EndpointRejected("endpoint host must be ASCII (use the punycode form)")
    check_host(host, allow_local=allow_local)
    return url


def check_host(host: str, *, allow_local: bool) -> None:
    """Refuse a URL's host (an IP literal in any spelling, or a name) that the policy
    forbids; metadata services whatever ``allow_local`` says. Percent-encoding, which
    some clients decode into a name, is refused outright."""
    address = parse_ip_literal(host)
    if address is not None:
        check_ip(address, allow_local=allow_local)
        return
    if "%" in host:
        raise EndpointRejected("endpoint host must not be percent-encoded")
    bare = _spelled(host)
    if is_metadata_name(bare):
        raise EndpointRejected(f"endpoint host {bare} is a cloud metadata service")
    if not allow_local and (bare in _LOCAL_NAMES or bare.endswith(".localhost")):
        raise EndpointRejected(f"endpoint host {bare} is a local name")


# Up to the last @ before the path: a password typed with a raw @ is removed whole.
_USERINFO = re.compile(r"(?<=://)[^/?#\s]*@")


def redact_userinfo(text: str) -> str:
    """Remove ``user:password@`` from every URL in ``text`` (for messages and logs)."""
    return _USERINFO.sub("***@", text)


class Unlistenable(NamedTuple):
    in_use: bool  # something listens there already
    reason: str


def cannot_listen(host: str, port: int) -> Unlistenable | None:
    """Why nothing can listen on HOST:PORT now, or None. Binds as uvicorn does (IPv6
    when the host has a colon, else IPv4; ``SO_REUSEADDR``), so it fails while
    anything listens there, other ``SO_REUSEPORT`` sockets too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.create_server((host, port), family=family).close()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return Unlistenable(True, f"{host}:{port} is already in use")
        return Unlistenable(False, f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    return None
