"""A bad version 2 behind a real ``grove serve``: its endpoint answers 500 on 30 % of
calls. Within one analysis interval of its 40th call the loop's leader stops it, commits
the revert as ``grove-analysis`` with the figures in the message, pushes it and applies
it: version 1 is live again, version 2 is quarantined (merging it again is refused with
P003), and no call reaches version 2 after the verdict."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from reconciler.store.rollouts import Phase, RollbackState
from tests.api.test_probes import SQLITE_ONLY
from tests.rollouts.conftest import Canary, alpha_yaml
from tests.rollouts.servers import serving, wait_until

pytestmark = [pytest.mark.slow, SQLITE_ONLY]

ONE_STEP = "{steps: [{weight: 50, pauseS: 600}]}"


def test_a_failing_canary_is_reverted_by_a_commit_and_quarantined(
    canary: Canary, tmp_path: Path
) -> None:
    canary.canary.behaviour = "fail-rate:0.3"
    with serving(canary, tmp_path) as served, served.client() as client:
        introduced = canary.push(
            "alpha: version 2",
            {"models/alpha.yaml": alpha_yaml("2", canary.canary.url, rollout=ONE_STEP)},
        )
        wait_until(lambda: client.get("/api/models/alpha").json()["version"] == "2")
        wait_until(lambda: canary.latest().canary_version == "2")
        answers = []
        while canary.canary.calls < 40:  # every answer succeeds: a failed canary call
            answers.append(served.execute(client))  # fails over to version 1
        fortieth = dt.datetime.now(dt.UTC)
        assert {a["modelId"] for a in answers} == {"alpha"}
        for answer in answers:  # a failed version 2 call was answered by version 1
            tried = [(t["version"], t["outcome"]) for t in answer["attempts"]]
            assert tried in (
                [("1", "success")],
                [("2", "success")],
                [("2", "server_error"), ("1", "success")],
            ), tried

        reverted = wait_until(lambda: canary.log()[0].startswith("grove-analysis|"), timeout=20)
        assert reverted
        message = canary.message()
        assert f"This reverts commit {introduced}." in message
        assert "Analysis: Failed" in message and "samples: 40" in message
        assert "success rate: 0.7000 (28 of 40 calls); SLO minSuccessRate 0.95" in message
        assert "Reverts-Model: alpha@2" in message

        failed = wait_until(
            lambda: (
                (r := canary.latest()).rollback is RollbackState.ROLLED_BACK
                and r.rollback_commit is not None  # written once the commit is applied
                and r
            ),
            timeout=20,
        )
        assert (failed.phase, failed.weight, failed.open) == (Phase.FAILED, 0, False)
        verdict = failed.judgements[-1]
        assert (verdict["verdict"], verdict["samples"], verdict["successes"]) == ("Failed", 40, 28)
        judged_at = dt.datetime.fromisoformat(verdict["at"])
        assert judged_at - fortieth < dt.timedelta(seconds=5)  # the next interval (0.25 s)
        assert (
            failed.rollback_commit
            == canary.fleet.git("ls-remote", str(canary.bare), "refs/heads/main").split()[0]
        )

        wait_until(lambda: client.get("/api/models/alpha").json()["version"] == "1")
        metrics = wait_until(
            lambda: (
                (m := client.get("/metrics").text)
                and 'grove_rollout_phase{model="alpha",phase="Failed"} 1.0' in m
                and m
            )
        )
        assert 'grove_rollout_canary_weight{model="alpha"} 0.0' in metrics
        assert 'grove_rollout_phase{model="alpha",phase="Running"} 0.0' in metrics
        before = canary.canary.calls
        for _ in range(60):
            assert served.execute(client)["version"] == "1"
        assert canary.canary.calls == before  # none to version 2 after the verdict
    late = canary.registry.sql(
        "SELECT count(*) FROM routing_logs WHERE model_version = '2' AND timestamp > :at",
        at=judged_at,
    )
    assert late[0][0] == 0
    assert canary.registry.sql(
        "SELECT version FROM quarantined_versions WHERE object_id = 'alpha'"
    ) == [("2",)]
    events = [e for e, ident in canary.registry.events() if ident == "alpha"]
    assert "rollout_failed" in events and "model_rolled_back" in events
    assert events.index("rollout_failed") < events.index("model_rolled_back")

    # merging version 2 again, unchanged, is refused: P003
    canary.push(
        "alpha: version 2 again",
        {"models/alpha.yaml": alpha_yaml("2", canary.canary.url, rollout=ONE_STEP)},
    )
    refused = canary.registry.run("plan")
    assert refused.code == 1 and "P003" in refused.out + refused.err, refused.out + refused.err
