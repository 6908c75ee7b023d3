"""Issue 13: ``/healthz`` and ``/readyz`` without a token, and a server whose SQLite
registry is overwritten while it runs: health and ``/readyz`` say the registry is
unreadable, routing logs and metrics answer 503 instead of empty data, routed calls
go on from the snapshot, and a restored file is read again without a restart."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, free_port
from tests.api.test_processes import _fleet_and_token, _wait_for
from tests.conftest import Registry, model_yaml

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
ROUTED = {"capabilities": ["reasoning"], "prompt": "hi"}
BOGUS = "grove_0123456789abcdef_" + "x" * 43
UNREADABLE = "the registry database (SQLite) is unreadable: "
QUIET: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}


def _until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not reached within {timeout}s")


def _serve(env: dict[str, str], cwd: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    """``grove serve --port PORT EXTRA...`` as a process of its own."""
    command = [sys.executable, "-m", "reconciler", "serve", "--port", str(port), *extra]
    return subprocess.Popen(command, cwd=cwd, env=env, **QUIET)


def _ready(client: httpx.Client, **params: Any) -> httpx.Response:
    return client.get("/readyz", params=params)


@SQLITE_ONLY
def test_probes_answer_without_a_token(server: Server) -> None:
    with server.client() as anonymous:
        alive = anonymous.get("/healthz")
        assert alive.status_code == 200
        assert alive.json() == {
            "status": "ok",
            "checks": {"process": {"status": "ok", "detail": "answering"}},
        }
        ready = _ready(anonymous)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ok"
    checks = body["checks"]
    assert set(checks) == {"database", "snapshot", "reconcileLoop", "reconciler"}
    assert checks["database"] == {"status": "ok", "detail": "readable at state serial 1"}
    assert checks["snapshot"]["status"] == "ok"
    assert checks["snapshot"]["detail"].startswith("serial 1, revision ")
    assert checks["snapshot"]["detail"].endswith(", 3 model(s)")
    assert checks["reconcileLoop"]["status"] == "skip"  # this server runs no loop
    assert checks["reconciler"] == {"status": "ok", "detail": "not stalled"}


@SQLITE_ONLY
def test_readyz_reports_a_stalled_reconciler_without_failing(
    server: Server, registry: Registry
) -> None:
    """A refused commit must not take every replica out of its load balancer: the
    Stalled condition is a warning, with its reason."""
    registry.fleet.git("pull", "-q", str(server.bare), "main")
    registry.fleet.push_to(server.bare, "broken", {"models/bad.yaml": model_yaml("Bad Id")})
    assert registry.run("reconcile").code == 1
    with server.client() as anonymous:
        ready = _until(lambda: (r := _ready(anonymous)).json()["status"] == "degraded" and r)
    assert ready.status_code == 200
    stalled = ready.json()["checks"]["reconciler"]
    assert stalled["status"] == "warn"
    assert stalled["detail"].startswith("Stalled: ManifestsInvalid: 1 manifest error(s)")
    with server.client("viewer") as viewer:  # the product brief's health check says so too
        health = viewer.get("/api/models/health").json()
    assert health["status"] == "degraded"
    assert any(
        r.startswith("reconciler stalled, git changes are not applied: ManifestsInvalid")
        for r in health["reasons"]
    ), health


def _overwrite_in_place(path: Path) -> None:
    for part in (path, path.with_name(path.name + "-wal")):
        if part.exists():
            size = max(part.stat().st_size, 4096)
            with part.open("r+b") as handle:
                handle.write(b"\x5a" * size)


def _restore(backup: Path, path: Path) -> None:
    """As an operator restores a backup: the file replaced, its WAL and index removed."""
    backup.replace(path)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


@pytest.mark.slow
@SQLITE_ONLY
def test_an_overwritten_registry_is_reported_and_a_restored_one_read_again(
    server: Server, tmp_path: Path
) -> None:
    path = Path(server.registry.url.removeprefix("sqlite:///"))
    viewer, operator = server.client("viewer"), server.client("operator")
    anonymous = server.client()
    with viewer, operator, anonymous:
        assert operator.post("/api/routing/execute", json=ROUTED).status_code == 200
        assert viewer.get("/api/models/health").json()["status"] == "healthy"
        backup = tmp_path / "backup.db"
        with sqlite3.connect(path) as source, sqlite3.connect(backup) as target:
            source.backup(target)
        _overwrite_in_place(path)

        ready = _until(lambda: (r := _ready(anonymous)).status_code == 503 and r)
        database = ready.json()["checks"]["database"]
        assert database["status"] == "fail"
        # which read meets the damage first decides the reason: not a database, or malformed
        assert database["detail"].startswith(UNREADABLE), database
        assert database["detail"].endswith(
            "; restore it from a backup, or run `grove db check` for details"
        )
        assert ready.json()["status"] == "unavailable"
        assert anonymous.get("/healthz").status_code == 200  # alive: do not restart it

        # each process finds the damage by itself, within a second of its next read
        health = _until(
            lambda: (h := viewer.get("/api/models/health")).json()["status"] == "degraded" and h
        )
        assert health.status_code == 200
        assert any(UNREADABLE in r for r in health.json()["reasons"])
        for read in ("/api/routing/logs", "/api/models/alpha/metrics"):
            answer = _until(lambda r=read: (a := viewer.get(r)).status_code == 503 and a)
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"] == "database-not-ready"
            assert UNREADABLE in answer.json()["detail"]
        routed = operator.post("/api/routing/execute", json=ROUTED)  # from the snapshot
        assert routed.status_code == 200, routed.text
        bogus = anonymous.post(
            "/api/routing/execute", json=ROUTED, headers={"Authorization": f"Bearer {BOGUS}"}
        )
        assert bogus.status_code == 401
        for answer in (ready, health, routed, bogus):
            assert str(path.parent) not in answer.text

        _restore(backup, path)
        recovered = _until(lambda: (r := _ready(anonymous)).status_code == 200 and r)
        assert recovered.json()["checks"]["database"]["status"] == "ok"
        _until(lambda: viewer.get("/api/models/health").json()["status"] == "healthy")
        assert viewer.get("/api/routing/logs").status_code == 200


@pytest.mark.slow
@SQLITE_ONLY
def test_probes_in_each_worker_and_the_loop_of_a_single_process(
    registry: Registry, tmp_path: Path
) -> None:
    """``grove serve --workers 2``: every worker answers the probes (the loop runs in the
    parent, not here); ``grove serve``: the loop's thread is checked."""
    env, _, _ = _fleet_and_token(registry, tmp_path, "probes")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _serve(env, tmp_path, port, "--workers", "2")
    try:
        _wait_for(f"{url}/healthz", server)
        for _ in range(6):  # new connections: both workers answer some
            ready = _until(
                lambda: (r := httpx.get(f"{url}/readyz", timeout=10)).status_code == 200 and r
            )
            assert ready.json()["checks"]["reconcileLoop"]["status"] == "skip"
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
    single = _serve(env, tmp_path, port)
    try:
        _wait_for(f"{url}/healthz", single)
        ready = _until(
            lambda: (r := httpx.get(f"{url}/readyz", timeout=10)).status_code == 200 and r
        )
        assert ready.json()["checks"]["reconcileLoop"] == {"status": "ok", "detail": "running"}
    finally:
        single.send_signal(signal.SIGTERM)
        single.communicate(timeout=60)
