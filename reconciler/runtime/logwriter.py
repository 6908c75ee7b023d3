"""The routing-log writer: rows queued by the router, written by a child process.

The router queues one row per attempt (:meth:`LogWriter.put`, one deque append on
the event loop). A sender thread wakes every ``every_s``, or as soon as a full
batch is waiting, and sends the rows down a pipe, in frames of at most ``batch``
rows, to a child process (``python -m reconciler.runtime.logwriter``) that writes
each frame in one transaction and acknowledges it. Both ends of each pipe are
``multiprocessing.connection.Connection`` objects, which frame the messages (a
length, then the bytes); the bytes are ``pickle.dumps`` of a frame (``_send``).

Why a process and not a thread: writing rows is Python work (SQLAlchemy's
parameter processing) cut into many pieces by SQLite calls that give up the
interpreter lock; a writer thread takes the lock every time the event loop makes
a system call and keeps it until its next piece ends, so a batch stretched over
tens of milliseconds slowed every call served meanwhile (``bench/api.py``: the
p99 of a routed call at 1,000 calls a second). The parent's share is turning
rows into tuples and pickling them, in C calls bounded by the frame size (its
dated cost per row is in bench/README.md).

Why ``subprocess.Popen`` and a Connection on its pipes, not a ``multiprocessing``
``Process`` with a ``Pipe`` or a ``Queue`` (issue 15 asked for the standard
library's machinery unless it costs more): the framing is the standard library's,
and so would the rest be, but a ``Process`` (started by "spawn" or "forkserver")
inherits the server's whole environment, provider keys included, and so does the
resource tracker process started beside it, whereas this child gets
:func:`childenv.build`'s allow-list (``tests/api/test_child_env.py``); it cannot be
started in a session of its own, so a terminal's Ctrl-C would reach it while it
starts up; and its command line would no longer say what it is. The cost is not
the reason: the parent's CPU per row is the same, within the noise of a busy
machine, for the hand-written framing this replaced, for this and for a spawned
``Process`` with a ``Pipe``; a ``Queue`` costs about twice as much (a feeder thread
pickles and writes). The dated figures are in bench/README.md, measured by
``bench/logwriter.py``. ``Connection.send`` would pickle with multiprocessing's
``ForkingPickler``, a little more a row for nothing this child needs.

Loss is bounded and counted, never silent: when ``max_rows`` are waiting (the
child or the database is slow or away) new rows are dropped; a row the database
refuses is left out alone (the frame is retried row by row,
:func:`routing_logs.write_batch`) and a frame it cannot write at all is dropped,
each with a ``routing-log-dropped`` warning naming the error type; a child that
dies takes the frames it had not acknowledged with it and is replaced, no more
often than every ``respawn_s``. The database URL reaches the child in its first
frame, not on its command line, where ``ps`` would show a password. Closing the
child's stdin stops it after its last frame, so does its parent's death; it
ignores SIGINT and SIGTERM (sent to the whole process group by a terminal or a
service manager) so that the parent can stop it after handing over every row.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import operator
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from reconciler.base import childenv, errors, logs, telemetry
from reconciler.store import routing_logs
from reconciler.store.engine import Database

log = logging.getLogger("grove.router")

_READY = "ready"
_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(routing_logs.Attempt)))
CHILD = [sys.executable, "-m", "reconciler.runtime.logwriter"]
_WRITTEN = telemetry.ROUTING_LOG_ROWS.labels(outcome="written")
_DROPPED = telemetry.ROUTING_LOG_ROWS.labels(outcome="dropped")


def _send(connection: Connection, value: Any) -> None:
    """One message: ``Connection`` writes its length and bytes; ``pickle.dumps`` makes
    them (``Connection.send`` would pickle with multiprocessing's ``ForkingPickler``,
    whose dispatch table is looked up, and missed, for every datetime of every row)."""
    connection.send_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _receive(connection: Connection) -> Any:
    """The next message, or None at the end of the stream (a message cut short by the
    other side's death ends it too)."""
    try:
        message = connection.recv_bytes()
    except (EOFError, OSError):
        return None
    return pickle.loads(message)  # noqa: S301 - written by our own parent or child only


class _Child:
    """One writer process, and the frames it was sent but has not acknowledged. Its own
    session: a terminal's Ctrl-C, sent to the server's process group, does not reach
    it even while it starts up (before it ignores the signal)."""

    def __init__(self, url: str) -> None:
        env = childenv.build(childenv.PYTHON)  # never the API keys
        # its stdin and stdout: pipes made here (closed on exec, so no other child inherits
        # them) whose parent's ends become multiprocessing Connections
        child_stdin, to_child = os.pipe()
        from_child, child_stdout = os.pipe()
        try:
            self.process = subprocess.Popen(  # it keeps no metrics: the parent counts its answers
                CHILD, stdin=child_stdin, stdout=child_stdout, env=env, start_new_session=True
            )
        except BaseException:
            os.close(to_child)
            os.close(from_child)
            raise
        finally:
            os.close(child_stdin)
            os.close(child_stdout)
        self.outbox = Connection(to_child, readable=False)
        self.inbox = Connection(from_child, writable=False)
        self._outbox_lock = threading.Lock()  # a send and the close of the outbox
        self.unacknowledged: dict[int, int] = {}  # frame number -> rows
        self.ready = False  # it said so: rows are sent to it only then
        self.broken = False  # a send to it failed: it is ended, its reader counts the loss
        self.gone = False  # its reader saw it end and counted what it held
        try:
            self.send({"url": url})
        except OSError:
            self.process.kill()
            self.reap(10.0)
            self.inbox.close()
            raise

    def send(self, value: Any) -> None:
        """One message to its stdin; OSError when it is gone or its stdin closed."""
        with self._outbox_lock:
            _send(self.outbox, value)

    def close_input(self) -> None:
        """Close its stdin: it writes what it was sent and exits. A send under way
        finishes first (it fails at once when the child is dead)."""
        with self._outbox_lock, contextlib.suppress(OSError):
            self.outbox.close()

    def reap(self, timeout: float) -> int:
        """Wait for it to exit (killing it after ``timeout``); its exit code. Closes
        its stdin, which no one can write to any more."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.close_input()
        return code


class LogWriter:
    def __init__(
        self,
        db: Database,
        *,
        batch: int = 250,
        every_s: float = 0.25,
        max_rows: int = 200_000,
        respawn_s: float = 1.0,
        stop_s: float = 10.0,
    ) -> None:
        self.url = db.url
        self.batch = batch
        self.every_s = every_s
        self.max_rows = max_rows
        self.respawn_s = respawn_s
        self.stop_s = stop_s
        self.dropped = 0
        self.written = 0
        self.spawned = 0
        self._rows: collections.deque[routing_logs.Attempt] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._deadline = float("inf")  # set by stop(): rows not handed over by then are lost
        self._state = threading.Condition()  # counters, frames in flight, the child
        self._sending = False
        self._frames = 0
        self._child: _Child | None = None
        self._next_spawn = 0.0
        self._failures = 0  # children in a row that failed before they were ready
        self._thread = threading.Thread(target=self._run, name="grove-routing-log", daemon=True)

    def put(self, row: routing_logs.Attempt) -> None:
        rows = self._rows
        if len(rows) >= self.max_rows:
            self.dropped += 1
            _DROPPED.inc()
            return
        rows.append(row)
        if len(rows) == self.batch:
            self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def child_pid(self) -> int | None:
        """The writer process's id, while there is one."""
        child = self._child
        return child.process.pid if child is not None else None

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until the rows put so far are written or dropped (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        with self._state:
            while self._busy() and self._thread.is_alive():
                self._wake.set()
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._state.wait(min(left, 0.05))

    def _busy(self) -> bool:
        child = self._child
        return bool(self._rows) or self._sending or bool(child and child.unacknowledged)

    def stop(self) -> None:
        """Hand every queued row to the child and wait for it to write them, for up to
        ``stop_s``; then end it. Rows not written by then are counted as dropped."""
        self._deadline = time.monotonic() + self.stop_s
        self._stopping = True
        self._wake.set()
        if not self._thread.is_alive():  # never started: no one will write them
            self._drop_queued()
            return
        self._thread.join(self.stop_s + 2)
        child = self._child
        if self._thread.is_alive() and child is not None:
            # still sending to a child that does not read (its database stalls): end it,
            # so that the send fails and its reader counts what it held
            child.process.kill()
            self._thread.join(15)

    # ---------------------------------------------------------------- sender thread

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.every_s)
            self._wake.clear()
            self._ship()
        while self._rows and time.monotonic() < self._deadline:  # hand over what is left
            self._ship()
            if self._rows:
                self._wake.wait(0.05)
                self._wake.clear()
        self._drop_queued()
        self._end_child()

    def _ship(self) -> None:
        rows = self._rows
        while rows and time.monotonic() < self._deadline:
            child = self._child or self._spawn()
            if child is None or not child.ready or child.broken:
                return  # starting, or in a pause before the next: rows wait, up to max_rows
            with self._state:
                self._sending = True
            try:
                taken = [rows.popleft() for _ in range(min(self.batch, len(rows)))]
                self._hand(child, taken)
            finally:
                with self._state:
                    self._sending = False
                    self._state.notify_all()

    def _hand(self, child: _Child, rows: list[routing_logs.Attempt]) -> None:
        with self._state:
            if child.gone:
                self._lost(len(rows), "writer-exited")
                return
            self._frames += 1
            number = self._frames
            child.unacknowledged[number] = len(rows)
        try:
            child.send((number, [_FIELDS(row) for row in rows]))
        except (OSError, ValueError):
            # it died, or was ended: make sure it is gone; its reader reads every answer
            # it gave, then counts the rest (this frame too) as lost
            child.broken = True
            with contextlib.suppress(OSError):
                child.process.kill()

    def _drop_queued(self) -> None:
        left = 0
        with contextlib.suppress(IndexError):
            while True:
                self._rows.popleft()
                left += 1
        if left:
            self._lost(left, "stopped-before-written")

    def _spawn(self) -> _Child | None:
        if time.monotonic() < self._next_spawn:
            return None
        # one that keeps failing (a broken installation) is retried less and less often
        self._next_spawn = time.monotonic() + min(60.0, self.respawn_s * 2**self._failures)
        try:
            child = _Child(self.url)
        except OSError as exc:
            self._failures += 1
            logs.event(
                log, "routing-log-writer-failed", level=logging.WARNING, reason=type(exc).__name__
            )
            return None
        self._child = child
        self.spawned += 1
        threading.Thread(
            target=self._read, args=(child,), name="grove-routing-log-acks", daemon=True
        ).start()
        return child

    def _read(self, child: _Child) -> None:
        """Count the child's answers until it ends, then what it took along."""
        try:
            while (answer := _receive(child.inbox)) is not None:
                if answer == _READY:
                    child.ready = True
                    self._failures = 0
                    self._wake.set()
                    continue
                number, refused, reason = answer
                with self._state:
                    rows = child.unacknowledged.pop(number, 0)
                    refused = min(rows, refused)
                    if rows > refused:
                        self.written += rows - refused
                        _WRITTEN.inc(rows - refused)
                    if refused or reason:
                        self._lost(refused, reason or "refused")
                    self._state.notify_all()
        except Exception as exc:  # an answer that does not parse: this child is done
            logs.event(
                log, "routing-log-writer-failed", level=logging.WARNING, reason=type(exc).__name__
            )
            child.process.kill()
        finally:
            child.inbox.close()
            code = child.reap(10.0)
            if not self._stopping or code != 0:
                logs.event(log, "routing-log-writer-exited", level=logging.WARNING, code=code)
            self._gone(child)

    def _gone(self, child: _Child) -> None:
        with self._state:
            child.gone = True
            if self._child is child:
                self._child = None
            if not child.ready:
                self._failures += 1
            taken = sum(child.unacknowledged.values())
            child.unacknowledged.clear()
            if taken:
                self._lost(taken, "writer-exited")
            self._state.notify_all()

    def _lost(self, rows: int, reason: str) -> None:
        self.dropped += rows
        _DROPPED.inc(rows)
        logs.event(log, "routing-log-dropped", level=logging.WARNING, rows=rows, reason=reason)

    def _end_child(self) -> None:
        """Close the child's stdin (it writes what it has and exits), wait for it until
        the deadline, then end it; return once its reader has counted its answers."""
        child = self._child
        if child is None:
            return
        child.close_input()
        try:
            child.process.wait(max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
        with self._state:
            limit = time.monotonic() + 15
            while not child.gone and time.monotonic() < limit:
                self._state.wait(0.5)


# -------------------------------------------------------------------- child process


def _write(db: Database, rows: list[tuple[Any, ...]]) -> tuple[int, str | None]:
    """Write one frame in one transaction: how many rows were refused (left out, the
    others written) and why, or ``(0, None)``. No detail that could carry a value from
    a row or the URL: error types only."""
    try:
        with db.transaction(write=True) as connection:
            refused = routing_logs.write_batch(
                connection, [routing_logs.Attempt(*row) for row in rows]
            )
    except Exception as exc:  # the log must never take the writer down
        return len(rows), type(exc).__name__
    return refused.rows, (str(refused) or None)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends us by closing stdin
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    source, answers = Connection(0, writable=False), Connection(1, readable=False)
    config = _receive(source)
    if config is None:
        return 0
    try:
        db = Database(config["url"])
    except errors.GroveError as exc:  # its messages name no credential
        print(f"grove routing-log writer: {exc}", file=sys.stderr)
        return 2
    try:
        _send(answers, _READY)
        while (frame := _receive(source)) is not None:
            number, rows = frame
            _send(answers, (number, *_write(db, rows)))
    except BrokenPipeError:  # the parent is gone
        return 0
    finally:
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
