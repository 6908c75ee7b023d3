"""Three replicas of ``grove serve`` on one PostgreSQL registry, the same bad version 2
behind them: exactly one revert commit is made, and killing the leader between its verdict
and its commit still yields exactly one (the next leader resumes the rollback)."""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path

import pytest

from reconciler.store.rollouts import Phase, RollbackState
from tests.rollouts.conftest import Canary, alpha_yaml
from tests.rollouts.servers import Served, serving, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]

ONE_STEP = "{steps: [{weight: 50, pauseS: 600}]}"


def bad_version_2(served: Served) -> None:
    canary = served.canary
    canary.canary.behaviour = "fail-rate:0.3"
    canary.push(
        "alpha: version 2",
        {"models/alpha.yaml": alpha_yaml("2", canary.canary.url, rollout=ONE_STEP)},
    )
    clients = [served.client(i) for i in range(len(served.replicas))]
    try:
        for client in clients:
            wait_until(lambda c=client: c.get("/api/models/alpha").json()["version"] == "2")
        for client in itertools.cycle(clients):  # every replica's calls count
            if canary.canary.calls >= 40:
                break
            served.execute(client)
    finally:
        for client in clients:
            client.close()


def reverts(canary: Canary) -> list[str]:
    return [line for line in canary.log() if line.startswith("grove-analysis|")]


def test_three_replicas_make_exactly_one_revert(canary: Canary, tmp_path: Path) -> None:
    with serving(canary, tmp_path, replicas=3) as served:
        bad_version_2(served)
        wait_until(lambda: reverts(canary), timeout=30)
        wait_until(lambda: canary.latest().rollback is RollbackState.ROLLED_BACK, timeout=30)
        for _ in range(8):  # a few more analysis intervals of every replica: nothing more
            time.sleep(0.25)
            assert len(reverts(canary)) == 1
    done = canary.latest()
    assert (done.phase, done.weight) == (Phase.FAILED, 0)
    assert len(reverts(canary)) == 1
    assert canary.registry.sql(
        "SELECT count(*) FROM lifecycle_events WHERE event_type = 'rollout_failed'"
    ) == [(1,)]


def test_killing_the_leader_between_verdict_and_commit_still_makes_one(
    canary: Canary, tmp_path: Path
) -> None:
    marks = [tmp_path / f"verdict-{i}" for i in range(3)]

    def failpoint(index: int) -> dict[str, str]:  # the leader stops right after its verdict
        return {
            "GROVE_FAILPOINT_ROLLBACK_VERDICT_MARK": str(marks[index]),
            "GROVE_FAILPOINT_ROLLBACK_VERDICT_MS": "120000",
        }

    with serving(canary, tmp_path, replicas=3, each=failpoint) as served:
        bad_version_2(served)
        judged = wait_until(lambda: [i for i, mark in enumerate(marks) if mark.exists()])
        (leader,) = judged
        assert canary.latest().rollback is RollbackState.ROLLING_BACK
        assert reverts(canary) == []  # the verdict is in, the commit is not
        served.replicas[leader].process.send_signal(signal.SIGKILL)
        # the lease (3 s) expires; another replica leads and resumes the rollback
        wait_until(lambda: reverts(canary), timeout=45)
        wait_until(lambda: canary.latest().rollback is RollbackState.ROLLED_BACK, timeout=30)
        assert [i for i, mark in enumerate(marks) if mark.exists()] == [leader]
    assert len(reverts(canary)) == 1
    assert canary.latest().rollback_commit is not None
