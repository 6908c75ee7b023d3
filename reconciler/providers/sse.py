"""Server-sent events (text/event-stream), read from bytes as they arrive.

:meth:`reconciler.providers.transport.Http.events` feeds the body of a streamed
answer through :class:`EventParser`; what an event means is each provider's
reader's business (:mod:`reconciler.providers.streams`). Pure: no I/O here.
"""

from __future__ import annotations

from reconciler.providers.base import FailureKind, ProviderError


def cut(host: str, why: str) -> ProviderError:
    """The CONNECTION_ERROR of a stream that ended before its provider finished it."""
    return ProviderError(FailureKind.CONNECTION_ERROR, f"{host}: the stream was cut ({why})")


class EventParser:
    """Server-sent events (text/event-stream, WHATWG HTML section 9.2) from bytes as
    they arrive.

    Lines end with CRLF, LF or CR. ``event:`` names the event; ``data:`` lines are
    joined with "\n"; a blank line ends the event (one without data is none); a line
    starting with ":" is a comment (a keep-alive). ``id:`` and ``retry:`` serve
    reconnection, which Grove never does: the caller fails over instead. An event
    (its lines, comments included) longer than ``max_event_bytes``, or bytes that are
    not UTF-8, are a BAD_RESPONSE.
    """

    def __init__(self, host: str, max_event_bytes: int) -> None:
        self.host = host
        self.max_event_bytes = max_event_bytes
        self._partial: list[bytes] = []  # the pieces of a line not yet ended
        self._partial_size = 0
        self._after_cr = False  # the last chunk ended with CR: a LF next is the same break
        self._first_line = True  # the stream may open with a byte order mark
        self._name: str | None = None
        self._data: list[str] = []
        self._size = 0  # bytes of the event's complete lines

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        """The events that ``chunk`` completes, in order."""
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        if not chunk:
            return []
        self._after_cr = chunk.endswith(b"\r")
        if b"\n" not in chunk and b"\r" not in chunk:  # no line ends here: keep the pieces
            self._partial.append(chunk)
            self._partial_size += len(chunk)
            self._check_size(self._partial_size)
            return []
        lines = b"".join([*self._partial, chunk]).splitlines(keepends=True)
        last = lines[-1]
        if last.endswith((b"\n", b"\r")):
            self._partial, self._partial_size = [], 0
        else:
            lines.pop()
            self._partial, self._partial_size = [last], len(last)
        events: list[tuple[str | None, str]] = []
        for line in lines:
            self._size += len(line)
            self._check_size(0)
            event = self._line(line.rstrip(b"\r\n"))
            if event is not None:
                events.append(event)
        self._check_size(self._partial_size)
        return events

    def finish(self) -> None:
        """The body ended: an event begun and never ended means the stream was cut (a
        comment alone begins none)."""
        if self._partial or self._data or self._name is not None:
            raise cut(self.host, "it ended inside an event")

    def _line(self, raw: bytes) -> tuple[str | None, str] | None:
        try:
            line = raw.decode()
        except UnicodeDecodeError:
            raise ProviderError(
                FailureKind.BAD_RESPONSE, f"{self.host}: the stream is not UTF-8 text"
            ) from None
        if self._first_line:
            line = line.removeprefix("\ufeff")
            self._first_line = False
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._name = value or None
        return None

    def _dispatch(self) -> tuple[str | None, str] | None:
        name, data = self._name, self._data
        self._name, self._data, self._size = None, [], 0
        return (name, "\n".join(data)) if data else None

    def _check_size(self, pending: int) -> None:
        if self._size + pending > self.max_event_bytes:
            raise ProviderError(
                FailureKind.BAD_RESPONSE,
                f"{self.host}: an event larger than {self.max_event_bytes} bytes",
            )
