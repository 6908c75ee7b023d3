"""The model page's helpers: the bucket cache reads only what can still change, and gives
the same buckets as reading the whole window."""

from __future__ import annotations

import datetime as dt
import random

from reconciler.store.routing_logs import Observation
from reconciler.web import modelview
from reconciler.web.buckets import WINDOWS, time_buckets

NOW = dt.datetime(2026, 3, 4, 12, 17, 30, tzinfo=dt.UTC)


def _log(count: int) -> list[Observation]:
    rng = random.Random(7)
    rows = [
        Observation(
            rng.lognormvariate(5, 0.4),
            rng.random() > 0.05,
            None,
            0.001,
            NOW - dt.timedelta(seconds=rng.random() * 6.7 * 86400),  # inside the window
        )
        for _ in range(count)
    ]
    return sorted(rows, key=lambda o: o.timestamp, reverse=True)  # newest first, as stored


def test_the_cache_reads_only_the_open_buckets_and_agrees_with_a_full_read() -> None:
    log = _log(20_000)
    asked: list[tuple[dt.datetime, int]] = []

    def attempts(since: dt.datetime, limit: int) -> list[Observation]:
        asked.append((since, limit))
        return [o for o in log if o.timestamp >= since][:limit]

    cache = modelview.BucketCache()
    window = WINDOWS["7d"]
    first = cache.read("db", "m", window, NOW, attempts)
    assert first.rows == len(log) and not first.capped
    again = cache.read("db", "m", window, NOW, attempts)
    # only the bucket still open (12:00-18:00) is read again
    assert asked[-1][0] == dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)
    assert again.rows < 200
    whole = time_buckets(
        ((o.timestamp, o.latency_ms, o.success, o.cost_usd) for o in log), window, end=NOW
    )
    assert again.buckets == whole == first.buckets
    assert again.requests == len(log)


def test_a_bucket_is_kept_only_once_it_has_settled() -> None:
    log = _log(500)

    def attempts(since: dt.datetime, limit: int) -> list[Observation]:
        return [o for o in log if o.timestamp >= since][:limit]

    cache = modelview.BucketCache()
    just_after = dt.datetime(2026, 3, 4, 12, 1, tzinfo=dt.UTC)  # 11:55-12:00 ended 1 min ago
    cache.read("db", "m", WINDOWS["1h"], just_after, attempts)
    late = Observation(
        100.0, False, "timeout", None, dt.datetime(2026, 3, 4, 11, 57, tzinfo=dt.UTC)
    )
    log.insert(0, late)  # the writer's batch lands late, in the bucket that just ended
    read = cache.read("db", "m", WINDOWS["1h"], just_after, attempts)
    assert read.buckets[-2].requests == 1 + sum(
        1
        for o in log[1:]
        if dt.datetime(2026, 3, 4, 11, 55, tzinfo=dt.UTC)
        <= o.timestamp
        < dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)
    )


def test_a_capped_read_keeps_no_bucket_it_may_have_cut() -> None:
    log = _log(3_000)

    def attempts(since: dt.datetime, limit: int) -> list[Observation]:
        return [o for o in log if o.timestamp >= since][: min(limit, 1_000)]

    modelview.ROW_CAP, saved = 1_000, modelview.ROW_CAP
    try:
        read = modelview.BucketCache().read("db", "m", WINDOWS["7d"], NOW, attempts)
    finally:
        modelview.ROW_CAP = saved
    assert read.capped and read.rows == 1_000


def test_how_a_rule_uses_a_model_is_said_in_words() -> None:
    from reconciler.manifests import kinds as manifests

    model = manifests.parse_document(
        {
            "meta": {"id": "m", "type": "AIModel", "version": "1"},
            "payload": {"name": "M", "provider": "mock", "capabilities": {"reasoning": 0.8}},
        },
        allow_local_endpoints=False,
    )
    rule = manifests.parse_document(
        {
            "meta": {"id": "r", "type": "RoutingRule", "version": "1"},
            "payload": {"taskType": "r", "requires": ["reasoning"], "minScore": 0.5},
        },
        allow_local_endpoints=False,
    )
    chained = manifests.parse_document(
        {
            "meta": {"id": "c", "type": "RoutingRule", "version": "1"},
            "payload": {"taskType": "c", "requires": ["speed"], "chain": ["x", "m"]},
        },
        allow_local_endpoints=False,
    )
    assert isinstance(model, manifests.AIModel)
    assert isinstance(rule, manifests.RoutingRule) and isinstance(chained, manifests.RoutingRule)
    assert modelview.uses(model, rule) == "meets its requirements (reasoning 0.80; minimum 0.50)"
    assert modelview.uses(model, chained) == "named in its chain, 2nd of 2"
