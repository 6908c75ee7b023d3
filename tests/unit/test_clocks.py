"""Timing on a fake clock, in microseconds of test time: the reconcile loop's backoff
schedule (1 s doubling to 5 min, with jitter, no attempt inside a backoff) and the
circuit breaker's open and half-open periods (cooldown, Retry-After, a failed probe)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.base import settings
from reconciler.gitops import watching
from reconciler.routing import circuits
from tests.clocks import FakeClock

# ---------------------------------------------------------------- the loop's backoff

NOWHERE = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere"  # refused at once


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _down_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clock: FakeClock, jitter: float
) -> Iterator[watching.Watcher]:
    monkeypatch.setenv("GROVE_DB_URL", NOWHERE)
    monkeypatch.setenv("GROVE_REPO", str(tmp_path))
    options = watching.Options(poll_s=0.1, jitter=jitter)
    loop = watching.Watcher(settings.load(), options, holder="down", clock=clock)
    try:
        yield loop
    finally:
        loop.stop.set()
        loop.db.dispose()


@pytest.fixture
def down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clock: FakeClock
) -> Iterator[watching.Watcher]:
    """A loop whose database refuses every connection, without jitter."""
    yield from _down_loop(monkeypatch, tmp_path, clock, jitter=0.0)


def test_a_database_that_stays_down_is_retried_after_1_2_4_s_up_to_5_minutes(
    down: watching.Watcher, clock: FakeClock
) -> None:
    waits = []
    for _ in range(11):
        down.tick()  # an attempt: it fails and backs off
        assert down.database_down
        waits.append(down._sleep_s())  # the loop sleeps until the backoff ends
        until = down.backoff_until
        clock.advance(waits[-1] - 0.001)
        down.tick()  # a millisecond before the end: no attempt, no new backoff
        assert down.backoff_until == until
        clock.advance_to(until)
    assert waits == pytest.approx([1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300])


def test_the_backoff_is_jittered_by_a_tenth_and_never_beyond_5_minutes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clock: FakeClock
) -> None:
    for loop in _down_loop(monkeypatch, tmp_path, clock, jitter=0.1):
        for _ in range(12):
            loop.tick()
            delay = loop.backoff_until - clock()  # give or take a rounding of the sum
            low, high = loop.backoff_s * 0.9, min(300.0, loop.backoff_s * 1.1)
            assert low - 1e-9 <= delay <= high + 1e-9
            clock.advance_to(loop.backoff_until)
        assert loop.backoff_s == 300.0


def test_the_sleep_between_ticks_is_never_shorter_than_50_ms(
    down: watching.Watcher, clock: FakeClock
) -> None:
    down.tick()
    clock.advance(0.99)
    assert down._sleep_s() == pytest.approx(0.05)  # 10 ms left: still a 50 ms nap, not a spin


# ---------------------------------------------------------------- circuits

M = circuits.ModelVersion("m", "1")


def _tripped(clock: FakeClock, *, retry_after_s: float | None = None) -> circuits.Breakers:
    breakers = circuits.Breakers(failure_threshold=1, clock=clock)
    breakers.failure(M, cooldown_s=30, retry_after_s=retry_after_s, why="server_error")
    return breakers


@pytest.mark.parametrize(
    ("retry_after_s", "open_s"), [(None, 30.0), (5.0, 5.0), (120.0, 120.0), (0.0, 0.0)]
)
def test_a_circuit_stays_open_for_the_cooldown_or_the_retry_after(
    clock: FakeClock, retry_after_s: float | None, open_s: float
) -> None:
    breakers = _tripped(clock, retry_after_s=retry_after_s)
    if open_s:
        clock.advance(open_s - 0.01)
        assert breakers.states() == {M: circuits.State.OPEN}
        assert breakers.blocked(M) == "circuit open for 0.0s (server_error, version 1)"
        assert not breakers.acquire(M)
        clock.advance(0.01)
    assert breakers.states() == {M: circuits.State.HALF_OPEN}
    assert breakers.blocked(M) is None
    assert breakers.acquire(M)  # the probe


def test_the_time_left_counts_down_with_the_clock(clock: FakeClock) -> None:
    breakers = _tripped(clock)
    assert breakers.blocked(M) == "circuit open for 30.0s (server_error, version 1)"
    clock.advance(17.5)
    assert breakers.blocked(M) == "circuit open for 12.5s (server_error, version 1)"


def test_half_open_lets_one_probe_through_however_long_it_takes(clock: FakeClock) -> None:
    breakers = _tripped(clock)
    clock.advance(30)
    assert breakers.acquire(M)
    clock.advance(3600)  # the probe is slow: nobody else gets through meanwhile
    assert not breakers.acquire(M)
    assert breakers.blocked(M) == "circuit half-open, a probe is in flight (version 1)"
    breakers.success(M)
    assert breakers.states() == {} and breakers.acquire(M)


def test_a_failed_probe_opens_the_circuit_for_a_whole_cooldown_from_then(
    clock: FakeClock,
) -> None:
    breakers = circuits.Breakers(failure_threshold=3, clock=clock)
    breakers.failure(M, cooldown_s=30, retry_after_s=10, why="rate_limit")  # a 429 trips
    clock.advance(20)  # ten seconds past the open period
    assert breakers.acquire(M)
    clock.advance(2)
    # the second failure only, under the threshold: the failed probe alone opens it again
    breakers.failure(M, cooldown_s=30, retry_after_s=None, why="timeout")
    assert breakers.states() == {M: circuits.State.OPEN}
    clock.advance(29.99)
    assert not breakers.acquire(M)
    clock.advance(0.01)
    assert breakers.acquire(M)


def test_a_real_clock_is_the_default() -> None:
    assert circuits.Breakers().clock is time.monotonic
