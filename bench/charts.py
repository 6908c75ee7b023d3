"""Benchmark: the console's charts (reconciler/web/charts.py), against json.dumps of the same data.

Two measurements, each the median of ``--runs`` rounds in one process:

- the fleet page's sparklines: ``--cards`` cards of ``--points`` points each (1,000 x 60), with
  and without their ``<details>`` tables;
- one model page: ``time_buckets`` of ``--samples`` raw samples over a week (100,000) into the
  7d window's buckets, then ``window_charts`` (latency p50/p95/p99, success rate, requests,
  cost); the two steps are timed apart.

The baseline is ``json.dumps`` of the same numbers (the sparklines' times and values; the raw
samples with ISO times), run in the same process: what an API would pay just to serialize them.
It prints milliseconds and output bytes; it asserts nothing.

    .venv/bin/python bench/charts.py [--cards 1000] [--points 60] [--samples 100000] [--runs 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from reconciler.web import buckets, charts

END = dt.datetime(2026, 12, 5, 14, 7, tzinfo=dt.UTC)


def timed(runs: int, work: Callable[[], Any]) -> tuple[float, Any]:
    """Median milliseconds of ``runs`` calls, and the last result."""
    times = []
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=1000)
    parser.add_argument("--points", type=int, default=60)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(42)

    times = [END - dt.timedelta(minutes=args.points - i) for i in range(args.points)]
    cards = [
        [None if rng.random() < 0.02 else rng.lognormvariate(5, 0.4) for _ in times]
        for _ in range(args.cards)
    ]

    def sparklines(table: bool) -> list[str]:
        return [
            str(
                charts.sparkline(
                    id_prefix=f"card-{i}",
                    title=f"model-{i} p95 latency, last hour",
                    times=times,
                    values=values,
                    unit="ms",
                    table=table,
                )
            )
            for i, values in enumerate(cards)
        ]

    def cards_json() -> str:
        iso = [t.isoformat() for t in times]
        return json.dumps([{"times": iso, "values": values} for values in cards])

    samples = [
        buckets.Sample(
            END - dt.timedelta(seconds=rng.uniform(0, 7 * 86400)),
            rng.lognormvariate(5, 0.6),
            rng.random() > 0.01,
            0.0004,
        )
        for _ in range(args.samples)
    ]

    def samples_json() -> str:
        return json.dumps([[s.at.isoformat(), s.latency_ms, s.ok, s.cost] for s in samples])

    bucketing, cut = timed(args.runs, lambda: buckets.time_buckets(samples, "7d", end=END))

    def model_page() -> dict[str, Any]:
        return charts.window_charts(cut, id_prefix="model", title="gpt-4o")

    rows = [
        ("sparklines with tables", *timed(args.runs, lambda: sparklines(True))),
        ("sparklines without tables", *timed(args.runs, lambda: sparklines(False))),
        ("  baseline: json.dumps", *timed(args.runs, cards_json)),
        (f"time_buckets of {args.samples:,} samples (7d)", bucketing, cut),
        ("window_charts of its 84 buckets", *timed(args.runs, model_page)),
        ("  baseline: json.dumps of the samples", *timed(args.runs, samples_json)),
    ]
    print(
        f"{args.cards:,} cards x {args.points} points; one model page of {args.samples:,} "
        f"samples; median of {args.runs} runs"
    )
    for name, ms, result in rows:
        print(f"{name:48} {ms:9.2f} ms {_size(result):>12}")


def _size(result: Any) -> str:
    if isinstance(result, str):
        return f"{len(result):,} B"
    if isinstance(result, dict):
        return f"{sum(len(str(v)) for v in result.values()):,} B"
    if isinstance(result, list) and result and isinstance(result[0], str):
        return f"{sum(len(s) for s in result):,} B"
    return ""


if __name__ == "__main__":
    main()
