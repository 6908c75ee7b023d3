"""Benchmark: how long the API's event loop waits while the routing-log writer works.

The router queues one row per attempt; a thread of the same process writes them
in batches (about 250 attempts, three rows each, every 250 ms at 1,000 calls a
second). Building the rows is Python work that holds the interpreter lock, and
with CPython's default switch interval (5 ms) the event loop, which serves every
request, can wait up to that long each time it wants the lock back. The API
server lowers the interval to 0.5 ms while it runs (``reconciler.api``); this
measures why, in one process, alternating the two settings:

- the loop runs a stand-in for requests (0.2 ms of work, then 1 ms asleep) and
  records how late each wake-up is;
- a writer thread writes real routing-log batches to a real SQLite registry
  (``routing_logs.write_batch``, the writer's own call) four times a second;
- a run without the writer is the floor.

    .venv/bin/python bench/loop_lag.py [--seconds 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

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


def batch(size: int) -> list[routing_logs.Attempt]:
    now = dt.datetime.now(dt.UTC)
    return [
        routing_logs.Attempt(
            str(uuid.uuid4()), "fast", "bench", "reasoning", 0.7, True, 1, None, 5, 1, 1e-5,
            DECISION, now,
        )
        for _ in range(size)
    ]  # fmt: skip


def writer(db: Database, stop: threading.Event, every_s: float, size: int) -> None:
    while not stop.is_set():
        rows = batch(size)
        with db.transaction(write=True) as connection:
            routing_logs.write_batch(connection, rows)
        stop.wait(every_s)


async def loop_lag(seconds: float) -> list[float]:
    """How late each 1 ms sleep wakes up, after 0.2 ms of work (a request's share)."""
    late: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        busy = time.perf_counter()
        while time.perf_counter() - busy < 0.0002:
            pass
        asleep = time.perf_counter()
        await asyncio.sleep(0.001)
        late.append(time.perf_counter() - asleep - 0.001)
    return sorted(late)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=250)
    args = parser.parse_args()
    default = sys.getswitchinterval()
    with tempfile.TemporaryDirectory(prefix="grove-bench-lag-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'registry.db'}")
        migrating.upgrade(db)
        rows: list[tuple[str, list[float]]] = [("no writer (floor)", asyncio.run(loop_lag(2.0)))]
        for _ in range(args.rounds):
            for label, interval in (
                (f"writer, switch {default * 1000:g} ms", default),
                ("writer, switch 0.5 ms", 0.0005),
            ):
                sys.setswitchinterval(interval)
                stop = threading.Event()
                thread = threading.Thread(target=writer, args=(db, stop, 0.25, args.batch))
                thread.start()
                try:
                    rows.append((label, asyncio.run(loop_lag(args.seconds))))
                finally:
                    stop.set()
                    thread.join()
                    sys.setswitchinterval(default)
        db.dispose()
    ms = 1000.0
    print(f"python {sys.version.split()[0]}; writer: {args.batch} attempts every 250 ms")
    print("event loop wake-up delay (how late a 1 ms sleep returns):")
    for label, late in rows:
        print(
            f"  {label:<26} p50 {pct(late, 0.5) * ms:6.3f} ms  p99 {pct(late, 0.99) * ms:6.3f} ms"
            f"  max {late[-1] * ms:7.3f} ms  (n={len(late)})"
        )
    by_label: dict[str, list[float]] = {}
    for label, late in rows[1:]:
        by_label.setdefault(label, []).append(pct(late, 0.99))
    slow, fast = (statistics.median(v) for v in by_label.values())
    print(f"median p99, default interval / 0.5 ms: {slow / fast:.1f}x")


if __name__ == "__main__":
    main()
