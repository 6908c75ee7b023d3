"""A streamed call once its model has sent a first delta: the deltas, and the attempt's
bookkeeping when the stream ends.

:meth:`RoutingEngine.open_stream` walks the chain until a model streams (failover
happens only there, before anything reaches the caller) and returns a
:class:`RoutedStream`; the gateway iterates it. The attempt's routing-log row,
metrics and circuit are written by the engine's own bookkeeping
(``note_success``, ``note_failure``, ``record``) when the stream ends.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from reconciler.base import errors
from reconciler.manifests import kinds as manifests
from reconciler.providers.base import (
    ChatResponse,
    Delta,
    FailureKind,
    ProviderError,
    StreamEnd,
    cost_of,
)
from reconciler.routing import circuits, ranking
from reconciler.routing.attempts import (
    CANCELLED,
    AttemptOutcome,
    AttemptReport,
    after_failover,
)

if TYPE_CHECKING:
    from reconciler.routing.engine import RoutingEngine


class StreamBroken(errors.TemporaryError):
    """The model that was streaming failed after its first delta reached the caller:
    no failover is possible any more (the caller has part of an answer)."""

    def __init__(self, model_id: str, error: ProviderError) -> None:
        super().__init__(f"{model_id} failed mid-stream: {error}")
        self.model_id = model_id
        self.error = error


@dataclasses.dataclass(frozen=True, slots=True)
class StreamAttempt:
    """The attempt a :class:`RoutedStream` carries on: what its log row needs."""

    request_id: str
    request: ranking.TaskRequest
    decision: ranking.RoutingDecision
    key: circuits.ModelVersion
    number: int
    model: manifests.AIModel
    started: float
    failover: manifests.Failover


class RoutedStream:
    """A streamed call whose model has sent its first delta: iterate it for the deltas
    (the first included). The attempt's routing-log row, metrics and circuit are written
    when the stream ends: a success at its :class:`StreamEnd` (tokens and cost from it),
    a failure as :class:`StreamBroken`, and ``cancelled`` when the caller stops
    iterating (:meth:`aclose`), which closes the upstream connection at once."""

    def __init__(
        self,
        engine: RoutingEngine,
        attempt: StreamAttempt,
        attempts: list[AttemptReport],
        first: Delta,
        rest: AsyncGenerator[Delta, None],
    ) -> None:
        self._engine = engine
        self._attempt = attempt
        self._first: Delta | None = first
        self._rest = rest
        self._ended = False
        self.attempts = attempts  # the failed ones before it; its own is added at the end
        self.request_id = attempt.request_id
        self.model_id = attempt.key.model_id
        self.version = attempt.key.version
        self.model = attempt.model
        self.decision = after_failover(attempt.decision, self.model_id, attempts)
        self.end: StreamEnd | None = None
        self.cost_usd: float | None = None

    @property
    def tried(self) -> int:
        """How many models were called, this one included."""
        return self._attempt.number

    def __aiter__(self) -> RoutedStream:
        return self

    async def __anext__(self) -> Delta:
        first = self._first
        if first is not None:
            self._first = None
            self._check_end(first)
            return first
        if self._ended:
            raise StopAsyncIteration
        try:
            delta = await anext(self._rest)
        except StopAsyncIteration:  # an adapter that ended without its StreamEnd: a bug
            early = ProviderError(
                FailureKind.BAD_RESPONSE, f"{self.model_id}: the stream ended without its end"
            )
            self._finish(early)
            raise StreamBroken(self.model_id, early) from None
        except ProviderError as exc:
            self._finish(exc)
            raise StreamBroken(self.model_id, exc) from None
        except BaseException:
            await self.aclose()
            raise
        self._check_end(delta)
        return delta

    def _check_end(self, delta: Delta) -> None:
        if isinstance(delta, StreamEnd):
            self.end = delta
            self._finish(None)

    async def aclose(self) -> None:
        """Stop early (the caller went away): close the upstream call, log ``cancelled``."""
        if not self._ended:
            self._finish(CANCELLED)
        await self._rest.aclose()

    def _finish(self, error: ProviderError | None) -> None:
        if self._ended:
            return
        self._ended = True
        attempt, engine = self._attempt, self._engine
        key = attempt.key
        latency = (time.perf_counter() - attempt.started) * 1000
        response = None
        if error is None:
            end = self.end
            assert end is not None
            self.cost_usd = cost_of(attempt.model, end.input_tokens, end.output_tokens)
            response = ChatResponse(
                model_id=self.model_id,
                provider_model=attempt.model.payload.provider_model or "",
                text="",
                input_tokens=end.input_tokens,
                output_tokens=end.output_tokens,
                cost_usd=self.cost_usd,
                latency_ms=latency,
                counted=end.counted,
                finish_reason=end.finish_reason,
            )
            engine.note_success(key)
            outcome: AttemptOutcome | FailureKind = AttemptOutcome.SUCCESS
        elif error is CANCELLED:
            engine.breakers.release(key)
            outcome = FailureKind.CLIENT_ERROR
        else:
            engine.note_failure(key, error, attempt.failover)
            outcome = error.kind
        self.attempts.append(
            AttemptReport(
                self.model_id, outcome, latency, None if error is None else str(error), key.version
            )
        )
        engine.record(
            attempt.request_id,
            attempt.request,
            self.decision,
            key,
            attempt.number,
            latency,
            error,
            response,
        )
