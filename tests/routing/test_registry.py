"""The router on a reconciled registry (SQLite and PostgreSQL): logs, metrics, load, leaks."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import pytest

from reconciler.base import settings
from reconciler.routing import analysis
from reconciler.routing import engine as routing
from tests.conftest import Registry
from tests.routing.conftest import commit_documents, model_doc, rule_doc
from tests.routing.fakes import FakeProvider

CANARY = "sk-canary-4f1d2a9c8b7e6d5c4b3a2f1e0d9c8b7a"


@pytest.mark.slow
def test_metrics_of_a_model_that_served_calls(
    registry: Registry, fake: Callable[[str], FakeProvider], local_endpoints: None
) -> None:
    server = fake("openai")
    server.behaviour = "flaky"
    server.delay_s = 0.005  # latencies are kept in whole milliseconds; loopback answers in less
    commit_documents(
        registry,
        model_doc("test-model", server, priority=90),
        model_doc("backup", priority=10),
        rule_doc("think"),
    )
    engine = routing.RoutingEngine.open(settings=settings.load())
    try:

        async def calls() -> None:
            for _ in range(20):
                await engine.route_request(routing.TaskRequest(task_type="think", prompt="hi"))

        routing.run(engine, calls())
        engine.flush_logs()
        metrics = analysis.model_metrics(engine.db, "test-model", window_s=3600)  # type: ignore[arg-type]
        assert metrics.requests >= 10
        assert 0 < metrics.success_rate <= 1
        assert 0 < metrics.latency_p50_ms <= metrics.latency_p95_ms <= metrics.latency_p99_ms
        assert metrics.errors.get("server_error", 0) >= 1
        assert metrics.cost_usd > 0
        payload = metrics.to_json()
        assert payload["latency"]["p95"] >= payload["latency"]["p50"]
        assert payload["series"]
        rows = registry.sql("SELECT count(*) FROM routing_logs")[0][0]
        assert (
            rows
            == metrics.requests
            + analysis.model_metrics(
                engine.db,
                "backup",
                window_s=3600,  # type: ignore[arg-type]
            ).requests
        )
        # model_metrics sums up each flush per model: its attempts add up to the log's rows
        attempts = registry.sql(
            "SELECT sum(metric_value) FROM model_metrics WHERE metric_type = 'attempts'"
        )[0][0]
        assert int(attempts) == rows
        failures = registry.sql(
            "SELECT sum(metric_value) FROM model_metrics WHERE metric_type = 'failures'"
        )[0][0]
        assert (
            int(failures)
            == registry.sql("SELECT count(*) FROM routing_logs WHERE NOT success")[0][0]
        )
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.timeout(360)  # about a minute alone; several under coverage beside another worker
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the router, not the database
def test_ten_thousand_calls_with_one_dead_and_one_flaky_endpoint(
    registry: Registry,
    fake: Callable[[str], FakeProvider],
    local_endpoints: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead, flaky, healthy = fake("openai"), fake("anthropic"), fake("gemini")
    dead.behaviour = "status:503"
    flaky.behaviour = "flaky"
    commit_documents(
        registry,
        model_doc("dead", dead, priority=90),
        model_doc("flaky", flaky, priority=80),
        model_doc("healthy", healthy, priority=70),
        rule_doc("think", failover={"maxAttempts": 3, "cooldownS": 600}),
    )
    engine = routing.RoutingEngine.open(settings=settings.load())
    concurrency = 20
    outcomes: dict[str, int] = {"ok": 0, "failed": 0}

    async def worker(count: int) -> None:
        for _ in range(count):
            try:
                await engine.route_request(routing.TaskRequest(task_type="think", prompt="x"))
                outcomes["ok"] += 1
            except routing.RoutingFailed:
                outcomes["failed"] += 1

    async def run_all() -> None:
        await asyncio.gather(*(worker(10_000 // concurrency) for _ in range(concurrency)))

    try:
        routing.run(engine, run_all())
        engine.flush_logs()
    finally:
        engine.close()
    total = outcomes["ok"] + outcomes["failed"]
    assert total == 10_000
    assert outcomes["ok"] / total >= 0.999
    # The dead endpoint gets calls until its circuit opens (3 failures, plus calls
    # already in flight), then none: the 600 s cooldown outlasts the test.
    assert dead.calls <= 3 + concurrency
    with capsys.disabled():
        print(
            f"\n10,000 calls: {outcomes['ok']} ok; dead endpoint saw {dead.calls} calls, "
            f"flaky {flaky.calls}, healthy {healthy.calls}"
        )


@pytest.mark.slow  # about two seconds: calls through failing providers, the log writer child
def test_a_canary_key_appears_in_no_log_row_error_or_decision(
    registry: Registry,
    fake: Callable[[str], FakeProvider],
    local_endpoints: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = fake("openai")
    monkeypatch.setenv("FAKE_OPENAI_KEY", CANARY)
    server.behaviour = "status:500"
    commit_documents(
        registry,
        model_doc("m", server, priority=90),
        model_doc("backup", priority=10),
        rule_doc("think"),
    )
    engine = routing.RoutingEngine.open(settings=settings.load())
    seen: list[str] = []
    try:
        for behaviour in ("status:500", "status:401", "html", "redirect", "ok"):
            server.behaviour = behaviour
            engine.breakers.success(engine.live_version("m"))
            try:
                result = routing.run(
                    engine, engine.route_request(routing.TaskRequest(task_type="think", prompt="p"))
                )
                seen.append(json.dumps(result.routing_decision.to_json()))
                seen += [json.dumps(a.to_json()) for a in result.attempts]
            except routing.RoutingFailed as exc:
                seen.append(str(exc))
                seen += [json.dumps(a.to_json()) for a in exc.attempts]
        engine.flush_logs()
    finally:
        engine.close()
    assert any(r["headers"].get("authorization") == f"Bearer {CANARY}" for r in server.requests)
    rows = registry.sql("SELECT * FROM routing_logs")
    assert rows
    dumped = json.dumps([[str(v) for v in row] for row in rows])
    everything = "\n".join([dumped, caplog.text, *seen])
    assert CANARY not in everything
    assert CANARY[:12] not in everything


def test_grove_route_shows_the_decision(
    registry: Registry, fake: Callable[[str], FakeProvider], local_endpoints: None
) -> None:
    commit_documents(
        registry,
        model_doc("a", priority=90),
        model_doc("b", priority=10, capabilities={"speed": 0.9}),
        rule_doc("think"),
    )
    text = registry.run("route", "--task", "think")
    assert text.code == 0, text.err
    assert "priority match: a for rule think" in text.out
    assert "b" in text.out and "lacks reasoning" in text.out
    as_json = json.loads(
        registry.run("route", "--capability", "speed", "--min-score", "0.85", "--json").out
    )
    assert as_json["modelId"] == "b"
    none = registry.run("route", "--capability", "context")
    assert none.code == 1
    assert "no eligible model" in none.out
    unknown = registry.run("route", "--task", "nope")
    assert unknown.code == 1
    assert "no enabled routing rule has taskType 'nope'" in unknown.err


@pytest.mark.slow
def test_a_new_engine_starts_from_the_latency_the_logs_observed(
    registry: Registry, fake: Callable[[str], FakeProvider], local_endpoints: None
) -> None:
    server = fake("openai")
    commit_documents(registry, model_doc("m", server), rule_doc("think", strategy="latency"))
    first = routing.RoutingEngine.open(settings=settings.load())
    try:

        async def calls() -> None:
            for _ in range(5):
                await first.route_request(routing.TaskRequest(task_type="think", prompt="x"))

        routing.run(first, calls())
        first.flush_logs()
    finally:
        first.close()
    second = routing.RoutingEngine.open(settings=settings.load())
    try:
        assert second.stats.p95(second.live_version("m")) is not None
        decision = second.get_routing_decision(routing.TaskRequest(task_type="think"))
        assert "fastest: observed p95" in decision.reason
    finally:
        second.close()
