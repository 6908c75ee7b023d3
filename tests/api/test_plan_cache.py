"""Issue 13: ``GET /api/plan`` is computed once per revision and registry state, shared by
concurrent callers, and not more often than every few seconds per server; a new
commit or an apply gives a new plan."""

from __future__ import annotations

import itertools
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.api.conftest import Server
from tests.conftest import Registry, model_yaml

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # HTTP, not the database
INTERVAL = 0.5  # the server's is 3 s: the same behaviour, a shorter wait


def _computed(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "plan-preview-computed"]


@pytest.mark.slow
@SQLITE_ONLY
def test_the_plan_is_computed_once_per_revision_and_registry_state(
    server: Server, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="grove.api")
    services = server.app.state.services
    services.plans.min_interval_s = INTERVAL
    with server.client("viewer") as viewer:
        first = viewer.get("/api/plan")
        assert first.status_code == 200
        assert first.json()["changes"] == []
        for _ in range(5):
            assert viewer.get("/api/plan").json() == first.json()

        def fetch(_: int) -> object:
            with server.client("viewer") as client:
                return client.get("/api/plan").json()

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert list(pool.map(fetch, range(16))) == [first.json()] * 16
        assert len(_computed(caplog)) == 1
        assert services.plans.computations == 1

        registry.fleet.git("pull", "-q", str(server.bare), "main")
        committed = registry.fleet.push_to(
            server.bare, "add delta", {"models/delta.yaml": model_yaml("delta")}
        )
        with ThreadPoolExecutor(max_workers=8) as pool:  # a new commit: one new plan for all
            plans = list(pool.map(fetch, range(8)))
        assert all(p == plans[0] for p in plans)
        assert plans[0]["revision"] == committed
        assert [c["objectId"] for c in plans[0]["changes"]] == ["delta"]
        assert len(_computed(caplog)) == 2

        assert registry.run("reconcile").code == 0  # an apply: the registry state moved
        applied = viewer.get("/api/plan").json()
        assert applied["changes"] == []
        assert applied["stateSerial"] == plans[0]["stateSerial"] + 1
        assert viewer.get("/api/plan").json() == applied
    computed = _computed(caplog)
    assert len(computed) == 3
    starts = [r.created - r.fields["duration_ms"] / 1000 for r in computed]  # type: ignore[attr-defined]
    # the throttle: a computation starts no sooner than the interval after the one before
    assert all(b - a >= INTERVAL * 0.99 for a, b in itertools.pairwise(starts))
