"""Circuits and observed latencies belong to model versions (issue 14, DESIGN section 7).

After a revert the fixed version must not inherit the open circuit of the bad one:
a new or rolled-back version starts with a closed circuit and no latency history,
and the state of versions no snapshot holds any more is dropped (bounded however
many times a model is versioned).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import prometheus_client
import pytest

from reconciler.base import settings
from reconciler.routing import circuits, snapshots
from reconciler.routing import engine as routing
from tests.conftest import Registry
from tests.routing.conftest import ask, commit_documents, model_doc, rule_doc, snapshot_of
from tests.routing.fakes import FakeProvider

Engine = Callable[..., routing.RoutingEngine]
V1, V2 = circuits.ModelVersion("m", "1"), circuits.ModelVersion("m", "2")


def versioned(document: dict[str, Any], version: str) -> dict[str, Any]:
    return {**document, "meta": {**document["meta"], "version": version}}


def gauge(model_id: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value("grove_circuit_open", {"model": model_id})


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the router, not the database
@pytest.mark.parametrize(
    "how",
    [
        "git revert",
        "grove rollback",
        pytest.param("version 3", marks=pytest.mark.slow),
    ],
)
def test_after_a_rollback_the_next_call_finds_a_closed_circuit(
    registry: Registry, fake: Callable[[str], FakeProvider], local_endpoints: None, how: str
) -> None:
    """Version 2 of m points at a provider that fails until m's circuit opens; git then
    brings back version 1 (a real revert) or a fixed version 3, reconciled. The very
    next call is attempted on m, and version 2's circuit is gone."""
    good, bad = fake("openai"), fake("anthropic")
    bad.behaviour = "status:503"
    first = model_doc("m", good, priority=90)
    commit_documents(registry, first, model_doc("backup", priority=10), rule_doc("think"))
    engine = routing.RoutingEngine.open(settings=settings.load())
    try:
        commit_documents(registry, versioned(model_doc("m", bad, priority=90), "2"))
        engine.refresh()
        for _ in range(3):  # the failure threshold
            assert ask(engine).model_id == "backup"
        skipping = ask(engine)
        assert [a.model_id for a in skipping.attempts] == ["backup"]  # m costs no attempt
        assert bad.calls == 3
        during = engine.health(), gauge("m"), skipping.routing_decision.reason

        if how == "git revert":
            registry.fleet.git("revert", "--no-edit", "HEAD")
            assert registry.run("reconcile").code == 0
        elif how == "grove rollback":  # pushes to the fleet: let it update the work tree
            registry.fleet.git("config", "receive.denyCurrentBranch", "updateInstead")
            bad_commit = registry.fleet.head()
            rolled = registry.run("rollback", "m")
            assert rolled.code == 0, rolled.err
            assert f"a git revert of {bad_commit[:12]}" in rolled.out
            assert registry.fleet.git("rev-parse", "HEAD^") == bad_commit
        else:
            commit_documents(registry, versioned(first, "3"))
        engine.refresh()
        after = ask(engine)
        assert [(a.model_id, a.outcome) for a in after.attempts] == [("m", "success")]
        assert good.calls == 1 and bad.calls == 3

        live = engine.live_version("m")
        assert live == circuits.ModelVersion("m", "3" if how == "version 3" else "1")
        assert engine.breakers.states() == {}  # version 2's circuit is gone, not just closed
        assert engine.breakers.count() == 0
        assert engine.health() == ("healthy", [])
        assert gauge("m") == 0
    finally:
        engine.close()
    health, opened, reason = during
    assert health == ("degraded", ["circuits open: m (version 2)"])
    assert opened == 1
    assert reason.startswith("failover from m: circuit open for ")
    assert "(server_error, version 2)" in reason


def test_a_new_version_starts_without_the_latency_history_of_the_old_one(
    engine_for: Engine,
) -> None:
    """m's version 1 was seen slow; version 2 is judged by its declared timeout until
    it is observed, and version 1's samples are dropped."""
    docs = (
        model_doc("m", timeoutMs=1000),
        model_doc("other", timeoutMs=2000),
        rule_doc("think", strategy="latency"),
    )
    engine = engine_for(*docs)
    request = routing.TaskRequest(task_type="think")
    for _ in range(20):
        engine.stats.add(V1, 5000.0)
    assert engine.get_routing_decision(request).chain == ("other", "m")
    engine.use_snapshot(snapshot_of(versioned(docs[0], "2"), *docs[1:], serial=2))
    decision = engine.get_routing_decision(request)
    assert decision.chain == ("m", "other")
    assert "declared timeout 1000 ms (no observations yet)" in decision.reason
    assert engine.stats.p95(V1) is None
    assert engine.stats.count() == 0


def test_an_unchanged_version_keeps_its_circuit_across_snapshots(engine_for: Engine) -> None:
    """Another object's change (a new serial, the same version of m) is no reset."""
    docs = (model_doc("m"), model_doc("other", priority=10), rule_doc("think"))
    engine = engine_for(*docs)
    engine.breakers.failure(V1, cooldown_s=30, retry_after_s=5, why="rate_limit")
    engine.use_snapshot(snapshot_of(*docs[:1], versioned(docs[1], "2"), docs[2], serial=2))
    assert "(rate_limit, version 1)" in (engine.breakers.blocked(V1) or "")
    decision = engine.get_routing_decision(routing.TaskRequest(task_type="think"))
    assert decision.chain == ("other",)
    reasons = {c.model_id: c.reason for c in decision.candidates}
    assert reasons["m"].startswith("circuit open for ")
    assert reasons["m"].endswith("(rate_limit, version 1)")


@pytest.mark.slow  # about a second: 10,000 snapshots and routing tables
def test_a_model_versioned_ten_thousand_times_keeps_constant_state(engine_for: Engine) -> None:
    """Each version fails until its circuit opens and is observed once; a call to the
    version before it ends after the swap. The router keeps one version's state."""
    engine = engine_for(model_doc("m"), rule_doc("think"))
    base = engine.table().models["m"]
    rules = snapshot_of(rule_doc("think")).rules
    previous: circuits.ModelVersion | None = None
    for number in range(2, 10_002):
        meta = base.meta.model_copy(update={"version": str(number)})
        model = base.model_copy(update={"meta": meta})
        engine.use_snapshot(
            snapshots.Snapshot(
                number, None, MappingProxyType({"m": model}), rules, time.monotonic()
            )
        )
        key = engine.live_version("m")
        assert engine.breakers.blocked(key) is None  # every version starts closed
        if previous is not None:  # late outcomes of the replaced version are not kept
            assert not engine.breakers.failure(
                previous, cooldown_s=30, retry_after_s=None, why="timeout"
            )
            engine.stats.add(previous, 10.0)
        engine.stats.add(key, 10.0)
        assert engine.breakers.failure(key, cooldown_s=30, retry_after_s=5, why="rate_limit")
        assert engine.breakers.count() == 1 and engine.stats.count() == 1
        previous = key
    assert engine.breakers.open_ids() == {circuits.ModelVersion("m", "10001")}


def test_a_version_key_is_made_once_per_snapshot(engine_for: Engine) -> None:
    """The hot path allocates no key: decisions and calls read the table's own."""
    engine = engine_for(model_doc("m"), rule_doc("think"))
    table = engine.table()
    route = table.by_task["think"]
    assert route.eligible[0].key is table.versions["m"] is engine.live_version("m")
