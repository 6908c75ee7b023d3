"""The circuit breaker state machine with a controlled clock."""

from __future__ import annotations

from reconciler import circuits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_the_threshold_and_half_opens_for_one_probe() -> None:
    clock = Clock()
    breakers = circuits.Breakers(failure_threshold=3, clock=clock)
    for _ in range(2):
        assert breakers.acquire("m")
        breakers.failure("m", cooldown_s=30, retry_after_s=None, why="server_error")
    assert breakers.blocked("m") is None  # two failures: still closed
    breakers.failure("m", cooldown_s=30, retry_after_s=None, why="server_error")
    assert breakers.blocked("m") == "circuit open for 30.0s (server_error)"
    assert not breakers.acquire("m")
    clock.now += 30
    assert breakers.states() == {"m": circuits.State.HALF_OPEN}
    assert breakers.acquire("m")  # the probe
    assert not breakers.acquire("m")  # only one
    assert breakers.blocked("m") == "circuit half-open, a probe is in flight"
    breakers.success("m")
    assert breakers.acquire("m") and breakers.blocked("m") is None


def test_a_failed_probe_opens_again_and_retry_after_sets_the_time() -> None:
    clock = Clock()
    breakers = circuits.Breakers(failure_threshold=3, clock=clock)
    breakers.failure("m", cooldown_s=30, retry_after_s=7, why="rate_limit")  # a 429 trips at once
    assert breakers.blocked("m") == "circuit open for 7.0s (rate_limit)"
    clock.now += 7
    assert breakers.acquire("m")
    breakers.failure("m", cooldown_s=30, retry_after_s=None, why="timeout")
    assert breakers.blocked("m") == "circuit open for 30.0s (timeout)"


def test_a_released_probe_lets_another_caller_probe() -> None:
    clock = Clock()
    breakers = circuits.Breakers(failure_threshold=1, clock=clock)
    breakers.failure("m", cooldown_s=1, retry_after_s=None, why="x")
    clock.now += 1
    assert breakers.acquire("m")
    breakers.release("m")
    assert breakers.acquire("m")


def test_a_success_forgets_the_circuit_and_says_whether_there_was_one() -> None:
    """The router writes the circuit gauge only when success reports a circuit, so a
    healthy model costs no gauge write per call; failures start counting afresh."""
    breakers = circuits.Breakers(failure_threshold=3, clock=Clock())
    assert breakers.success("m") is False  # never failed: nothing to close
    breakers.failure("m", cooldown_s=30, retry_after_s=None, why="timeout")
    breakers.failure("m", cooldown_s=30, retry_after_s=None, why="timeout")
    assert breakers.success("m") is True
    assert breakers.states() == {}
    assert breakers.success("m") is False
    for _ in range(2):  # the two earlier failures no longer count toward the threshold
        breakers.failure("m", cooldown_s=30, retry_after_s=None, why="timeout")
    assert breakers.blocked("m") is None
