"""Benchmark: the routing-log writer's transport, hand-written framing against the stdlib's.

The router's writer (``reconciler.runtime.logwriter``) sends rows to a child process
in frames of ``batch`` rows and counts the child's acknowledgements. Issue 15 asked
for the standard library's process or queue machinery unless it costs more. This
measures, in one process and one run, alternating, each variant doing the writer's
own work (rows turned into tuples, framed, sent; every frame acknowledged):

- "framed pipe": the writer's protocol until 2026-12-05, a ``subprocess.Popen``
  child (allow-listed environment, session of its own) and frames of a 4-byte
  length and ``pickle.dumps`` written to its stdin, answers read from its stdout;
- "Connection.send on Popen pipes": the same child, its pipes wrapped in
  ``multiprocessing.connection.Connection`` (its ``send``/``recv`` frame and pickle);
- "Connection.send_bytes(pickle)": the same Connections framing what ``pickle.dumps``
  made, as the writer does since 2026-12-05;
- "mp spawn + Pipe": ``multiprocessing`` with the "spawn" context, a ``Process``
  and two ``Pipe`` connections (the child inherits ``os.environ``: keys included);
- "mp spawn + Queue": the same with two ``multiprocessing.Queue`` (a feeder thread
  pickles and writes in the parent).

Figures: rows a second from the first row sent to the last acknowledgement, and the
parent's CPU (every thread of it: sender, acknowledgement reader, a queue's feeder)
per row. ``--sink ack`` acknowledges without writing (the transport alone);
``--sink sqlite`` writes each frame to a real SQLite registry as the server's child
does. Process start-up is outside the clock.

    .venv/bin/python bench/logwriter.py [--rows 100000] [--batch 250] [--rounds 3] [--sink ack]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import multiprocessing.connection
import os
import pickle
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import IO, Any

from reconciler.base import childenv
from reconciler.runtime import logwriter
from reconciler.store import migrating, routing_logs
from reconciler.store.engine import Database

DECISION = {
    "modelId": "fast",
    "chain": ["fast", "backup"],
    "ruleId": "bench",
    "strategy": "priority",
    "reason": "priority match: fast (priority 1000)",
    "revision": "a" * 40,
}
_FIELDS = logwriter._FIELDS  # the writer's own row -> tuple


def attempt() -> routing_logs.Attempt:
    return routing_logs.Attempt(
        str(uuid.uuid4()), "fast", "bench", "reasoning", 0.7, True, 1, None, 5, 1, 1e-5,
        DECISION, dt.datetime.now(dt.UTC),
    )  # fmt: skip


# ------------------------------------------------------------ the hand-written framing

_HEADER = struct.Struct("!I")


def _send_framed(stream: IO[bytes], value: Any) -> None:
    frame = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(frame)) + frame)
    stream.flush()


def _receive_framed(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    frame = stream.read(_HEADER.unpack(header)[0])
    return pickle.loads(frame)


# ------------------------------------------------------------ the child's side


def _sink(sink: str, url: str) -> tuple[Callable[[list[tuple[Any, ...]]], Any], Database | None]:
    if sink == "ack":
        return (lambda rows: (0, None)), None
    db = Database(url)
    return (lambda rows: logwriter._write(db, rows)), db


def _child_framed(sink: str, url: str) -> None:
    source, answers = sys.stdin.buffer, sys.stdout.buffer
    write, _ = _sink(sink, url)
    _send_framed(answers, "ready")
    while (frame := _receive_framed(source)) is not None:
        number, rows = frame
        _send_framed(answers, (number, *write(rows)))


def _child_connection(sink: str, url: str) -> None:
    inbox, outbox = Connection(0, writable=False), Connection(1, readable=False)
    write, _ = _sink(sink, url)
    outbox.send("ready")
    while True:
        try:
            number, rows = inbox.recv()
        except EOFError:
            return
        outbox.send((number, *write(rows)))


def _child_mp(inbox: Any, outbox: Any, sink: str, url: str, queue: bool) -> None:
    """A multiprocessing child; ``inbox``/``outbox`` are Connections or Queues."""
    write, _ = _sink(sink, url)
    get = inbox.get if queue else inbox.recv
    put = outbox.put if queue else outbox.send
    put("ready")
    while (frame := get()) is not None:
        number, rows = frame
        put((number, *write(rows)))


# ------------------------------------------------------------ the parent's side


class Transport:
    """Start a child; send frames; receive answers (None at the end); close."""

    def __init__(self, sink: str, url: str) -> None:
        raise NotImplementedError

    def send(self, value: Any) -> None:
        raise NotImplementedError

    def receive(self) -> Any:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError


class FramedPipe(Transport):
    mode = "framed"

    def __init__(self, sink: str, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--child", self.mode, "--sink", sink, "--url", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=childenv.build(childenv.PYTHON, {"PYTHONPATH": str(Path.cwd())}),
            start_new_session=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout

    def send(self, value: Any) -> None:
        _send_framed(self.stdin, value)

    def receive(self) -> Any:
        return _receive_framed(self.stdout)

    def finish(self) -> None:
        self.stdin.close()
        self.process.wait(30)
        self.stdout.close()


class ConnectionPipe(FramedPipe):
    mode = "connection"

    def __init__(self, sink: str, url: str) -> None:
        super().__init__(sink, url)
        # the same pipes, framed by multiprocessing (duplicated: the file objects keep theirs)
        self.outbox = Connection(os.dup(self.stdin.fileno()), readable=False)
        self.inbox = Connection(os.dup(self.stdout.fileno()), writable=False)
        self.stdin.close()
        self.stdout.close()

    def send(self, value: Any) -> None:
        self.outbox.send(value)

    def receive(self) -> Any:
        try:
            return self.inbox.recv()
        except EOFError:
            return None

    def finish(self) -> None:
        self.outbox.close()
        self.process.wait(30)
        self.inbox.close()


class ConnectionBytesPipe(ConnectionPipe):
    """The same Connections, their messages pickled by ``pickle.dumps`` (what the writer
    does): ``Connection.send`` pickles with ``ForkingPickler``, whose dispatch table costs
    a lookup that fails for every datetime of a row."""

    def send(self, value: Any) -> None:
        self.outbox.send_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def receive(self) -> Any:
        try:
            return pickle.loads(self.inbox.recv_bytes())
        except EOFError:
            return None


class SpawnPipe(Transport):
    queue = False

    def __init__(self, sink: str, url: str) -> None:
        context = multiprocessing.get_context("spawn")
        child_in: Any
        child_out: Any
        if self.queue:
            self.inbox: Any = context.Queue()
            self.outbox: Any = context.Queue()
            child_in, child_out = self.outbox, self.inbox
        else:
            child_in, self.outbox = context.Pipe(duplex=False)
            self.inbox, child_out = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_child_mp, args=(child_in, child_out, sink, url, self.queue), daemon=True
        )
        self.process.start()
        if not self.queue:
            child_in.close()
            child_out.close()

    def send(self, value: Any) -> None:
        (self.outbox.put if self.queue else self.outbox.send)(value)

    def receive(self) -> Any:
        try:
            return self.inbox.get() if self.queue else self.inbox.recv()
        except EOFError:
            return None

    def finish(self) -> None:
        self.send(None)
        self.process.join(30)
        if self.queue:
            for queue in (self.inbox, self.outbox):
                queue.close()
                queue.join_thread()
        else:
            self.outbox.close()
            self.inbox.close()


class SpawnQueue(SpawnPipe):
    queue = True


VARIANTS: list[tuple[str, type[Transport]]] = [
    ("framed pipe (until 2026-12-05)", FramedPipe),
    ("Connection.send on Popen pipes", ConnectionPipe),
    ("Connection.send_bytes(pickle)", ConnectionBytesPipe),
    ("mp spawn + Pipe", SpawnPipe),
    ("mp spawn + Queue", SpawnQueue),
]


def run(
    kind: type[Transport], rows: list[routing_logs.Attempt], batch: int, sink: str, url: str
) -> tuple[float, float]:
    """Seconds and parent CPU seconds from the first row sent to the last answer."""
    transport = kind(sink, url)
    assert transport.receive() == "ready"  # started before the clock
    frames = (len(rows) + batch - 1) // batch

    def read() -> None:
        for _ in range(frames):
            _, refused, reason = transport.receive()
            assert not refused, reason

    reader = threading.Thread(target=read)
    wall, cpu = time.perf_counter(), time.process_time()
    reader.start()
    for number, start in enumerate(range(0, len(rows), batch)):
        transport.send((number, [_FIELDS(row) for row in rows[start : start + batch]]))
    reader.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    transport.finish()
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sink", choices=["ack", "sqlite"], default="ack")
    parser.add_argument("--child", choices=["framed", "connection"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (_child_framed if args.child == "framed" else _child_connection)(args.sink, args.url)
        return
    rows = [attempt() for _ in range(args.rows)]
    results: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="grove-bench-logwriter-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'registry.db'}")
        migrating.upgrade(db)
        db.dispose()
        for _ in range(args.rounds):
            for label, kind in VARIANTS:
                results[label].append(run(kind, rows, args.batch, args.sink, db.url))
    print(
        f"{args.rows:,} rows in frames of {args.batch}, sink {args.sink}, "
        f"{args.rounds} rounds alternating (median, best), Python {sys.version.split()[0]}"
    )
    base = statistics.median(cpu for _, cpu in results[VARIANTS[0][0]])
    print(f"{'variant':32} {'rows/s':>20} {'parent CPU us/row':>18} {'vs framed':>10}")
    for label, figures in results.items():
        walls, cpus = [w for w, _ in figures], [c for _, c in figures]
        cpu = statistics.median(cpus)
        print(
            f"{label:32} {args.rows / statistics.median(walls):9,.0f} "
            f"{args.rows / min(walls):10,.0f} {cpu / args.rows * 1e6:8.2f} "
            f"{min(cpus) / args.rows * 1e6:8.2f} {cpu / base:9.2f}x"
        )
    encode(rows[: args.batch])


def encode(rows: list[routing_logs.Attempt]) -> None:
    """The parent's share without I/O, in this process (steadier on a busy machine than
    the runs above): turning a frame's rows into tuples and its bytes, best of 5."""
    frame = len(rows)

    def framed() -> bytes:
        data = pickle.dumps((1, [_FIELDS(r) for r in rows]), protocol=pickle.HIGHEST_PROTOCOL)
        return _HEADER.pack(len(data)) + data

    def connection() -> Any:  # what Connection.send and Queue.put pickle with
        return ForkingPickler.dumps((1, [_FIELDS(r) for r in rows]))

    def send_bytes() -> bytes:  # Connection.send_bytes writes its length apart
        return pickle.dumps((1, [_FIELDS(r) for r in rows]), protocol=pickle.HIGHEST_PROTOCOL)

    print(f"encoding a frame of {frame} rows, in-process, best of 7:")
    functions = [("framed (pickle.dumps + header)", framed),
                 ("Connection.send (ForkingPickler)", connection),
                 ("send_bytes(pickle.dumps)", send_bytes)]  # fmt: skip
    best = {label: float("inf") for label, _ in functions}
    for _ in range(7):  # alternating
        for label, function in functions:
            best[label] = min(best[label], timeit.timeit(function, number=200) / 200 / frame)
    for label, figure in best.items():
        ratio = figure / best[functions[0][0]]
        print(f"  {label:34} {figure * 1e6:6.2f} us/row {ratio:6.2f}x")


if __name__ == "__main__":
    main()
