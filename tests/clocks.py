"""A fake monotonic clock for code that takes ``clock: Callable[[], float]``: the reconcile
loop (``gitops.watching.Watcher``), the circuit breakers (``routing.circuits.Breakers``) and the
latency windows (``routing.latency.LatencyStats``).
A test advances it past a backoff or an open circuit instead of sleeping."""

from __future__ import annotations


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []  # what :meth:`sleep` was asked to wait

    async def sleep(self, seconds: float) -> None:
        """An ``asyncio.sleep`` that returns at once, the clock advanced by ``seconds``."""
        self.slept.append(seconds)
        self.advance(seconds)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "a monotonic clock does not go back"
        self.now += seconds

    def advance_to(self, deadline: float) -> None:
        """To ``deadline`` (a value the clock gave plus a delay), if it is ahead."""
        self.now = max(self.now, deadline)
