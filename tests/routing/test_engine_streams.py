"""The router's streamed call (``RoutingEngine.open_stream``) against real fake providers:
failover only before the first delta, the attempt's bookkeeping when the stream ends
(success, a failure mid-stream, a caller that stops), circuits, and canaries."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.providers.base import ChatRequest, StreamEnd, TextDelta
from reconciler.routing import circuits, snapshots
from reconciler.routing import engine as routing
from tests.routing.conftest import model_doc, rule_doc, snapshot_of
from tests.routing.fakes import FakeProvider

Engine = Callable[..., routing.RoutingEngine]
CHAT = ChatRequest.of("hello", max_tokens=50)


async def _collect(stream: routing.RoutedStream) -> list[Any]:
    out = []
    try:
        async for delta in stream:
            out.append(delta)
    finally:
        await stream.aclose()
    return out


def _run(engine: routing.RoutingEngine, task: str = "think", **request: Any) -> Any:
    async def main() -> Any:
        stream = await engine.open_stream(routing.TaskRequest(task_type=task, **request), CHAT)
        return stream, await _collect(stream)

    return routing.run(engine, main())


def test_a_stream_fails_over_before_its_first_delta_and_counts_both_attempts(
    fake: Callable[..., FakeProvider], engine_for: Engine
) -> None:
    broken, steady = fake("openai"), fake("anthropic", reply="steady words here")
    broken.behaviour = "status:500"
    engine = engine_for(
        model_doc("broken", broken, priority=90, fallbacks=["steady"]),
        model_doc("steady", steady, priority=10),
        rule_doc("think"),
    )
    stream, deltas = _run(engine)
    assert stream.model_id == "steady" and stream.tried == 2
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == "steady words here"
    end = deltas[-1]
    assert isinstance(end, StreamEnd) and (end.input_tokens, end.output_tokens) == (12, 5)
    assert [(a.model_id, str(a.outcome)) for a in stream.attempts] == [
        ("broken", "server_error"),
        ("steady", "success"),
    ]
    assert "failover from broken: server_error" in stream.decision.reason
    assert stream.cost_usd == pytest.approx((12 * 1.0 + 5 * 2.0) / 1_000_000)


def test_a_failure_after_the_first_delta_ends_the_stream_and_counts_against_the_circuit(
    fake: Callable[..., FakeProvider], engine_for: Engine
) -> None:
    dying, backup = fake("openai", reply="one two three four"), fake("gemini")
    dying.behaviour = "die-after:1"
    engine = engine_for(
        model_doc("dying", dying, priority=90, fallbacks=["backup"]),
        model_doc("backup", backup, priority=10),
        rule_doc("think"),
    )
    for _ in range(3):  # the default threshold opens the circuit after three failures
        with pytest.raises(routing.StreamBroken) as broke:
            _run(engine)
        assert broke.value.model_id == "dying"
        assert broke.value.error.kind.value == "connection_error"
    assert backup.calls == 0  # nothing spliced in from another model
    assert engine.breakers.blocked(circuits.ModelVersion("dying", "1")) is not None
    stream, _ = _run(engine)  # the open circuit leaves it out: the backup serves at once
    assert stream.model_id == "backup"
    assert [str(a.outcome) for a in stream.attempts] == ["success"]
    assert dying.calls == 3


def test_a_caller_that_stops_closes_the_upstream_at_once_and_frees_the_probe(
    fake: Callable[..., FakeProvider], engine_for: Engine
) -> None:
    stalled = fake("anthropic", reply="a b c d")
    stalled.behaviour = "stall-after:1"
    engine = engine_for(model_doc("stalled", stalled), rule_doc("think"))

    async def main() -> float:
        stream = await engine.open_stream(routing.TaskRequest(task_type="think"), CHAT)
        await anext(stream)
        left = time.monotonic()
        await stream.aclose()
        assert str(stream.attempts[-1].outcome) == "client_error"
        assert "disconnected" in (stream.attempts[-1].message or "")
        return left

    left = routing.run(engine, main())
    deadline = time.monotonic() + 2
    while not stalled.closed_at and time.monotonic() < deadline:
        time.sleep(0.005)
    assert stalled.closed_at and stalled.closed_at[0] - left < 0.1
    assert engine.breakers.blocked(circuits.ModelVersion("stalled", "1")) is None


def test_a_task_cancelled_mid_stream_is_a_caller_leaving(
    fake: Callable[..., FakeProvider], engine_for: Engine
) -> None:
    stalled = fake("openai", reply="a b c d")
    stalled.behaviour = "stall-after:1"
    engine = engine_for(model_doc("stalled", stalled), rule_doc("think"))

    async def main() -> routing.RoutedStream:
        stream = await engine.open_stream(routing.TaskRequest(task_type="think"), CHAT)
        await anext(stream)
        reader = asyncio.ensure_future(_collect(stream))
        await asyncio.sleep(0.05)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        return stream

    stream = routing.run(engine, main())
    assert str(stream.attempts[-1].outcome) == "client_error"


def test_the_idle_deadline_ends_a_stalled_stream(
    fake: Callable[..., FakeProvider], engine_for: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROVE_STREAM_IDLE_S", "0.3")
    stalled = fake("gemini", reply="a b c d")
    stalled.behaviour = "stall-after:1"
    engine = engine_for(model_doc("stalled", stalled, timeoutMs=20_000), rule_doc("think"))
    started = time.monotonic()
    with pytest.raises(routing.StreamBroken) as broke:
        _run(engine)
    assert broke.value.error.kind.value == "timeout"
    assert "no chunk within 0.3s" in str(broke.value)
    assert time.monotonic() - started < 5


def test_a_canary_takes_its_share_of_streamed_calls(
    fake: Callable[..., FakeProvider], engine_for: Engine
) -> None:
    stable_server = fake("openai", reply="stable")
    canary_server = fake("openai", reply="canary")
    canary = model_doc("m", canary_server)
    canary["meta"]["version"] = "2"
    stable = model_doc("m", stable_server)
    engine = engine_for(canary, rule_doc("think"))
    parsed = snapshot_of(canary, rule_doc("think"))
    held = snapshot_of(stable).models["m"]
    engine.use_snapshot(
        dataclasses.replace(parsed, canaries={"m": snapshots.Canary(held, 50)}, serial=2)
    )
    versions = [_run(engine, request_id=f"r{i}")[0].version for i in range(40)]
    assert set(versions) == {"1", "2"}
    again = [_run(engine, request_id=f"r{i}")[0].version for i in range(40)]
    assert again == versions  # the same request id, the same version
    assert canary_server.calls == versions.count("2") * 2
