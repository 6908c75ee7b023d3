"""The reconcile loop as real processes: pick-up latency, outages, replicas, shutdown.

Every test stops its processes itself (SIGTERM, then SIGKILL in ``finally``)
and is bounded by explicit timeouts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import Registry, model_yaml
from tests.faults.watchers import WatchProcess, watch_env


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[list[WatchProcess]]:
    started: list[WatchProcess] = []
    yield started
    for loop in started:
        loop.kill()


def _wait_until(check: object, timeout: float, step: float = 0.01) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout}s")


def _is_reconcile(outcome: str, revision: str | None = None) -> object:
    return lambda e: (
        e.get("event") == "reconcile"
        and e.get("outcome") == outcome
        and (revision is None or e.get("revision") == revision[:12])
    )


@pytest.mark.slow
def test_a_commit_to_a_watched_repository_is_applied_at_once(
    registry: Registry,
    tmp_path: Path,
    loops: list[WatchProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry.fleet.commit("fleet", {"models/a.yaml": model_yaml("a")})
    env = watch_env(registry.fleet.root, registry.url, tmp_path / "data")
    loop = WatchProcess("loop", tmp_path, env, interval="60s")  # only the ref watcher is fast
    loops.append(loop)
    loop.wait_for(_is_reconcile("applied"), timeout=30)
    latencies = []
    for i in range(3):
        time.sleep(0.3)
        started = time.monotonic()
        registry.fleet.commit(f"b{i}", {f"models/b{i}.yaml": model_yaml(f"b{i}")})
        latencies.append(_wait_until(lambda i=i: f"AIModel/b{i}" in registry.live(), timeout=10))
        assert time.monotonic() - started < 5, "picked up by the timer, not by the ref watcher"
    assert loop.terminate() == 0
    with capsys.disabled():
        backend = registry.url.split(":")[0]
        print(
            f"\ncommit -> applied on {backend}: "
            + ", ".join(f"{s * 1000:.0f} ms" for s in latencies)
        )


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the git remote's outage
def test_an_unreachable_remote_keeps_the_last_state_and_recovers(
    registry: Registry, tmp_path: Path, loops: list[WatchProcess]
) -> None:
    registry.fleet.commit("fleet", {"models/a.yaml": model_yaml("a")})
    origin = registry.fleet.root
    env = watch_env(origin, registry.url, tmp_path / "data", GROVE_REPO=f"file://{origin}")
    loop = WatchProcess("loop", tmp_path, env, interval="2s")
    loops.append(loop)
    loop.wait_for(_is_reconcile("applied"), timeout=30)
    gone = origin.with_name("gone")
    origin.rename(gone)
    loop.wait_for(lambda e: e.get("event") == "backoff", timeout=15)
    assert "AIModel/a" in registry.live()  # still serving the last applied state
    status = registry.run("status", "--json", "--repo", f"file://{origin}")
    assert '"status": "False"' in status.out
    assert "git fetch failed" in status.out or "git clone failed" in status.out
    before = max(e["serial"] for e in loop.matching(lambda e: e.get("event") == "snapshot"))
    time.sleep(3)
    backoffs = loop.matching(lambda e: e.get("event") == "backoff")
    assert len(backoffs) <= 4, "retried in a tight loop"
    gone.rename(origin)
    registry.fleet.commit("b", {"models/b.yaml": model_yaml("b")})
    back = time.monotonic()
    _wait_until(lambda: "AIModel/b" in registry.live(), timeout=15)
    assert time.monotonic() - back <= 2 * 2 + 1.5  # two intervals (+ poll and cycle time)
    loop.wait_for(lambda e: e.get("event") == "snapshot" and e["serial"] > before, timeout=5)
    assert loop.terminate() == 0


@pytest.mark.slow
def test_a_failed_revision_is_not_retried_until_a_new_commit(
    registry: Registry, tmp_path: Path, loops: list[WatchProcess]
) -> None:
    registry.fleet.commit("fleet", {"models/a.yaml": model_yaml("a")})
    env = watch_env(registry.fleet.root, registry.url, tmp_path / "data")
    loop = WatchProcess("loop", tmp_path, env, interval="0.3s")
    loops.append(loop)
    loop.wait_for(_is_reconcile("applied"), timeout=30)
    bad = registry.fleet.commit("broken", {"models/b.yaml": "meta: &x {}\n"})
    loop.wait_for(_is_reconcile("invalid", bad), timeout=10)
    # three later ticks (every 0.3 s) skip the failed revision instead of trying it again
    _wait_until(lambda: len(loop.matching(_is_reconcile("skipped", bad))) >= 3, timeout=10)
    attempts = loop.matching(_is_reconcile("invalid", bad))
    assert len(attempts) == 1
    status = registry.run("status", "--json")
    assert '"reason": "ManifestsInvalid"' in status.out
    fixed = registry.fleet.commit("fixed", {"models/b.yaml": model_yaml("b")})
    loop.wait_for(_is_reconcile("applied", fixed), timeout=10)
    assert "AIModel/b" in registry.live()
    assert loop.terminate() == 0


@pytest.mark.slow
def test_suspend_stops_applying_and_resume_restarts(
    registry: Registry, tmp_path: Path, loops: list[WatchProcess]
) -> None:
    registry.fleet.commit("fleet", {"models/a.yaml": model_yaml("a")})
    env = watch_env(registry.fleet.root, registry.url, tmp_path / "data")
    loop = WatchProcess("loop", tmp_path, env, interval="0.5s")
    loops.append(loop)
    loop.wait_for(_is_reconcile("applied"), timeout=30)
    assert registry.run("suspend").out == "Reconciliation suspended.\n"
    loop.wait_for(lambda e: e.get("event") == "suspended", timeout=5)
    registry.fleet.commit("b", {"models/b.yaml": model_yaml("b")})
    time.sleep(2)
    assert "AIModel/b" not in registry.live()
    assert registry.run("resume").out == "Reconciliation resumed.\n"
    _wait_until(lambda: "AIModel/b" in registry.live(), timeout=10)
    triggered = registry.run("reconcile", "--now")
    assert triggered.out.startswith(
        "Asked the reconcile loop for a cycle (trigger 1); the leader is "
    )
    loop.wait_for(
        lambda e: e.get("event") == "reconcile" and e.get("triggered") is True, timeout=10
    )
    assert loop.terminate() == 0


@pytest.mark.slow
def test_sigterm_mid_apply_finishes_the_transaction_and_releases_the_lease(
    registry: Registry, tmp_path: Path, loops: list[WatchProcess]
) -> None:
    marker = tmp_path / "locked"
    env = watch_env(
        registry.fleet.root,
        registry.url,
        tmp_path / "data",
        GROVE_FAILPOINT_APPLY_LOCKED_MARK=str(marker),
        GROVE_FAILPOINT_APPLY_WRITE_MS="10",
    )
    registry.fleet.commit("fleet", {f"models/m{i}.yaml": model_yaml(f"m{i}") for i in range(60)})
    loop = WatchProcess("loop", tmp_path, env, interval="60s")
    loops.append(loop)
    _wait_until(marker.exists, timeout=30)
    assert loop.terminate() == 0
    assert len(registry.live()) in (0, 60)
    lease = registry.sql("SELECT expires_ms FROM leases WHERE name = 'reconciler'")
    assert lease[0][0] == 0
    assert loop.matching(lambda e: e.get("event") == "watch-stopped")


# ---------------------------------------------------------------- PostgreSQL only


# PostgreSQL-only faults: the registry fixture's db_url is pinned to PostgreSQL.
postgresql_only = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def _terminate(registry: Registry, application_name: str) -> int:
    admin = create_engine(registry.url)
    try:
        with admin.begin() as connection:
            rows = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name AND pid <> pg_backend_pid()"
                ),
                {"name": application_name},
            ).fetchall()
    finally:
        admin.dispose()
    return len(rows)


@pytest.mark.slow
@postgresql_only
def test_a_connection_killed_mid_apply_rolls_back_and_the_loop_converges(
    registry: Registry, tmp_path: Path, loops: list[WatchProcess]
) -> None:
    marker = tmp_path / "locked"
    env = watch_env(
        registry.fleet.root,
        registry.url,
        tmp_path / "data",
        GROVE_FAILPOINT_APPLY_LOCKED_MARK=str(marker),
        GROVE_FAILPOINT_APPLY_WRITE_MS="20",
    )
    revision = registry.fleet.commit(
        "fleet", {f"models/m{i}.yaml": model_yaml(f"m{i}") for i in range(50)}
    )
    loop = WatchProcess("loop", tmp_path, env, interval="60s")
    loops.append(loop)
    _wait_until(marker.exists, timeout=30)
    time.sleep(0.2)
    assert _terminate(registry, f"grove:{loop.pid}") >= 1
    marker.unlink()
    assert len(registry.live()) == 0  # rolled back, not half-applied
    loop.wait_for(lambda e: e.get("event") == "backoff", timeout=15)
    loop.wait_for(_is_reconcile("applied", revision), timeout=30)
    assert len(registry.live()) == 50
    assert registry.revisions() == [revision]
    assert loop.process.poll() is None
    assert loop.terminate() == 0


@pytest.mark.slow
@postgresql_only
def test_replicas_follow_by_polling_when_notifications_are_lost(
    registry: Registry, tmp_path: Path, loops: list[WatchProcess]
) -> None:
    registry.fleet.commit("fleet", {"models/a.yaml": model_yaml("a")})
    leader_env = watch_env(registry.fleet.root, registry.url, tmp_path / "data-a")
    leader = WatchProcess("leader", tmp_path, leader_env, interval="60s")
    loops.append(leader)
    leader.wait_for(_is_reconcile("applied"), timeout=30)
    deaf = WatchProcess(
        "deaf",
        tmp_path,
        watch_env(
            registry.fleet.root,
            registry.url,
            tmp_path / "data-b",
            GROVE_PG_LISTEN="false",
            GROVE_POLL_INTERVAL_S="1",
        ),
    )
    cut = WatchProcess(
        "cut",
        tmp_path,
        watch_env(
            registry.fleet.root, registry.url, tmp_path / "data-c", GROVE_POLL_INTERVAL_S="1"
        ),
    )
    loops += [deaf, cut]
    for replica in (deaf, cut):
        replica.wait_for(
            lambda e: e.get("event") == "snapshot" and e.get("serial") == 1, timeout=30
        )
    time.sleep(1)
    assert _terminate(registry, f"grove-listen:{cut.pid}") == 1
    revision = registry.fleet.commit("b", {"models/b.yaml": model_yaml("b")})
    applied = leader.wait_for(_is_reconcile("applied", revision), timeout=15)
    for replica in (deaf, cut):
        seen = replica.wait_for(
            lambda e: e.get("event") == "snapshot" and e.get("serial") == 2, timeout=10
        )
        assert seen["_t"] - applied["_t"] <= 1.0 + 0.5  # one poll interval, plus scheduling
    for loop in (leader, deaf, cut):
        assert loop.terminate() == 0


@pytest.mark.slow
@postgresql_only
def test_three_replicas_with_the_leader_killed_twice_apply_every_revision_once(
    registry: Registry,
    tmp_path: Path,
    loops: list[WatchProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry.fleet.commit("start", {"models/a.yaml": model_yaml("a")})
    ttl, interval = 3.0, 2.0

    def replica(name: str) -> WatchProcess:
        env = watch_env(registry.fleet.root, registry.url, tmp_path / f"data-{name}")
        started = WatchProcess(name, tmp_path, env, interval=f"{interval}s")
        loops.append(started)
        return started

    replicas = [replica("r1"), replica("r2"), replica("r3")]
    commits: list[str] = []
    failovers: list[float] = []
    started = time.monotonic()
    kills_at = {3, 6}  # a failover takes up to lease + interval: each kill has two steps after it
    step = 0
    while time.monotonic() - started < 27:
        step += 1
        commits.append(
            registry.fleet.commit(f"c{step}", {f"models/c{step}.yaml": model_yaml(f"c{step}")})
        )
        time.sleep(1.0)
        if step in kills_at:
            leader = _leader(replicas)
            killed_at = time.monotonic()
            leader.kill()
            replicas.remove(leader)
            epoch = max(
                e["epoch"]
                for r in [*replicas, leader]
                for e in r.matching(lambda e: e.get("event") == "leader-elected")
            )
            new = _wait_for_new_leader(replicas, epoch, timeout=ttl + interval + 3)
            failovers.append(new - killed_at)
            replicas.append(replica(f"r{len(loops) + 1}"))
        time.sleep(3.0)
    final = commits[-1]
    _wait_until(lambda: registry.revisions()[-1:] == [final], timeout=20)
    history = registry.revisions()
    for revision in commits:
        assert history.count(revision) == 1, (
            f"{revision[:12]} applied {history.count(revision)} times"
        )
    for loop in replicas:
        assert loop.terminate() == 0, loop.other[-5:]
    for failover in failovers:
        assert failover <= ttl + interval + 1.0
    with capsys.disabled():
        print(
            f"\n{len(commits)} commits over {time.monotonic() - started:.0f}s, each applied once; "
            f"failovers after SIGKILL: "
            + ", ".join(f"{f:.1f}s" for f in failovers)
            + f" (bound: lease {ttl}s + interval {interval}s)"
        )


def _leader(replicas: list[WatchProcess]) -> WatchProcess:
    latest: tuple[int, WatchProcess] | None = None
    for loop in replicas:
        for event in loop.matching(lambda e: e.get("event") == "leader-elected"):
            if latest is None or event["epoch"] > latest[0]:
                latest = (event["epoch"], loop)
    assert latest is not None, "no leader elected"
    return latest[1]


def _wait_for_new_leader(replicas: list[WatchProcess], epoch: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for loop in replicas:
            found = loop.matching(
                lambda e: e.get("event") == "leader-elected" and e["epoch"] > epoch
            )
            if found:
                return float(found[0]["_t"])
        time.sleep(0.02)
    raise AssertionError(f"no replica took over within {timeout}s")


def test_watch_refuses_force(registry: Registry) -> None:
    result = registry.run("reconcile", "--watch", "--force")
    assert result.code == 1
    assert "--force applies one reviewed plan" in result.err


@pytest.mark.parametrize("text", ["0s", "fast", "-1m"])
def test_bad_intervals_are_usage_errors(registry: Registry, text: str) -> None:
    result = registry.run("reconcile", "--watch", "--interval", text)
    assert result.code == 1
    assert "is not a duration like 30s" in result.err
