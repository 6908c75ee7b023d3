"""The HTTP connections of Grove's servers: uvicorn's httptools protocol with a time
limit on a request's headers, and streams that end when the server stops.

:func:`options` is the uvicorn configuration every server of Grove runs with
(``grove serve`` and ``grove up``, each worker of ``--workers N``). It never
changes how a request is handled once its headers are in.

- uvicorn closes a kept-alive connection idle for ``timeout_keep_alive``
  (``GROVE_KEEP_ALIVE_S``), but sets no limit on how long a client may take to
  send a request's headers: a connection that sends half a header, or nothing,
  stays open for ever (3,000 of them held 3,000 sockets). :class:`Connection`
  closes one whose headers are not complete ``header_timeout_s``
  (``GROVE_HEADER_TIMEOUT_S``) after it was opened, or after the first byte of a
  later request on it. That costs one timer per connection; a request whose
  headers come in one read, as they do, costs a flag.
- At shutdown uvicorn waits for every response to finish, and an event stream
  (``GET /api/events``, the console's live feed) never does: the server went on
  for minutes with its port closed. :class:`Connection` ends a stream whose route
  marked it endless (``base.endless``) when the server stops: it writes the last
  chunk, so the client reads a complete stream, and the application's ``receive``
  says the client is gone, which ends the stream's generator. A request in
  progress that is not such a stream finishes as uvicorn lets it; if it starts
  one, that stream is ended too. Every other answer, streamed or not, has an end
  (the gateway's streams are bounded by their model's ``timeoutMs``): it finishes
  (ended early, the OpenAI SDK would read the words so far as the whole answer); a
  second stop signal (:func:`cut_answers`) cuts what is still under way without its
  end, which the caller's client reports as a broken answer.
- uvicorn writes a response's head (status line and headers) as soon as the app
  sends it, and its body in a second write: two writes, each waking the client, for
  an answer that was ready at once. On this 2-core machine a write to a waiting
  client on loopback costs 0.1 to 0.15 ms, so the gateway's first streamed chunk
  came a write later than it had to (bench/README.md). :class:`HeldHead` holds the
  head of each response until its first body write, or the end of the event loop's
  turn if none comes in it, and sends the two in one write.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from reconciler.base import endless
from reconciler.base.settings import Settings

HEADER_TIMEOUT_S = 10.0


# set when this process's servers are told to stop a second time (:func:`cut_answers`)
_CUT = threading.Event()
SHUTDOWN_RECHECK_S = 0.1  # how often a connection busy at shutdown is looked at again


def cut_answers() -> None:
    """A second stop signal: the answers still under way (the gateway's streams,
    which a first one lets finish) are cut at the connections' next look at them,
    without their end."""
    _CUT.set()


def options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.Config`` (or ``uvicorn.run``) for a Grove server.

    The protocol is a ``functools.partial`` of :class:`Connection`, not a class made
    on the fly: uvicorn's own worker processes receive the configuration pickled."""
    return {
        "http": functools.partial(Connection, header_timeout_s=settings.header_timeout_s),
        "timeout_keep_alive": settings.keep_alive_s,
        "log_level": "warning",
        "access_log": False,  # uvicorn would still format each line for a logger that drops it
        "proxy_headers": False,
        "server_header": False,
    }


class Connection(HttpToolsProtocol):
    """One client connection (uvicorn makes one per connection accepted)."""

    def __init__(self, *args: Any, header_timeout_s: float = HEADER_TIMEOUT_S, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._headers_due: asyncio.TimerHandle | None = None
        self._in_headers = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_clock()  # the first request's headers are due from now

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._flush_head()  # what uvicorn may write now (a 400) goes after a held head
        super().data_received(data)
        if self._in_headers and self._headers_due is None and not self.transport.is_closing():
            self._start_header_clock()  # a later request's headers, cut in this read

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._stop_header_clock()
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.transport = HeldHead(self.transport, cycle)  # type: ignore[assignment]
        super()._start_asgi_task(cycle, app)

    def shutdown(self) -> None:
        """The server stops: end a stream now; let any other request finish."""
        self._flush_head()
        cycle = self.cycle
        under_way = cycle is not None and cycle.response_started and not cycle.response_complete
        # only a stream that never ends by itself (its route says so): any other answer
        # finishes, where an end of the body now would read as a whole, shorter answer
        # (a gateway stream: its model's deadline bounds it)
        if under_way and cycle.chunked_encoding and endless.marked(cycle.scope):
            cycle.disconnected = True  # the app's receive() answers http.disconnect
            cycle.message_event.set()
            if not self.transport.is_closing():
                self.transport.write(b"0\r\n\r\n")  # the last chunk: a complete answer
                self.transport.close()
            return
        if under_way and _CUT.is_set():
            # told to stop again: an answer under way is cut without its end, so its
            # caller's client reports a broken answer rather than a shorter one
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.close()
            return
        super().shutdown()  # idle: closed; busy: closed once its answer is sent
        if not self.transport.is_closing():
            self.loop.call_later(SHUTDOWN_RECHECK_S, self.shutdown)  # it may start a stream

    def _flush_head(self) -> None:
        cycle = self.cycle
        if cycle is not None and isinstance(cycle.transport, HeldHead):
            cycle.transport.flush()

    def _start_header_clock(self) -> None:
        self._headers_due = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _stop_header_clock(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _headers_late(self) -> None:
        self._headers_due = None
        if not self.transport.is_closing():
            self.transport.close()


class HeldHead:
    """The transport as one request's cycle sees it: the cycle's first write (the
    response's head) is held until its second (the first of the body), and the two go
    in one write; a head with no body in the same turn of the event loop (a stream
    whose first event is not ready, a body-less answer) is written at the turn's end.
    From then on the cycle writes to the transport itself. Everything but ``write`` and
    ``close`` is the transport's own."""

    __slots__ = ("_cycle", "_held", "_later", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle = cycle
        self._held: bytes | None = None
        self._later: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = data
            self._later = asyncio.get_running_loop().call_soon(self.flush)
            return
        self._release()
        self._transport.writelines((held, data))  # one write (uvloop: one writev)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def flush(self) -> None:
        """Write what is held now (what is written next must come after it)."""
        held = self._held
        self._release()
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def _release(self) -> None:
        """Nothing held any more: the cycle writes to the transport itself."""
        self._held = None
        if self._later is not None:
            self._later.cancel()
            self._later = None
        self._cycle.transport = self._transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
