"""``grove rollout status|promote|abort``, ``grove quarantine list|lift`` and ``grove get
rollouts`` (issue 17) on a real fleet: git with a bare remote, a registry, the rollout of
version 2 of ``alpha`` begun by a reconcile. The calls the analyst judges are written
into the routing logs directly (the split itself is tests/rollouts' business)."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import insert

from reconciler.store import tables
from tests.conftest import FleetRepo, Registry
from tests.rollouts.conftest import Canary, alpha_yaml, canary, later  # noqa: F401 - the fixture

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the CLI, not the store


def begin(canary: Canary) -> None:  # noqa: F811 - the fixture's name
    canary.push("alpha: version 2", {"models/alpha.yaml": alpha_yaml("2", canary.canary.url)})
    canary.reconcile()


def calls(canary: Canary, ok: int, failed: int = 0, *, latency_ms: int = 120) -> None:  # noqa: F811
    """``ok`` good and ``failed`` bad calls of version 2, a second after its rollout began."""
    started = canary.latest().started_at
    rows = [
        {
            "request_id": uuid.uuid4(),
            "model_id": "alpha",
            "task_type": "think",
            "capability_required": "reasoning",
            "latency_ms": latency_ms,
            "success": number < ok,
            "error_kind": None if number < ok else "server_error",
            "routing_decision": {},
            "timestamp": started + dt.timedelta(seconds=1),
            "model_version": "2",
        }
        for number in range(ok + failed)
    ]
    with canary.db().transaction(write=True) as connection:
        connection.execute(insert(tables.routing_logs), rows)


def bare_log(canary: Canary, *args: str) -> str:  # noqa: F811
    out = FleetRepo.__new__(FleetRepo)
    out.root = canary.bare
    return out.git(*args)


@SQLITE
def test_status_steps_and_promotion(canary: Canary) -> None:  # noqa: F811
    run = canary.registry.run
    empty = run("rollout", "status")
    assert (empty.code, empty.err) == (0, "") and empty.out.startswith("no rollouts: ")
    assert run("rollout", "status", "-o", "json").out == "[]\n"
    assert run("get", "rollouts").out == empty.out
    missing = run("rollout", "status", "alpha")
    assert (missing.code, missing.out) == (1, "")
    assert missing.err == "grove: model alpha has no rollout\n"

    begin(canary)
    listed = run("rollout", "status")
    assert listed.code == 0, listed.err
    header, row = (line.split() for line in listed.out.splitlines())
    assert header[:3] == ["MODEL", "ROLLOUT", "PHASE"] and header[-1] == "AGE"
    assert row[0] == "alpha" and row[2:10] == ["Running", "-", "1", "->", "2", "1/2", "10%", "-"]
    assert json.loads(run("get", "rollouts", "-o", "json").out) == json.loads(
        run("rollout", "status", "-o", "json").out
    )

    calls(canary, 48, 2)  # 96 %: above the SLO's 95 %
    canary.analyst().tick(now=later(canary.latest(), 61))
    detail = run("rollout", "status", "alpha")
    assert detail.code == 0, detail.err
    text = detail.out
    assert text.startswith("alpha: rollout 1 (canary), version 1 (stable) -> 2 (canary)\n")
    assert "Weight:       50% of the calls to the canary" in text
    assert "SLO:          success rate >= 0.95, p95 <= 5000 ms, at least 40 calls" in text
    steps = text.split("Steps:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split()[:3] for line in steps] == [
        ["1", "10%", "then"],
        [">", "2", "50%"],
        ["3", "100%", "promotion:"],
    ]
    assert steps[1].endswith("<- current")
    judged = text.split("Judgements:\n", 1)[1].splitlines()
    assert judged[0].split()[:5] == ["AT", "STEP", "WEIGHT", "VERDICT", "SAMPLES"]
    assert judged[1].split()[1:8] == ["1", "10%", "Successful", "50", "(48", "ok)", "96.0%"]

    document = json.loads(run("rollout", "status", "alpha", "-o", "json").out)
    assert (document["phase"], document["step"], document["weight"]) == ("Running", 1, 50)
    assert document["history"] == [] and document["analysis"]["samples"] == 50
    assert document["judgements"][0]["successRate"] == 0.96
    assert json.loads(run("get", "rollouts", "alpha", "-o", "json").out) == document

    promoted = run("rollout", "promote", "alpha")
    assert promoted.code == 0, promoted.err
    assert promoted.out == (
        "alpha: rollout 1 promoted; version 2 is stable and gets every call (it had 50%); "
        "version 1 gets none\n"
    )
    after = canary.latest()
    assert (after.phase.value, after.weight, after.open) == ("Successful", 100, False)
    again = run("rollout", "promote", "alpha")
    assert (again.code, again.out) == (1, "")
    assert again.err == "grove: rollout 1 of alpha is Successful; nothing to do\n"
    assert run("rollout", "abort", "alpha").code == 1
    assert run("rollout", "promote", "beta").err == "grove: model beta has no rollout\n"
    events = [e for e, ident in canary.registry.events() if ident == "alpha"]
    assert events[-2:] == ["rollout_step", "rollout_promoted"]
    actor = canary.registry.sql(
        "SELECT actor FROM lifecycle_events WHERE event_type = 'rollout_promoted'"
    )
    assert actor[0][0].startswith("cli:")

    listed = run("get", "rollouts", "alpha")
    assert listed.out.splitlines()[1].split()[:3] == ["alpha", "1", "Successful"]


def test_abort_commits_the_rollback_and_quarantine_is_listed_and_lifted(
    canary: Canary,  # noqa: F811
) -> None:
    run = canary.registry.run
    begin(canary)
    calls(canary, 20, 5)
    before = bare_log(canary, "rev-parse", "main")
    for reason in ("x" * 501, "two\nlines"):
        refused = run("rollout", "abort", "alpha", "--reason", reason)
        assert refused.code == 1 and refused.err.count("\n") == 1, refused.err
    assert bare_log(canary, "rev-parse", "main") == before and canary.latest().open

    done = run("rollout", "abort", "alpha", "--reason", "answers look wrong")
    assert done.code == 0, done.err
    commit = bare_log(canary, "rev-parse", "main").strip()
    assert done.out.startswith(
        "alpha: rollout 1 aborted; version 2 gets no calls and is quarantined; "
        f"rolled back to version 1 in commit {commit[:12]}, authored by cli-"
    )
    author = bare_log(canary, "log", "-1", "--format=%an", "main").strip()
    assert author.startswith("cli-") and "~" in author and done.out.rstrip().endswith(author)
    message = canary.message()
    assert "Analysis: Aborted (rollout 1 of alpha, version 2" in message
    assert "aborted by cli:" in message and "answers look wrong" in message
    assert "success rate: 0.8000 (20 of 25 calls); SLO minSuccessRate 0.95" in message
    assert "Reverts-Model: alpha@2" in message
    assert canary.registry.live()["AIModel/alpha"]["version"] == "1"
    aborted = canary.latest()
    assert (aborted.phase.value, aborted.rollback.value, aborted.rollback_commit) == (
        "Aborted",
        "RolledBack",
        commit,
    )
    again = run("rollout", "abort", "alpha")
    assert again.code == 1 and "nothing to do" in again.err

    held = run("quarantine", "list")
    assert held.code == 0, held.err
    header, row = held.out.splitlines()
    assert header.split() == ["OBJECT", "VERSION", "SINCE", "REASON"]
    assert row.split()[:2] == ["AIModel/alpha", "2"] and "answers look wrong" in row
    [item] = json.loads(run("quarantine", "list", "alpha", "-o", "json").out)
    assert (item["kind"], item["id"], item["version"]) == ("AIModel", "alpha", "2")
    assert run("quarantine", "list", "beta").out == "no version of beta is quarantined\n"

    canary.push("alpha: version 2 again", {"models/alpha.yaml": alpha_yaml("2", canary.canary.url)})
    refused = run("reconcile")
    assert refused.code == 1 and "P003" in refused.out + refused.err
    trigger = "SELECT trigger_counter FROM reconciler_state"
    [(before_lift,)] = canary.registry.sql(trigger)

    unconfirmed = run("quarantine", "lift", "alpha", "2")  # stdin is no terminal here
    assert unconfirmed.code == 1 and "--yes" in unconfirmed.err
    wrong = run("quarantine", "lift", "alpha", "3", "--yes")
    assert wrong.err == "grove: version 3 of alpha is not quarantined\n" and wrong.code == 1
    lifted = run("quarantine", "lift", "alpha", "2", "--yes", "--reason", "fixed upstream")
    assert lifted.code == 0, lifted.err
    assert lifted.out == (
        "AIModel/alpha: version 2 is no longer quarantined; a reconcile may apply it again\n"
    )
    assert run("quarantine", "list").out == "no quarantined versions\n"
    [event] = canary.registry.sql(
        "SELECT object_id, version_from, actor, details FROM lifecycle_events "
        "WHERE event_type = 'quarantine_lifted'"
    )
    details = event[3] if isinstance(event[3], dict) else json.loads(event[3])
    assert (event[0], event[1]) == ("alpha", "2") and event[2].startswith("cli:")
    assert details["reason"] == "fixed upstream" and "aborted by" in details["quarantinedFor"]
    assert run("quarantine", "lift", "alpha", "2", "--yes").code == 1  # lifted already
    assert canary.registry.sql(trigger) == [(before_lift + 1,)]  # running loops plan again
    canary.reconcile()  # the merge P003 refused goes through now
    assert canary.registry.live()["AIModel/alpha"]["version"] == "2"
    assert (canary.latest().id, canary.latest().phase.value) == (2, "Running")


@SQLITE
def test_an_abort_that_cannot_push_shows_the_commit_to_make(
    canary: Canary,  # noqa: F811
    tmp_path: Path,
) -> None:
    begin(canary)
    calls(canary, 10)
    hook = canary.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'pushes are closed' >&2\nexit 1\n")
    hook.chmod(0o755)
    done = canary.registry.run("rollout", "abort", "alpha")
    assert done.code == 1
    assert done.err.startswith("grove: the rollback commit could not be pushed (RollbackPending)")
    assert "The commit to make by hand:\n  grove rollback alpha --to 1\n" in done.out
    assert canary.latest().rollback.value == "RollbackPending"
    assert canary.registry.live()["AIModel/alpha"]["version"] == "2"  # git still says 2

    status = canary.registry.run("rollout", "status", "alpha")
    assert status.code == 0, status.err
    assert "Rollback:     RollbackPending" in status.out
    assert "Rollback pending: " in status.out and "grove rollback alpha --to 1" in status.out
    row = canary.registry.run("rollout", "status").out.splitlines()[1].split()
    assert row[2:4] == ["Aborted", "RollbackPending"] and row[8] == "0%"


class Terminal(io.StringIO):
    """Standard input as a terminal that types ``answer``."""

    def isatty(self) -> bool:
        return True


@SQLITE
def test_a_lift_asks_on_a_terminal_and_a_shared_id_needs_its_type(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    for kind in ("AIModel", "RoutingRule"):
        registry.sql(
            "INSERT INTO quarantined_versions (object_kind, object_id, version, reason, "
            "created_at) VALUES (:kind, 'twin', '3', 'bad \x1b[31m', CURRENT_TIMESTAMP)",
            kind=kind,
        )
    listed = registry.run("quarantine", "list", "twin")
    assert "\x1b" not in listed.out and "bad \\x1b[31m" in listed.out
    assert (
        len(json.loads(registry.run("quarantine", "list", "--type", "AIModel", "-o", "json").out))
        == 1
    )

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    declined = registry.run("quarantine", "lift", "twin", "3", "--type", "AIModel")
    assert declined.code == 130 and "Lift the quarantine of AIModel/twin version 3" in declined.err
    both = registry.run("quarantine", "lift", "twin", "3", "--yes")
    assert both.code == 1 and "both the model and the rule" in both.err
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    lifted = registry.run("quarantine", "lift", "twin", "3", "--type", "RoutingRule", "-o", "json")
    assert lifted.code == 0, lifted.err
    document = json.loads(lifted.out)  # the question went to stderr
    assert (document["kind"], document["lifted"]) == ("RoutingRule", True)
    assert document["by"].startswith("cli:")
    remaining = json.loads(registry.run("quarantine", "list", "-o", "json").out)
    assert [(q["kind"], q["id"]) for q in remaining] == [("AIModel", "twin")]
