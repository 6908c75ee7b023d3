"""HTTP to model providers: pooled, deadline-bound, size-capped, never redirected,
and only ever connected to an address that passed the endpoint policy.

The only module (with its siblings in ``providers/``) that imports aiohttp.
The connect-time check happens in the socket factory, after name resolution
and before the socket connects: the address a socket is about to connect to
must be public (unless local endpoints are allowed), so DNS rebinding cannot
slip a private address in between a check and the connection. IP literals in
any form reach the same check. TLS still verifies the certificate against the
host name.

Streams (:meth:`Http.events`) are read as server-sent events under the same
guards, plus an idle deadline per read; closing the stream closes its
connection at once, so a caller who hangs up stops the provider's work.

aiohttp rather than httpx: on the routed path the outgoing call is more than
half of Grove's CPU per request, and aiohttp's C parser and native asyncio
streams cost about a third of httpx's (bench/api.py measures the call path).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi

from reconciler.base import errors
from reconciler.manifests import addresses
from reconciler.providers import answers, sse
from reconciler.providers.base import FailureKind, ProviderError

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
STREAM_IDLE_S = 30.0  # the default idle deadline of a stream (GROVE_STREAM_IDLE_S)
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

    def __init__(
        self,
        *,
        allow_local: bool,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        stream_idle_s: float = STREAM_IDLE_S,
    ) -> None:
        self.allow_local = allow_local
        self.max_response_bytes = max_response_bytes  # a whole answer, a whole stream
        self.stream_idle_s = stream_idle_s  # the longest a stream may send nothing
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
                with _classified(host):
                    status, retry_after_header, body = await self._send(url, host, headers, payload)
        except TimeoutError:
            raise _late(host, deadline_s) from None
        _raise_for_status(host, status, retry_after_header)
        try:
            return answers.decode(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
            raise ProviderError(
                FailureKind.BAD_RESPONSE, f"{host}: the answer is not JSON"
            ) from None

    async def events(
        self,
        url: str,
        headers: Mapping[str, str],
        payload: dict[str, Any],
        *,
        deadline_s: float,
        idle_s: float,
    ) -> AsyncGenerator[tuple[str | None, str], None]:
        """POST JSON and yield the answer's server-sent events as ``(event name or None,
        data)`` as they arrive, or raise a classified ProviderError.

        The status is classified as :meth:`post_json` does, before any event. Each wait
        (for the status, for a chunk) lasts at most ``idle_s`` and what is left of
        ``deadline_s``. The end of the body ends the events: whether the provider had
        finished is its reader's to say (an end marker, a finish reason). Closing the
        generator early (``aclose``, or the consumer cancelled) closes the connection
        at once instead of handing it back to the pool, so the provider stops too.

        The deadlines wrap each single read and never a ``yield``: the generator runs
        in its consumer's task, whose own cancellations a timeout must not catch.
        """
        host = _host(url)
        clock = _Clock(host, deadline_s, idle_s)
        response = await self._open_stream(url, host, headers, payload, clock)
        try:
            parser = sse.EventParser(host, self.max_response_bytes)
            size = 0
            while True:
                with clock.bound() as bound:
                    async with bound:
                        chunk = await _read(response, host)
                if not chunk:
                    parser.finish()
                    return
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise ProviderError(
                        FailureKind.BAD_RESPONSE,
                        f"{host}: stream larger than {self.max_response_bytes} bytes",
                    )
                for event in parser.feed(chunk):
                    yield event
        finally:
            if response.content.at_eof():
                response.release()  # read to its end: the connection may serve another call
            else:
                response.close()  # cut it: the provider sees the connection go and stops

    async def _open_stream(
        self,
        url: str,
        host: str,
        headers: Mapping[str, str],
        payload: dict[str, Any],
        clock: _Clock,
    ) -> aiohttp.ClientResponse:
        """The response of a stream, once its status says events follow."""
        with clock.bound() as bound:
            async with bound:
                with _classified(host):
                    response = await self._post(url, host, headers, payload)
                    if not 200 <= response.status < 300:
                        async with response:  # read (bounded) so the connection is reusable
                            await self._body(response, host)
                        _raise_for_status(
                            host, response.status, response.headers.get("Retry-After")
                        )
        kind = response.headers.get("Content-Type")
        if kind is not None and kind.partition(";")[0].strip().lower() != "text/event-stream":
            response.close()
            raise ProviderError(
                FailureKind.BAD_RESPONSE,
                f"{host}: a stream was asked for and the answer is not text/event-stream",
                status=response.status,
            )
        return response

    async def _send(
        self, url: str, host: str, headers: Mapping[str, str], payload: dict[str, Any]
    ) -> tuple[int, str | None, bytes]:
        response = await self._post(url, host, headers, payload)
        async with response:
            body = await self._body(response, host)
            return response.status, response.headers.get("Retry-After"), body

    async def _post(
        self, url: str, host: str, headers: Mapping[str, str], payload: dict[str, Any]
    ) -> aiohttp.ClientResponse:
        """The response to a POST of ``payload`` once its status and headers are in; a
        redirect is refused (a provider's endpoint never moves, and following one would
        carry the key elsewhere)."""
        session = self._session()
        response = await session.post(
            url,
            data=json.dumps(payload).encode(),
            headers={**headers, "Content-Type": "application/json"},
            allow_redirects=False,
        )
        status = response.status
        if 300 <= status < 400:
            response.release()
            raise ProviderError(
                FailureKind.BAD_RESPONSE, f"{host}: redirect {status} not followed", status=status
            )
        return response

    async def _body(self, response: aiohttp.ClientResponse, host: str) -> bytes:
        """The whole body, refused past ``max_response_bytes`` (declared or read)."""
        status = response.status
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
        return b"".join(chunks)

    def _too_large(self, host: str, status: int) -> ProviderError:
        return ProviderError(
            FailureKind.BAD_RESPONSE,
            f"{host}: answer larger than {self.max_response_bytes} bytes",
            status=status,
        )


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


@contextlib.contextmanager
def _classified(host: str) -> Iterator[None]:
    """Turn aiohttp's failures to connect or send into classified ProviderErrors."""
    try:
        yield
    except TimeoutError:  # the caller's deadline says which
        raise
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
        raise ProviderError(FailureKind.CONNECTION_ERROR, f"{host}: {type(exc).__name__}") from None
    except ValueError:  # a header aiohttp refuses (keys are checked in wire.api_key)
        raise ProviderError(
            FailureKind.CONFIGURATION, f"{host}: the request could not be built"
        ) from None


def _late(host: str, deadline_s: float) -> ProviderError:
    return ProviderError(FailureKind.TIMEOUT, f"{host}: no complete answer within {deadline_s:g}s")


class _Clock:
    """A stream's two deadlines: the whole call's, and the idle one of each wait."""

    def __init__(self, host: str, deadline_s: float, idle_s: float) -> None:
        self.host = host
        self.deadline_s = deadline_s
        self.idle_s = idle_s
        self.loop = asyncio.get_running_loop()
        self.ends_at = self.loop.time() + deadline_s

    @contextlib.contextmanager
    def bound(self) -> Iterator[asyncio.Timeout]:
        """A timeout for one wait, which ends at the idle deadline or the whole call's,
        whichever comes first; its expiry becomes the TIMEOUT naming that one. The whole
        call's deadline is checked before the wait too: data already buffered would be
        read without waiting, and so without a timeout."""
        now = self.loop.time()
        if now >= self.ends_at:
            raise _late(self.host, self.deadline_s)
        idle = now + self.idle_s < self.ends_at
        try:
            yield asyncio.timeout_at(min(now + self.idle_s, self.ends_at))
        except TimeoutError:
            if idle:
                raise ProviderError(
                    FailureKind.TIMEOUT, f"{self.host}: no chunk within {self.idle_s:g}s"
                ) from None
            raise _late(self.host, self.deadline_s) from None


async def _read(response: aiohttp.ClientResponse, host: str) -> bytes:
    """The next bytes of a streamed body (b"" at its end); a connection lost first is a
    CONNECTION_ERROR."""
    try:
        return await response.content.readany()
    except aiohttp.ClientOSError as exc:
        raise sse.cut(host, _reason(exc)) from None
    except (aiohttp.ClientError, OSError) as exc:  # ClientPayloadError: the body was not whole
        raise sse.cut(host, type(exc).__name__) from None


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
