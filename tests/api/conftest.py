"""A real Grove server on a loopback port, with a bare fleet repository and a token per role
(``client`` included)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from reconciler import api, cli
from reconciler.base import settings
from reconciler.store import tokens
from reconciler.store.engine import Database
from tests.conftest import FleetRepo, GroveRunner, PostgresPool, Registry, Run
from tests.reconciling.conftest import small_fleet


@dataclasses.dataclass
class Server:
    url: str
    tokens: dict[str, str]
    bare: Path
    registry: Registry
    app: FastAPI  # the application behind the body limits

    def lean_routes(self, on: bool) -> None:
        """Send the hot route through the lean handler (the default) or FastAPI's own."""
        self.app.state.lean_routes = on

    def client(self, role: str | None = None, **options: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **options)

    def log(self) -> list[str]:
        out = FleetRepo.__new__(FleetRepo)
        out.root = self.bare
        return out.git("log", "--format=%an|%s").splitlines()


class PromptServer(uvicorn.Server):
    """uvicorn's server, which stops as soon as it is told (:meth:`stop`): its main loop
    looks at ``should_exit`` every 0.1 s, here also when woken. Everything else, the
    shutdown included, is uvicorn's."""

    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    def stop(self) -> None:
        """From another thread: exit now, not at the next tick."""
        self.should_exit = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # its loop closed already
                self._loop.call_soon_threadsafe(self._wake.set)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def bare_fleet(fleet: FleetRepo, tmp_path: Path) -> Path:
    fleet.commit("fleet", small_fleet())
    bare = tmp_path / "fleet.git"
    fleet.git("clone", "-q", "--bare", str(fleet.root), str(bare))
    return bare


@pytest.fixture
def server(
    registry: Registry, bare_fleet: Path, monkeypatch: pytest.MonkeyPatch, grove: GroveRunner
) -> Iterator[Server]:
    yield from serve(registry, bare_fleet, str(bare_fleet), monkeypatch, grove)


@pytest.fixture
def remote_server(
    registry: Registry, bare_fleet: Path, monkeypatch: pytest.MonkeyPatch, grove: GroveRunner
) -> Iterator[Server]:
    """The same, with the fleet repository as a remote (``file://``): fetched into a mirror."""
    yield from serve(registry, bare_fleet, bare_fleet.as_uri(), monkeypatch, grove)


@pytest.fixture
def resolving_server(
    registry: Registry, bare_fleet: Path, monkeypatch: pytest.MonkeyPatch, grove: GroveRunner
) -> Iterator[Server]:
    """The same, checking endpoint names by DNS at registration (tests patch the resolver)."""
    yield from serve(registry, bare_fleet, str(bare_fleet), monkeypatch, grove, resolve=True)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The same server as ``server``, on each backend, started once for a module's tests
    that only read or are refused (and check that the refusal changed nothing): none of
    them changes what the next one sees, and starting a server per test (a reconcile,
    four tokens, the app, uvicorn) costs about a second on a busy machine. A test that
    writes, routes calls or counts anything uses ``server``. SQLite only:
    ``@pytest.mark.parametrize("shared_server", ["sqlite"], indirect=True)``."""
    yield from shared(request, tmp_path_factory, request.param)


def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, backend: str
) -> Iterator[Server]:
    """A server over the small fleet on ``backend`` ("sqlite" or "postgresql") for a
    fixture of a wider scope than a test's (``shared_server``)."""
    root = tmp_path_factory.mktemp("shared-server")
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            path = root / "registry.db"
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
            path.chmod(0o600)  # as Grove creates it
            url = f"sqlite:///{path}"
        else:
            pool: PostgresPool = request.getfixturevalue("postgres_pool")
            url = pool.take()
            stack.callback(pool.give_back, url)
        monkeypatch = stack.enter_context(pytest.MonkeyPatch.context())
        for name in list(os.environ):  # as tests/conftest.py's _clean_environment does
            if name.startswith("GROVE_"):
                monkeypatch.delenv(name)
        fleet = FleetRepo(root / "fleet")
        fleet.commit("fleet", small_fleet())
        bare = root / "fleet.git"
        fleet.git("clone", "-q", "--bare", str(fleet.root), str(bare))
        monkeypatch.setenv("GROVE_DB_URL", url)
        monkeypatch.setenv("GROVE_DATA_DIR", str(root / "data"))
        monkeypatch.chdir(root)
        registry = Registry(_grove_quietly, fleet, url)
        assert registry.run("db", "upgrade").code == 0
        yield from serve(registry, bare, str(bare), monkeypatch, _grove_quietly)


def _grove_quietly(*args: str) -> Run:
    """``grove ARGS...`` in this process, its output kept (``grove`` needs a test's capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.run(list(args))
    return Run(code, out.getvalue(), err.getvalue())


def serve(
    registry: Registry,
    bare_fleet: Path,
    location: str,
    monkeypatch: pytest.MonkeyPatch,
    grove: GroveRunner,
    *,
    resolve: bool = False,
) -> Iterator[Server]:
    monkeypatch.setenv("GROVE_REPO", location)
    # no real DNS from tests: off, or on with socket.getaddrinfo patched by the test
    monkeypatch.setenv("GROVE_RESOLVE_ENDPOINTS", "true" if resolve else "false")
    monkeypatch.setenv("GROVE_WEBHOOK_SECRET", "hook-secret")
    assert grove("reconcile").code == 0
    config = settings.load()
    db = Database(config.db_url)
    made = {}
    with db.transaction(write=True) as connection:
        for role in ("viewer", "operator", "admin", "client"):
            made[role] = tokens.create(
                connection, name=f"{role}-token", role=role, created_by="test"
            )
    db.dispose()
    port = free_port()
    outer = api.asgi(config)
    uvicorn_server = PromptServer(
        uvicorn.Config(outer, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvicorn_server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert uvicorn_server.started
    try:
        yield Server(f"http://127.0.0.1:{port}", made, bare_fleet, registry, outer.app)
    finally:
        uvicorn_server.stop()
        thread.join(timeout=20)
