"""Benchmark: how long the API's event loop waits while routing-log rows are written.

The router queues one row per attempt (about 1,000 a second at the issue's load).
Until 2026-11-27 a thread of the same process wrote them in batches; building the
rows is Python work that holds the interpreter lock, and with CPython's default
switch interval (5 ms) the event loop, which serves every request, could wait up
to that long each time it wanted the lock back. The API server lowers the
interval to 0.5 ms while it runs (``reconciler.api``), and the rows are now
written by a child process (``reconciler.runtime.logwriter``). This measures both,
in one process, alternating:

- the loop runs a stand-in for requests (0.2 ms of work, then 1 ms asleep),
  records how late each wake-up is, and queues 1,000 real routing-log rows a
  second, as the router would;
- "writer thread": a thread of this process takes the queued rows every 250 ms
  and writes them to a real SQLite registry (``routing_logs.write_batch``, the
  writer's own call), at the default switch interval and at 0.5 ms;
- "writer process": ``LogWriter``, the server's writer, at 0.5 ms;
- a run without any writer is the floor.

    .venv/bin/python bench/loop_lag.py [--seconds 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from reconciler.runtime.logwriter import LogWriter
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


def attempt() -> routing_logs.Attempt:
    return routing_logs.Attempt(
        str(uuid.uuid4()), "fast", "bench", "reasoning", 0.7, True, 1, None, 5, 1, 1e-5,
        DECISION, dt.datetime.now(dt.UTC),
    )  # fmt: skip


def writer(
    db: Database, queued: collections.deque[routing_logs.Attempt], stop: threading.Event
) -> None:
    """The old writer thread: every 250 ms, everything queued in one transaction."""
    while not stop.wait(0.25):
        rows = [queued.popleft() for _ in range(len(queued))]
        with db.transaction(write=True) as connection:
            routing_logs.write_batch(connection, rows)


async def loop_lag(
    seconds: float, put: Callable[[routing_logs.Attempt], None] | None, rate: float
) -> list[float]:
    """How late each 1 ms sleep wakes up, after 0.2 ms of work (a request's share),
    queueing ``rate`` rows a second with ``put``."""
    late: list[float] = []
    start = time.perf_counter()
    end = start + seconds
    queued = 0
    while time.perf_counter() < end:
        busy = time.perf_counter()
        if put is not None:
            due = int((busy - start) * rate) - queued
            for _ in range(due):
                put(attempt())
            queued += due
        while time.perf_counter() - busy < 0.0002:
            pass
        asleep = time.perf_counter()
        await asyncio.sleep(0.001)
        late.append(time.perf_counter() - asleep - 0.001)
    return sorted(late)


def with_thread(db: Database, seconds: float, rate: float) -> list[float]:
    queued: collections.deque[routing_logs.Attempt] = collections.deque()
    stop = threading.Event()
    thread = threading.Thread(target=writer, args=(db, queued, stop))
    thread.start()
    try:
        return asyncio.run(loop_lag(seconds, queued.append, rate))
    finally:
        stop.set()
        thread.join()


def with_process(db: Database, seconds: float, rate: float) -> list[float]:
    log_writer = LogWriter(db)
    log_writer.start()
    try:
        log_writer.put(attempt())
        log_writer.flush(timeout=30)  # its process is up before the clock starts
        return asyncio.run(loop_lag(seconds, log_writer.put, rate))
    finally:
        log_writer.stop()


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=1000.0, help="rows queued per second")
    args = parser.parse_args()
    default = sys.getswitchinterval()
    modes: list[tuple[str, float, Callable[[Database, float, float], list[float]]]] = [
        (f"writer thread, switch {default * 1000:g} ms", default, with_thread),
        ("writer thread, switch 0.5 ms", 0.0005, with_thread),
        ("writer process, switch 0.5 ms", 0.0005, with_process),
    ]
    with tempfile.TemporaryDirectory(prefix="grove-bench-lag-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'registry.db'}")
        migrating.upgrade(db)
        rows: list[tuple[str, list[float]]] = [
            ("no writer (floor)", asyncio.run(loop_lag(2.0, None, args.rate)))
        ]
        for _ in range(args.rounds):
            for label, interval, run in modes:
                sys.setswitchinterval(interval)
                try:
                    rows.append((label, run(db, args.seconds, args.rate)))
                finally:
                    sys.setswitchinterval(default)
        db.dispose()
    ms = 1000.0
    print(f"python {sys.version.split()[0]}; {args.rate:,.0f} routing-log rows queued a second")
    print("event loop wake-up delay (how late a 1 ms sleep returns):")
    for label, late in rows:
        print(
            f"  {label:<30} p50 {pct(late, 0.5) * ms:6.3f} ms  p99 {pct(late, 0.99) * ms:6.3f} ms"
            f"  max {late[-1] * ms:7.3f} ms  (n={len(late)})"
        )
    by_label: dict[str, list[float]] = {}
    for label, late in rows[1:]:
        by_label.setdefault(label, []).append(pct(late, 0.99))
    slow, thread, process = (statistics.median(v) for v in by_label.values())
    print(
        f"median p99: thread at the default interval / at 0.5 ms {slow / thread:.1f}x;"
        f" thread / process, both at 0.5 ms {thread / process:.1f}x"
    )


if __name__ == "__main__":
    main()
