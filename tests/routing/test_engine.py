"""The routing engine: the brief's checks, every strategy, chains, degraded modes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.base import settings
from reconciler.manifests.kinds import CapabilityType
from reconciler.routing import circuits, ranking
from reconciler.routing import engine as routing
from tests.clocks import FakeClock
from tests.routing.conftest import ask, model_doc, rule_doc, snapshot_of
from tests.routing.fakes import FakeProvider

M = circuits.ModelVersion("m", "1")

Engine = Callable[..., routing.RoutingEngine]


def test_a_reasoning_task_routes_with_a_priority_match_reason(engine_for: Engine) -> None:
    engine = engine_for(
        model_doc("strong", priority=90, capabilities={"reasoning": 0.95}),
        model_doc("weak", priority=50, capabilities={"reasoning": 0.85}),
        rule_doc("complex-analysis", minScore=0.8),
    )
    request = routing.TaskRequest(
        task_type="complex-analysis", required_capability=CapabilityType.REASONING, prompt="why?"
    )
    result = routing.run(engine, engine.route_request(request))
    assert result.model_id == "strong"
    assert "priority match" in result.routing_decision.reason
    decision = engine.get_routing_decision(request)
    assert decision.chain == ("strong", "weak")
    assert decision.reason == (
        "priority match: strong for rule complex-analysis "
        "(highest priority 90, capability score 0.95)"
    )


def test_after_the_primary_fails_the_fallback_answers(
    fake: Callable[[str], FakeProvider], engine_for: Engine
) -> None:
    primary_server = fake("openai")
    fallback_server = fake("gemini", reply="fallback here")
    engine = engine_for(
        model_doc("primary-model", primary_server, priority=90, fallbacks=["fallback-model"]),
        model_doc("fallback-model", fallback_server, priority=10),
        rule_doc("think"),
    )
    primary_server.behaviour = "status:503"  # simulateModelFailure('primary-model')
    result = ask(engine)
    assert result.model_id != "primary-model"
    assert result.model_id == "fallback-model"
    response = routing.run(
        engine, engine.execute_with_failover(routing.TaskRequest(task_type="think", prompt="x"))
    )
    assert response.text == "fallback here"


def test_capabilities_can_be_asked_for_directly(engine_for: Engine) -> None:
    engine = engine_for(
        model_doc("writer", capabilities={"creativity": 0.9}, priority=10),
        model_doc("thinker", capabilities={"reasoning": 0.9}, priority=99),
    )
    decision = engine.get_routing_decision(
        routing.TaskRequest(capabilities=(CapabilityType.CREATIVITY,))
    )
    assert decision.model_id == "writer"
    assert decision.rule_id is None
    excluded = {c.model_id: c.reason for c in decision.candidates if not c.eligible}
    assert excluded == {"thinker": "lacks creativity"}
    with pytest.raises(ranking.NoRoute):
        engine.get_routing_decision(routing.TaskRequest())
    with pytest.raises(ranking.NoRoute, match="no enabled routing rule has taskType 'nope'"):
        engine.get_routing_decision(routing.TaskRequest(task_type="nope"))


def test_every_candidate_is_reported_with_why(engine_for: Engine) -> None:
    engine = engine_for(
        model_doc("a", priority=90),
        model_doc("b", priority=80, state="disabled"),
        model_doc("c", priority=70, capabilities={"reasoning": 0.5}),
        model_doc("d", priority=60, capabilities={"speed": 1.0}),
        model_doc("e", priority=50, contextWindow=1000),
        rule_doc("think", minScore=0.8, constraints={"minContextWindow": 5000}),
    )
    decision = engine.get_routing_decision(routing.TaskRequest(task_type="think"))
    reasons = {c.model_id: c.reason for c in decision.candidates}
    assert reasons == {
        "b": "state disabled",
        "c": "reasoning 0.5 below minScore 0.8",
        "d": "lacks reasoning",
        "e": "contextWindow 1000 < 5000",
        "a": "contextWindow unknown",
    }
    assert decision.model_id is None
    with pytest.raises(routing.NoEligibleModel, match="no eligible model"):
        ask(engine)


def test_cost_strategy_picks_the_cheapest(engine_for: Engine) -> None:
    def priced(ident: str, price: float) -> dict[str, object]:
        return model_doc(ident, pricing={"inputPerMTok": price, "outputPerMTok": price})

    engine = engine_for(
        priced("dear", 10), priced("cheap", 1), priced("mid", 5), rule_doc("think", strategy="cost")
    )
    decision = engine.get_routing_decision(routing.TaskRequest(task_type="think"))
    assert decision.chain == ("cheap", "mid", "dear")
    assert decision.reason.startswith("cost match: cheap")


def test_latency_strategy_uses_observed_p95_then_declared_timeouts(engine_for: Engine) -> None:
    engine = engine_for(
        model_doc("slow", timeoutMs=9000),
        model_doc("fast", timeoutMs=1000),
        model_doc("seen", timeoutMs=5000),
        rule_doc("think", strategy="latency"),
    )
    request = routing.TaskRequest(task_type="think")
    assert engine.get_routing_decision(request).chain == ("fast", "seen", "slow")
    for _ in range(20):
        engine.stats.add(engine.live_version("seen"), 40.0)
    decision = engine.get_routing_decision(request)
    assert decision.chain == ("seen", "fast", "slow")
    assert "observed p95 40 ms" in decision.reason


def test_balanced_strategy_weighs_capability_latency_and_cost(engine_for: Engine) -> None:
    engine = engine_for(
        model_doc(
            "smart-dear",
            capabilities={"reasoning": 1.0},
            pricing={"inputPerMTok": 10, "outputPerMTok": 10},
        ),
        model_doc(
            "ok-cheap",
            capabilities={"reasoning": 0.8},
            pricing={"inputPerMTok": 1, "outputPerMTok": 1},
        ),
        rule_doc(
            "by-capability",
            strategy="balanced",
            weights={"capability": 1.0, "latency": 0.0, "cost": 0.0},
        ),
        rule_doc(
            "by-cost",
            taskType="by-cost",
            strategy="balanced",
            weights={"capability": 0.0, "latency": 0.0, "cost": 1.0},
        ),
    )
    assert (
        engine.get_routing_decision(routing.TaskRequest(task_type="by-capability")).model_id
        == "smart-dear"
    )
    assert (
        engine.get_routing_decision(routing.TaskRequest(task_type="by-cost")).model_id == "ok-cheap"
    )


def test_an_explicit_chain_is_honoured_and_fallbacks_follow_the_primary(engine_for: Engine) -> None:
    engine = engine_for(
        model_doc("a", priority=1, fallbacks=["c"]),
        model_doc("b", priority=99),
        model_doc("c", priority=50),
        rule_doc("chained", chain=["a", "b", "c"]),
        rule_doc("free", taskType="free"),
    )
    assert engine.get_routing_decision(routing.TaskRequest(task_type="chained")).chain == (
        "a",
        "c",
        "b",
    )
    assert engine.get_routing_decision(routing.TaskRequest(task_type="free")).chain == (
        "b",
        "c",
        "a",
    )


def test_a_model_past_its_sunset_is_not_routed_to(engine_for: Engine) -> None:
    engine = engine_for(
        model_doc("old", priority=99, lifecycle={"sunsetDate": "2020-01-01"}),
        model_doc("successor", priority=1),
        rule_doc("think"),
    )
    decision = engine.get_routing_decision(routing.TaskRequest(task_type="think"))
    assert decision.model_id == "successor"
    assert {c.model_id: c.reason for c in decision.candidates}["old"].startswith("past its sunset")


def test_max_attempts_bounds_the_walk(
    fake: Callable[[str], FakeProvider], engine_for: Engine
) -> None:
    servers = [fake("openai") for _ in range(3)]
    for server in servers:
        server.behaviour = "status:500"
    docs = [model_doc(f"m{i}", s, priority=90 - i) for i, s in enumerate(servers)]
    engine = engine_for(*docs, rule_doc("think", failover={"maxAttempts": 2, "cooldownS": 30}))
    with pytest.raises(routing.RoutingFailed):
        ask(engine)
    assert [s.calls for s in servers] == [1, 1, 0]


def test_failover_only_on_the_kinds_the_rule_names(
    fake: Callable[[str], FakeProvider], engine_for: Engine
) -> None:
    primary, other = fake("openai"), fake("openai")
    primary.behaviour = "status:503"
    engine = engine_for(
        model_doc("p", primary, priority=90),
        model_doc("o", other, priority=10),
        rule_doc("think", failover={"on": ["timeout"]}),
    )
    with pytest.raises(routing.RoutingFailed, match="does not fail over on server_error"):
        ask(engine)
    assert other.calls == 0


def test_the_override_variable_forces_one_model(
    engine_for: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(routing.OVERRIDE_VARIABLE, "b")
    engine = engine_for(model_doc("a", priority=99), model_doc("b", priority=1), rule_doc("think"))
    decision = engine.get_routing_decision(routing.TaskRequest(task_type="think"))
    assert (decision.chain, decision.reason) == (("b",), "override: ROUTING_OVERRIDE_MODEL=b")
    assert engine.health() == ("degraded", ["ROUTING_OVERRIDE_MODEL forces b"])


def test_a_router_error_falls_back_to_round_robin_and_is_logged(
    engine_for: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_for(model_doc("a"), model_doc("b"), rule_doc("think"))
    table = engine.table()

    def broken(*_: object, **__: object) -> object:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(table, "decide", broken)
    first = engine.get_routing_decision(routing.TaskRequest(task_type="think"))
    second = engine.get_routing_decision(routing.TaskRequest(task_type="think"))
    assert first.strategy == "round-robin" and first.degraded
    assert first.reason == "round-robin fallback: ZeroDivisionError in the router"
    assert {first.model_id, second.model_id} == {"a", "b"}
    assert any(r.getMessage() == "router-error" for r in caplog.records)
    assert ask(engine).model_id in {"a", "b"}


def test_decisions_do_no_io(engine_for: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_for(model_doc("a"), rule_doc("think"))
    engine.get_routing_decision(routing.TaskRequest(task_type="think"))

    def no_io(*_: object, **__: object) -> None:
        raise AssertionError("I/O during a decision")

    monkeypatch.setattr("socket.socket.connect", no_io)
    monkeypatch.setattr("builtins.open", no_io)
    for _ in range(100):
        assert engine.get_routing_decision(routing.TaskRequest(task_type="think")).model_id == "a"


def test_the_table_is_rebuilt_only_when_the_snapshot_changes(engine_for: Engine) -> None:
    engine = engine_for(model_doc("a"), rule_doc("think"))
    table = engine.table()
    assert engine.table() is table
    engine.use_snapshot(snapshot_of(model_doc("b"), rule_doc("think"), serial=2))
    assert engine.table() is not table
    assert engine.get_routing_decision(routing.TaskRequest(task_type="think")).model_id == "b"


def test_an_unreachable_registry_serves_the_snapshot_saved_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.routing import snapshots
    from reconciler.store.engine import Database

    monkeypatch.setenv("GROVE_DATA_DIR", str(tmp_path))
    saved = snapshot_of(model_doc("cached"), rule_doc("think"), serial=7)
    snapshots.save(saved, tmp_path / "snapshot.json")
    dead = Database("postgresql+psycopg://postgres@127.0.0.1:9/nowhere")
    engine = routing.RoutingEngine(settings.load(), dead, write_logs=False)
    try:
        assert engine.refresh() is False
        status, reasons = engine.health()
        assert status == "degraded"
        assert reasons[0].startswith("registry not usable, serving the last snapshot")
        assert reasons[1] == "loaded the snapshot saved at serial 7"
        decision = engine.get_routing_decision(routing.TaskRequest(task_type="think"))
        assert decision.model_id == "cached"
        assert decision.degraded
        assert json.loads((tmp_path / "snapshot.json").read_text())["serial"] == 7
    finally:
        engine.close()


def test_an_extra_capability_narrows_a_rule_and_never_loosens_it(engine_for: Engine) -> None:
    engine = engine_for(
        model_doc("strong", priority=10, capabilities={"reasoning": 0.95, "context": 0.9}),
        model_doc("weak", priority=99, capabilities={"reasoning": 0.6, "context": 0.9}),
        rule_doc("think", minScore=0.8),
    )
    request = routing.TaskRequest(task_type="think", capabilities=(CapabilityType.CONTEXT,))
    decision = engine.get_routing_decision(request)
    assert decision.chain == ("strong",)
    assert decision.rule_id == "think"
    assert {c.model_id: c.reason for c in decision.candidates}["weak"] == (
        "reasoning 0.6 below minScore 0.8"
    )


def test_failed_attempts_do_not_make_a_model_look_fast(
    fake: Callable[[str], FakeProvider], engine_for: Engine
) -> None:
    broken = fake("openai")
    broken.behaviour = "status:500"
    engine = engine_for(
        model_doc("broken", broken, priority=90),
        model_doc("ok", priority=1),
        rule_doc("think", strategy="latency"),
    )
    ask(engine)
    assert engine.stats.p95(engine.live_version("broken")) is None
    assert engine.stats.p95(engine.live_version("ok")) is not None


def test_observed_latency_ages_out() -> None:
    clock = FakeClock()
    stats = routing.LatencyStats(window_s=60, clock=clock)
    stats.add(M, 500.0)
    assert stats.p95(M) == 500.0
    clock.advance(120)
    assert stats.p95(M) is None


def test_only_the_samples_inside_the_window_make_the_p95() -> None:
    """Old samples age out together with their times: after the window passes the slow
    ones, the p95 is of the fast ones alone, recomputed as new samples come."""
    clock = FakeClock()
    stats = routing.LatencyStats(window_s=60, clock=clock)
    for value in range(1, 101):  # 1..100 ms, slow ones last
        stats.add(M, float(value) * 10)
    clock.advance(2)  # a p95 older than a second is computed again when read
    assert stats.p95(M) == 950.0  # nearest rank of 100 samples: the 95th
    clock.advance(28)
    for value in range(1, 33):  # 32 fast samples: two recomputations
        stats.add(M, float(value))
    clock.advance(45)  # the first hundred are 75 s old, the fast ones 45 s
    assert stats.p95(M) == 30.0  # round(0.95 * 31) = 29: the 30th of 1..32
    clock.advance(60)
    assert stats.p95(M) is None


def test_a_404_fails_over_as_a_misconfigured_model(
    fake: Callable[[str], FakeProvider], engine_for: Engine
) -> None:
    primary, fallback = fake("openai"), fake("gemini", reply="fine")
    primary.behaviour = "status:404"
    engine = engine_for(
        model_doc("p", primary, priority=90),
        model_doc("f", fallback, priority=1),
        rule_doc("think"),
    )
    result = ask(engine)
    assert result.model_id == "f"
    assert result.attempts[0].outcome == "configuration"
    assert result.routing_decision.model_id == "f"
    assert result.routing_decision.reason.startswith("failover from p: configuration; priority")


def test_a_misspelled_override_is_ignored_and_reported(
    engine_for: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(routing.OVERRIDE_VARIABLE, "nope")
    engine = engine_for(model_doc("a", priority=99), model_doc("b", priority=1), rule_doc("think"))
    decision = engine.get_routing_decision(routing.TaskRequest(task_type="think"))
    assert decision.strategy == "priority" and decision.model_id == "a"
    ignored = (
        "ROUTING_OVERRIDE_MODEL=nope is ignored: no model nope in the registry; routing normally"
    )
    assert decision.reason.endswith(f"; {ignored}")
    assert engine.health()[1] == [ignored]


def test_any_request_id_is_logged(tmp_path: Path) -> None:
    import datetime as dt

    from reconciler.store import migrating, routing_logs
    from reconciler.store.engine import Database

    db = Database(f"sqlite:///{tmp_path}/r.db")
    migrating.upgrade(db)
    row = routing_logs.Attempt(
        "my-trace-42",
        "m",
        "t",
        "reasoning",
        5.0,
        True,
        1,
        None,
        1,
        1,
        0.0,
        {},
        dt.datetime.now(dt.UTC),
    )
    with db.transaction(write=True) as connection:
        routing_logs.write_batch(connection, [row, row])
    with db.transaction() as connection:
        assert len(routing_logs.recent(connection)) == 2
    db.dispose()


def test_opening_an_unmigrated_registry_says_what_to_run(tmp_path: Path) -> None:
    from reconciler.base import errors

    with pytest.raises(errors.DatabaseNotReady, match="run `grove db upgrade`"):
        routing.RoutingEngine.open(db=f"sqlite:///{tmp_path}/empty.db")
