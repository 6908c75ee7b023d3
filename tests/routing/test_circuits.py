"""The circuit breaker state machine with a controlled clock."""

from __future__ import annotations

from reconciler.routing import circuits
from tests.clocks import FakeClock

M = circuits.ModelVersion("m", "1")


def test_opens_after_the_threshold_and_half_opens_for_one_probe() -> None:
    clock = FakeClock(100.0)
    breakers = circuits.Breakers(failure_threshold=3, clock=clock)
    for _ in range(2):
        assert breakers.acquire(M)
        breakers.failure(M, cooldown_s=30, retry_after_s=None, why="server_error")
    assert breakers.blocked(M) is None  # two failures: still closed
    breakers.failure(M, cooldown_s=30, retry_after_s=None, why="server_error")
    assert breakers.blocked(M) == "circuit open for 30.0s (server_error, version 1)"
    assert not breakers.acquire(M)
    clock.advance(30)
    assert breakers.states() == {M: circuits.State.HALF_OPEN}
    assert breakers.acquire(M)  # the probe
    assert not breakers.acquire(M)  # only one
    assert breakers.blocked(M) == "circuit half-open, a probe is in flight (version 1)"
    breakers.success(M)
    assert breakers.acquire(M) and breakers.blocked(M) is None


def test_a_failed_probe_opens_again_and_retry_after_sets_the_time() -> None:
    clock = FakeClock(100.0)
    breakers = circuits.Breakers(failure_threshold=3, clock=clock)
    breakers.failure(M, cooldown_s=30, retry_after_s=7, why="rate_limit")  # a 429 trips at once
    assert breakers.blocked(M) == "circuit open for 7.0s (rate_limit, version 1)"
    clock.advance(7)
    assert breakers.acquire(M)
    breakers.failure(M, cooldown_s=30, retry_after_s=None, why="timeout")
    assert breakers.blocked(M) == "circuit open for 30.0s (timeout, version 1)"


def test_a_released_probe_lets_another_caller_probe() -> None:
    clock = FakeClock(100.0)
    breakers = circuits.Breakers(failure_threshold=1, clock=clock)
    breakers.failure(M, cooldown_s=1, retry_after_s=None, why="x")
    clock.advance(1)
    assert breakers.acquire(M)
    breakers.release(M)
    assert breakers.acquire(M)


def test_a_success_forgets_the_circuit_and_says_whether_there_was_one() -> None:
    """The router writes the circuit gauge only when success reports a circuit, so a
    healthy model costs no gauge write per call; failures start counting afresh."""
    breakers = circuits.Breakers(failure_threshold=3, clock=FakeClock(100.0))
    assert breakers.success(M) is False  # never failed: nothing to close
    breakers.failure(M, cooldown_s=30, retry_after_s=None, why="timeout")
    breakers.failure(M, cooldown_s=30, retry_after_s=None, why="timeout")
    assert breakers.success(M) is True
    assert breakers.states() == {}
    assert breakers.success(M) is False
    for _ in range(2):  # the two earlier failures no longer count toward the threshold
        breakers.failure(M, cooldown_s=30, retry_after_s=None, why="timeout")
    assert breakers.blocked(M) is None
