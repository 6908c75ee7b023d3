"""HTTP to model providers: pooled, deadline-bound, size-capped, never redirected,
and only ever connected to an address that passed the endpoint policy.

The only module (with its siblings in ``providers/``) that imports httpx. The
connect-time check happens in the network backend, after name resolution and
before the socket opens: every address a name resolves to must be public
(unless local endpoints are allowed), and the connection goes to the address
that was checked, so DNS rebinding cannot slip a private address in between.
TLS still verifies the certificate against the host name.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import ipaddress
import json
import math
import socket
import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from reconciler import addresses
from reconciler.providers.base import FailureKind, ProviderError

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
RETRY_AFTER_MIN_S = 1.0
RETRY_AFTER_MAX_S = 300.0
MAX_CONNECTIONS = 200  # open to providers at once, per event loop
POOL_SHARDS = 8


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks and connects to the checked address only."""

    def __init__(self, *, allow_local: bool) -> None:
        self.allow_local = allow_local
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        resolved = await self._resolve(host, port)
        for address in resolved:
            try:
                addresses.check_ip(address, allow_local=self.allow_local)
            except addresses.EndpointRejected as exc:
                raise ProviderError(FailureKind.CONFIGURATION, f"{host}: {exc}") from None
        return await self._inner.connect_tcp(
            str(resolved[0]),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def _resolve(
        self, host: str, port: int
    ) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        literal = addresses.parse_ip_literal(host)
        if literal is not None:
            return [literal]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in found:
                found.append(address)
        if not found:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        return found

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise ProviderError(FailureKind.CONFIGURATION, "unix sockets are not model endpoints")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _transport(allow_local: bool, tls: ssl.SSLContext) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(verify=tls, retries=0, trust_env=False)
    # httpx builds its pool with the default network backend; swap in the guarded one,
    # configured like the original (TLS context, HTTP/1.1, pool limits).
    per_shard = MAX_CONNECTIONS // POOL_SHARDS
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=tls,
        max_connections=per_shard,
        # as many as it may open: httpcore compares this with all of its connections,
        # busy ones included, and would otherwise close idle ones under load
        max_keepalive_connections=per_shard,
        keepalive_expiry=30.0,
        network_backend=GuardedBackend(allow_local=allow_local),
    )
    return transport


class ShardedTransport(httpx.AsyncBaseTransport):
    """Requests spread round-robin over several small connection pools.

    httpcore's pool walks every connection, for every queued request, each time a
    request starts or ends (a cost of connections x queued requests, mostly in
    Python); at 50 concurrent calls one big pool spends more time choosing a
    connection than sending on it. Eight pools of a few connections each keep
    that walk short (bench/api.py measures the difference).
    """

    def __init__(self, shards: list[httpx.AsyncHTTPTransport]) -> None:
        self._shards = shards
        self._next = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._next = (self._next + 1) % len(self._shards)
        return await self._shards[self._next].handle_async_request(request)

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class Http:
    """One pooled client per event loop; every call bounded by a whole-call deadline."""

    def __init__(self, *, allow_local: bool, max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.allow_local = allow_local
        self.max_response_bytes = max_response_bytes
        self._clients: dict[int, httpx.AsyncClient] = {}

    def _client(self) -> httpx.AsyncClient:
        key = id(asyncio.get_running_loop())
        client = self._clients.get(key)
        if client is None or client.is_closed:
            tls = httpx.create_ssl_context(trust_env=False)  # loads the CA bundle: once
            client = httpx.AsyncClient(
                transport=ShardedTransport(
                    [_transport(self.allow_local, tls) for _ in range(POOL_SHARDS)]
                ),
                follow_redirects=False,
                trust_env=False,
                timeout=httpx.Timeout(None),  # the whole-call deadline bounds every call
            )
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def post_json(
        self, url: str, headers: dict[str, str], payload: dict[str, Any], *, deadline_s: float
    ) -> Any:
        """POST JSON and return the decoded JSON answer, or raise a classified ProviderError."""
        host = httpx.URL(url).host
        try:
            async with asyncio.timeout(deadline_s):
                status, response_headers, body = await self._send(url, headers, payload)
        except TimeoutError:
            raise ProviderError(
                FailureKind.TIMEOUT, f"{host}: no complete answer within {deadline_s:g}s"
            ) from None
        except httpx.TimeoutException:
            raise ProviderError(FailureKind.TIMEOUT, f"{host}: timed out") from None
        except (httpx.ConnectError, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise ProviderError(
                FailureKind.CONNECTION_ERROR, f"{host}: {type(exc).__name__}"
            ) from None
        _raise_for_status(host, status, response_headers)
        try:
            return json.loads(body)
        except ValueError:
            raise ProviderError(
                FailureKind.BAD_RESPONSE, f"{host}: the answer is not JSON"
            ) from None

    async def _send(
        self, url: str, headers: dict[str, str], payload: dict[str, Any]
    ) -> tuple[int, httpx.Headers, bytes]:
        client = self._client()
        async with client.stream("POST", url, json=payload, headers=headers) as response:
            if 300 <= response.status_code < 400:
                raise ProviderError(
                    FailureKind.BAD_RESPONSE,
                    f"{response.url.host}: redirect {response.status_code} not followed",
                    status=response.status_code,
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise ProviderError(
                        FailureKind.BAD_RESPONSE,
                        f"{response.url.host}: answer larger than {self.max_response_bytes} bytes",
                        status=response.status_code,
                    )
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)


def _raise_for_status(host: str, status: int, headers: httpx.Headers) -> None:
    if 200 <= status < 300:
        return
    if status == 429:
        raise ProviderError(
            FailureKind.RATE_LIMIT,
            f"{host}: HTTP 429 rate limited",
            status=status,
            retry_after_s=retry_after(headers.get("retry-after")),
        )
    if status >= 500:
        raise ProviderError(FailureKind.SERVER_ERROR, f"{host}: HTTP {status}", status=status)
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
