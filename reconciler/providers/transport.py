"""HTTP to model providers: pooled, deadline-bound, size-capped, never redirected,
and only ever connected to an address that passed the endpoint policy.

The only module (with its siblings in ``providers/``) that imports aiohttp.
The connect-time check happens in the socket factory, after name resolution
and before the socket connects: the address a socket is about to connect to
must be public (unless local endpoints are allowed), so DNS rebinding cannot
slip a private address in between a check and the connection. IP literals in
any form reach the same check. TLS still verifies the certificate against the
host name.

aiohttp rather than httpx: on the routed path the outgoing call is more than
half of Grove's CPU per request, and aiohttp's C parser and native asyncio
streams cost about a third of httpx's (bench/api.py measures the call path).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import errno
import functools
import ipaddress
import json
import math
import os
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi

from reconciler.base import errors
from reconciler.manifests import addresses
from reconciler.providers import answers
from reconciler.providers.base import FailureKind, ProviderError

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
RETRY_AFTER_MIN_S = 1.0
RETRY_AFTER_MAX_S = 300.0
MAX_CONNECTIONS = 200  # open to providers at once, per event loop
KEEPALIVE_S = 30.0
USER_AGENT = "grove"
CLEANUP_CLOSED = sys.version_info < (3, 12, 7)  # aiohttp warns when it is set on later versions

AddrInfo = tuple[Any, ...]


class AddressRefused(errors.PermanentError, OSError):
    """A connection to an address the endpoint policy forbids; never opened.

    An ``OSError`` too: aiohttp's socket factory hands only those on, as the
    ``os_error`` of its connection error.

    The message is the same for every address (aiohttp merges the errors of a
    host's addresses when their messages differ); ``detail`` says which and why.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(errno.EACCES, "address refused by the endpoint policy")
        self.detail = detail


def guarded_socket(*, allow_local: bool) -> Callable[[AddrInfo], socket.socket]:
    """A socket factory that refuses addresses outside the endpoint policy."""

    def make(addr_info: AddrInfo) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        try:
            addresses.check_ip(address, allow_local=allow_local)
        except addresses.EndpointRejected as exc:
            raise AddressRefused(str(exc)) from None
        return socket.socket(family=family, type=kind, proto=proto)

    return make


def tls_context() -> ssl.SSLContext:
    """Certificates checked against SSL_CERT_FILE or SSL_CERT_DIR when set, else certifi."""
    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    return ssl.create_default_context(cafile=certifi.where())


@functools.lru_cache(maxsize=1024)
def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:  # such as an unclosed IPv6 bracket; the request itself fails later
        return "?"


class Http:
    """One pooled session per event loop; every call bounded by a whole-call deadline."""

    def __init__(self, *, allow_local: bool, max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.allow_local = allow_local
        self.max_response_bytes = max_response_bytes
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._tls: ssl.SSLContext | str | None = None  # the context, or why it failed

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is not None and not session.closed:
            return session
        if self._tls is None:
            try:
                self._tls = tls_context()  # loads the CA bundle: once
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                # remembered: a bad bundle is not read again on every call
                self._tls = (
                    "CA certificates could not be loaded (SSL_CERT_FILE / SSL_CERT_DIR): "
                    f"{getattr(exc, 'strerror', None) or type(exc).__name__}"
                )
        if isinstance(self._tls, str):
            raise ProviderError(FailureKind.CONFIGURATION, self._tls)
        connector = aiohttp.TCPConnector(
            limit=MAX_CONNECTIONS,
            keepalive_timeout=KEEPALIVE_S,
            ssl=self._tls,
            socket_factory=guarded_socket(allow_local=self.allow_local),
            # before Python 3.12.7 asyncio can leak a TLS connection whose server never
            # finishes the shutdown; aiohttp then aborts it (later versions fixed it)
            enable_cleanup_closed=CLEANUP_CLOSED,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            # the model's whole-call deadline is the only bound (asyncio.timeout per call)
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None),
            trust_env=False,  # no proxy variables, no .netrc
            headers={"User-Agent": USER_AGENT},
        )
        self._sessions[loop] = session
        return session

    async def aclose(self) -> None:
        """Close this event loop's session, and forget those of event loops that ended."""
        loop = asyncio.get_running_loop()
        for owner, session in list(self._sessions.items()):
            if owner is loop:
                await session.close()
            elif owner.is_closed():
                session.detach()  # nothing can run on its loop any more
            else:
                continue  # another running loop closes its own
            del self._sessions[owner]

    async def post_json(
        self, url: str, headers: Mapping[str, str], payload: dict[str, Any], *, deadline_s: float
    ) -> Any:
        """POST JSON and return the decoded JSON answer, or raise a classified ProviderError."""
        host = _host(url)
        try:
            async with asyncio.timeout(deadline_s):
                status, retry_after_header, body = await self._send(url, host, headers, payload)
        except TimeoutError:
            raise ProviderError(
                FailureKind.TIMEOUT, f"{host}: no complete answer within {deadline_s:g}s"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                raise ProviderError(
                    FailureKind.CONFIGURATION, f"{host}: {exc.os_error.detail}"
                ) from None
            raise ProviderError(
                FailureKind.CONNECTION_ERROR, f"{host}: cannot connect ({_reason(exc.os_error)})"
            ) from None
        except aiohttp.InvalidURL:  # a port out of range, a scheme other than http(s)
            raise ProviderError(
                FailureKind.CONFIGURATION, f"{host}: the endpoint is not a usable URL"
            ) from None
        except aiohttp.ClientError as exc:
            raise ProviderError(
                FailureKind.CONNECTION_ERROR, f"{host}: {type(exc).__name__}"
            ) from None
        except ValueError:  # a header aiohttp refuses (keys are checked in wire.api_key)
            raise ProviderError(
                FailureKind.CONFIGURATION, f"{host}: the request could not be built"
            ) from None
        _raise_for_status(host, status, retry_after_header)
        try:
            return answers.decode(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
            raise ProviderError(
                FailureKind.BAD_RESPONSE, f"{host}: the answer is not JSON"
            ) from None

    async def _send(
        self, url: str, host: str, headers: Mapping[str, str], payload: dict[str, Any]
    ) -> tuple[int, str | None, bytes]:
        session = self._session()
        data = json.dumps(payload).encode()
        async with session.post(
            url,
            data=data,
            headers={**headers, "Content-Type": "application/json"},
            allow_redirects=False,
        ) as response:
            status = response.status
            if 300 <= status < 400:
                raise ProviderError(
                    FailureKind.BAD_RESPONSE,
                    f"{host}: redirect {status} not followed",
                    status=status,
                )
            declared = response.content_length
            if declared is not None and declared > self.max_response_bytes:
                raise self._too_large(host, status)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_any():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise self._too_large(host, status)
                chunks.append(chunk)
            return status, response.headers.get("Retry-After"), b"".join(chunks)

    def _too_large(self, host: str, status: int) -> ProviderError:
        return ProviderError(
            FailureKind.BAD_RESPONSE,
            f"{host}: answer larger than {self.max_response_bytes} bytes",
            status=status,
        )


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _raise_for_status(host: str, status: int, retry_after_header: str | None) -> None:
    if 200 <= status < 300:
        return
    if status == 429:
        raise ProviderError(
            FailureKind.RATE_LIMIT,
            f"{host}: HTTP 429 rate limited",
            status=status,
            retry_after_s=retry_after(retry_after_header),
        )
    if status >= 500:
        raise ProviderError(
            FailureKind.SERVER_ERROR,
            f"{host}: HTTP {status}",
            status=status,
            # RFC 9110: a 503 may say when to come back; other 5xx carry no such promise
            retry_after_s=retry_after(retry_after_header) if status == 503 else None,
        )
    if status == 408:
        raise ProviderError(FailureKind.TIMEOUT, f"{host}: HTTP 408", status=status)
    if status in (401, 403):
        raise ProviderError(
            FailureKind.CONFIGURATION, f"{host}: HTTP {status}; check the API key", status=status
        )
    if status == 404:  # a wrong providerModel or path: this model is misconfigured
        raise ProviderError(
            FailureKind.CONFIGURATION,
            f"{host}: HTTP 404; check providerModel and endpoint",
            status=status,
        )
    raise ProviderError(FailureKind.CLIENT_ERROR, f"{host}: HTTP {status}", status=status)


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from Retry-After (seconds or an HTTP date), clamped; None if garbage."""
    if value is None:
        return None
    text = value.strip()
    seconds: float | None = None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = when.timestamp() - (now if now is not None else time.time())
    if math.isnan(seconds):
        return None
    return min(RETRY_AFTER_MAX_S, max(RETRY_AFTER_MIN_S, seconds))
