"""The throttles behind ``GET /api/plan``, driven by a fake clock instead of sleeps.

`PreviewFetches` fetches the fleet repository at most once per interval (and repeats a
failed fetch's error until the interval is over); `PlanPreviews` computes one plan per
key, shares it, and starts at most one computation per interval. The real-server tests
(tests/api/test_access.py, tests/api/test_plan_cache.py, marked slow) check the same
behaviour through HTTP with short real intervals.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from reconciler.api.deps import PreviewFetches
from reconciler.api.previews import PlanPreviews
from reconciler.base import errors
from tests.clocks import FakeClock


class Source:
    """A fleet remote whose fetch works or fails as the test says."""

    def __init__(self) -> None:
        self.fetches = 0
        self.failing = False

    def fetch(self) -> None:
        self.fetches += 1
        if self.failing:
            raise errors.SourceUnavailable("git fetch failed: the remote is gone")

    def resolve(self, ref: str) -> str:
        return f"commit-of-{ref}"


class Reconciler:
    def __init__(self, source: Source) -> None:
        self.source = source


def _fetches(interval: float = 5.0) -> tuple[PreviewFetches, FakeClock, Source, Any]:
    clock, source = FakeClock(), Source()
    previews = PreviewFetches(min_interval_s=interval, clock=clock)
    reconciler: Any = Reconciler(source)
    return previews, clock, source, reconciler


def test_a_fetch_at_most_once_per_interval() -> None:
    previews, clock, source, reconciler = _fetches()
    for _ in range(5):
        assert previews.revision(reconciler, "main") == "commit-of-main"
    assert source.fetches == 1
    clock.advance(4.9)
    previews.revision(reconciler, "main")
    assert source.fetches == 1
    clock.advance(0.1)  # the interval is over: the next call fetches
    previews.revision(reconciler, "main")
    assert source.fetches == 2


def test_a_failed_fetch_is_repeated_without_fetching_until_the_interval_is_over() -> None:
    previews, clock, source, reconciler = _fetches()
    source.failing = True
    with pytest.raises(errors.SourceUnavailable) as first:
        previews.revision(reconciler, "main")
    for _ in range(3):  # the same error at once, no fetch
        with pytest.raises(errors.SourceUnavailable) as again:
            previews.revision(reconciler, "main")
        assert str(again.value) == str(first.value)
        assert again.value is not first.value  # a copy: tracebacks do not pile up
    assert source.fetches == 1
    source.failing = False
    clock.advance(5.0)
    assert previews.revision(reconciler, "main") == "commit-of-main"
    assert source.fetches == 2
    previews.revision(reconciler, "main")  # a success clears the failure at once
    assert source.fetches == 2


def _plans(interval: float = 3.0) -> tuple[PlanPreviews, FakeClock]:
    clock = FakeClock()
    return PlanPreviews(min_interval_s=interval, clock=clock, sleep=clock.sleep), clock


def test_one_plan_per_key_shared_by_concurrent_callers() -> None:
    plans, clock = _plans()
    computed: list[str] = []

    def compute() -> dict[str, Any]:
        computed.append("x")
        return {"changes": []}

    async def scenario() -> list[dict[str, Any]]:
        key = ("rev-a", 1, 0)
        return list(await asyncio.gather(*(plans.plan(key, compute) for _ in range(20))))

    answers = asyncio.run(scenario())
    assert answers == [{"changes": []}] * 20
    assert computed == ["x"] and plans.computations == 1
    assert clock.slept == []  # the first computation does not wait


def test_a_new_key_waits_for_the_interval_then_computes() -> None:
    plans, clock = _plans(interval=3.0)

    async def scenario() -> None:
        await plans.plan(("rev-a", 1, 0), lambda: {"revision": "rev-a"})
        clock.advance(1.0)
        assert await plans.plan(("rev-b", 1, 0), lambda: {"revision": "rev-b"}) == {
            "revision": "rev-b"
        }
        assert clock.slept == [pytest.approx(2.0)]  # the rest of the 3 s interval
        clock.advance(10.0)
        await plans.plan(("rev-c", 2, 0), lambda: {"revision": "rev-c"})
        assert clock.slept == [pytest.approx(2.0)]  # the interval was over: no wait
        # the key kept answers from memory, without a computation or a wait
        assert await plans.plan(("rev-c", 2, 0), lambda: {"never": "computed"}) == {
            "revision": "rev-c"
        }

    asyncio.run(scenario())
    assert plans.computations == 3


def test_a_failed_computation_is_not_kept() -> None:
    plans, clock = _plans(interval=3.0)

    def broken() -> dict[str, Any]:
        raise errors.SourceUnavailable("the remote is gone")

    async def scenario() -> dict[str, Any]:
        key = ("rev-a", 1, 0)
        with pytest.raises(errors.SourceUnavailable):
            await plans.plan(key, broken)
        return await plans.plan(key, lambda: {"revision": "rev-a"})

    assert asyncio.run(scenario()) == {"revision": "rev-a"}
    assert plans.computations == 1
    assert clock.slept == [pytest.approx(3.0)]  # the retry waited its turn


def test_a_caller_that_goes_away_does_not_cancel_the_computation_others_wait_for() -> None:
    """One computation per key however many ask; the first caller giving up (a client
    that hangs up) leaves it running for the second, which gets the plan."""
    plans, _ = _plans()
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def compute() -> dict[str, Any]:
        calls.append("x")
        started.set()
        release.wait(5)
        return {"revision": "rev-a"}

    async def scenario() -> dict[str, Any]:
        key = ("rev-a", 1, 0)
        first = asyncio.create_task(plans.plan(key, compute))
        await asyncio.to_thread(started.wait, 5)  # the computation is under way
        second = asyncio.create_task(plans.plan(key, compute))
        await asyncio.sleep(0)
        first.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    assert asyncio.run(scenario()) == {"revision": "rev-a"}
    assert calls == ["x"]
