"""A two-step rollout (10 %, then 50 %) of a good version 2: over 2,000 routed calls per
step the canary's share is within 3 points of the step's weight, the same request id
always lands on the same version, each step advances after its pause, and the last one
promotes: every call then goes to version 2. The analyst runs at chosen times (``now``);
the calls, the routing logs, the database and git are real."""

from __future__ import annotations

import uuid

import pytest

from reconciler.routing import engine as routing
from reconciler.routing.ranking import TaskRequest
from reconciler.store.rollouts import Phase
from tests.rollouts.conftest import Canary, alpha_yaml, later, route

pytestmark = pytest.mark.slow


def share(results: list[routing.RoutingResult]) -> float:
    return 100 * sum(1 for r in results if r.version == "2") / len(results)


def test_a_good_canary_gets_each_steps_weight_and_is_promoted(canary: Canary) -> None:
    canary.push("alpha: version 2", {"models/alpha.yaml": alpha_yaml("2", canary.canary.url)})
    canary.reconcile()
    started = canary.latest()
    assert (started.phase, started.stable_version, started.canary_version) == (
        Phase.RUNNING,
        "1",
        "2",
    )
    assert (started.mode.value, started.step, started.weight) == ("canary", 0, 10)

    engine = routing.RoutingEngine(canary.settings, canary.db())
    try:
        engine.refresh()
        first = route(engine, 2000)
        # each share within 4.5 standard deviations of its weight for 2,000 random request
        # ids (binomial: 0.67 points at 10%, 1.12 at 50%): a false alarm once in 150,000
        assert abs(share(first) - 10) <= 3, share(first)
        assert all(r.model_id == "alpha" and r.response.text == f"from v{r.version}" for r in first)
        assert canary.canary.calls == sum(1 for r in first if r.version == "2")

        # a retried request sticks: the same id, the same version, every time
        async def again(request_id: str) -> set[str | None]:
            seen = set()
            for _ in range(20):
                task = TaskRequest(task_type="think", request_id=request_id)
                seen.add((await engine.route_request(task)).version)
            return seen

        for request_id in (r.request_id for r in first[:10]):
            assert len(routing.run(engine, again(request_id))) == 1

        analyst = canary.analyst()
        analyst.tick(now=later(started, 30))  # the pause is not over: still step 1
        assert (canary.latest().step, canary.latest().weight) == (0, 10)
        analyst.tick(now=later(started, 61))
        stepped = canary.latest()
        assert (stepped.phase, stepped.step, stepped.weight) == (Phase.RUNNING, 1, 50)
        judged = stepped.judgements[-1]
        assert judged["verdict"] == "Successful" and judged["samples"] >= 40
        assert judged["successRate"] == 1.0

        assert engine.refresh()  # the step changed routing: the snapshot moves
        second = route(engine, 2000)
        assert abs(share(second) - 50) <= 5, share(second)

        analyst.tick(now=later(stepped, 61))
        promoted = canary.latest()
        assert (promoted.phase, promoted.weight, promoted.open) == (Phase.SUCCESSFUL, 100, False)
        assert engine.refresh()
        assert {r.version for r in route(engine, 50)} == {"2"}  # stable is version 2 now
    finally:
        engine.close()
    events = [e for e, ident in canary.registry.events() if ident == "alpha"]
    assert events[-4:] == ["model_versioned", "rollout_started", "rollout_step", "rollout_promoted"]
    rows = canary.registry.sql(
        "SELECT model_version, count(*) FROM routing_logs GROUP BY model_version ORDER BY 1"
    )
    assert {row[0]: row[1] for row in rows}["2"] == canary.canary.calls


def test_the_split_is_sticky_across_engines_and_uniform(canary: Canary) -> None:
    """Two routers (two replicas) choose the same version for the same request id."""
    canary.push("alpha: version 2", {"models/alpha.yaml": alpha_yaml("2", canary.canary.url)})
    canary.reconcile()
    engines = [
        routing.RoutingEngine(canary.settings, canary.db(), write_logs=False) for _ in range(2)
    ]
    try:
        for engine in engines:
            engine.refresh()
        splits = [engine.table().splits["alpha"] for engine in engines]
        ids = [str(uuid.uuid4()) for _ in range(5000)]
        first = [splits[0].order(i)[0][1].version for i in ids]
        assert first == [splits[1].order(i)[0][1].version for i in ids]
        assert abs(100 * first.count("2") / len(ids) - 10) <= 1.5
    finally:
        for engine in engines:
            engine.close()
