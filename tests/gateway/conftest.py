"""A real ``grove serve`` process on a fleet of models backed by fake providers on
loopback, and the official ``openai`` and ``anthropic`` SDKs pointed at it.

Each test module starts one server for its own fleet (its ``fleet`` fixture, through
:func:`serving`), shared by its tests: starting a process takes seconds, a call
milliseconds. Circuits are per server, so a module gives each fault its own model,
called few enough times that no circuit opens under a test's feet.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from reconciler.store import tokens
from reconciler.store.engine import Database
from tests.api.conftest import _grove_quietly, free_port
from tests.api.test_processes import _env, _wait_for
from tests.conftest import FleetRepo, model_yaml
from tests.gateway.callers import AnthropicCaller, Caller, OpenAICaller
from tests.routing.conftest import ENV
from tests.routing.fakes import KEYS, FakeProvider

ROLES = ("admin", "operator", "viewer", "client")
SDK_TIMEOUT_S = 15.0

# the manifests' provider for each fake; an OpenAI fake stands for any compatible server
PROVIDER = {"openai": "openai-compatible", "anthropic": "anthropic", "gemini": "google"}


def fake_model(ident: str, fake: FakeProvider, capabilities: str, **payload: str) -> str:
    """An AIModel manifest served by ``fake`` (its key in the environment); ``payload``
    adds or replaces fields (another ``endpoint``, ``fallbacks``)."""
    fields = {
        "provider": PROVIDER[fake.kind],
        "providerModel": f"{fake.kind}-model",
        "endpoint": fake.url,
        "credentials": f"{{env: {ENV[fake.kind]}}}",
        "capabilities": capabilities,
        "pricing": "{inputPerMTok: 1.0, outputPerMTok: 2.0}",
        "timeoutMs": "5000",
    }
    return model_yaml(ident, **{**fields, **payload})


def closed_endpoint() -> str:
    """An endpoint on a port nobody listens on: a fake, closed (its port is free again)."""
    fake = FakeProvider("anthropic")
    fake.close()
    return fake.url


@dataclasses.dataclass
class Gateway:
    url: str
    tokens: dict[str, str]  # role -> a token of that role
    process: subprocess.Popen[str]
    clients: list[openai.OpenAI | anthropic.Anthropic] = dataclasses.field(default_factory=list)

    def openai(self, role: str = "client") -> openai.OpenAI:
        """The OpenAI SDK with Grove as its base URL and the token of ``role`` (or
        ``role`` itself, a bad token); no retries, so every call is one."""
        client = openai.OpenAI(
            base_url=f"{self.url}/v1",
            api_key=self.tokens.get(role, role),
            max_retries=0,
            timeout=SDK_TIMEOUT_S,
        )
        self.clients.append(client)
        return client

    def anthropic(self, role: str = "client") -> anthropic.Anthropic:
        client = anthropic.Anthropic(
            base_url=self.url,
            api_key=self.tokens.get(role, role),
            max_retries=0,
            timeout=SDK_TIMEOUT_S,
        )
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()

    def api(self, role: str = "operator") -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.tokens[role]}"},
            timeout=SDK_TIMEOUT_S,
        )

    def attempts(self, request_id: str) -> list[dict[str, Any]]:
        """The routing-log rows of one request, first attempt first."""
        with self.api() as client:
            rows = client.get("/api/routing/logs", params={"limit": 1000})
        assert rows.status_code == 200, rows.text
        mine = [row for row in rows.json() if row["requestId"] == request_id]
        return sorted(mine, key=lambda row: row["attempt"])


@contextlib.contextmanager
def serving(
    tmp_path: Path, sqlite_template: Path, manifests: dict[str, str | bytes], *args: str
) -> Iterator[Gateway]:
    """``grove serve`` (with ``args``: ``--workers 2``) on a fleet of ``manifests``
    (reconciled before it starts), with a token per role, on SQLite (the gateway is
    HTTP; the backends are tested elsewhere)."""
    fleet = FleetRepo(tmp_path / "fleet")
    fleet.commit("fleet", manifests)
    bare = tmp_path / "fleet.git"
    fleet.git("clone", "-q", "--bare", str(fleet.root), str(bare))
    database = tmp_path / "registry.db"
    shutil.copyfile(sqlite_template, database)
    database.chmod(0o600)
    db_url = f"sqlite:///{database}"
    made = _tokens(db_url)
    environment = _env(
        GROVE_REPO=str(bare),
        GROVE_DB_URL=db_url,
        GROVE_DATA_DIR=str(tmp_path / "data"),
        GROVE_ALLOW_LOCAL_ENDPOINTS="true",
        **{ENV[kind]: key for kind, key in KEYS.items()},
    )
    # reconciled in this process, as the server would see it (a Python start fewer)
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in list(os.environ):
            if name.startswith("GROVE_"):
                monkeypatch.delenv(name)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)
        reconciled = _grove_quietly("reconcile")
    assert reconciled.code == 0, reconciled.err
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "serve", "--port", str(port), "--no-loop", *args],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # /readyz answers once the snapshot is loaded; /openapi.json made the server
        # build its whole schema first (about a second of its start on a busy machine)
        _wait_for(f"http://127.0.0.1:{port}/readyz", process)
        gateway = Gateway(f"http://127.0.0.1:{port}", made, process)
        yield gateway
        gateway.close()
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=60)


def _tokens(db_url: str) -> dict[str, str]:
    db = Database(db_url)
    try:
        with db.transaction(write=True) as connection:
            return {
                role: tokens.create(
                    connection, name=f"gateway-{role}", role=role, created_by="test"
                )
                for role in ROLES
            }
    finally:
        db.dispose()


@contextlib.contextmanager
def fakes(*kinds: tuple[str, str]) -> Iterator[list[FakeProvider]]:
    """Fake providers of these (kind, reply), closed at the end."""
    started = [FakeProvider(kind, reply=reply) for kind, reply in kinds]
    try:
        yield started
    finally:
        for fake in started:
            fake.close()


@contextlib.contextmanager
def calling(fake: FakeProvider, name: str, arguments: dict[str, Any]) -> Iterator[None]:
    """``fake`` answers a request that offers tools with a call of ``name``."""
    fake.tool_call = (name, arguments)
    try:
        yield
    finally:
        fake.tool_call = None


def wait_for(check: Callable[[], Any], timeout: float = 5.0, every: float = 0.002) -> Any:
    """``check()`` once it is truthy, or its last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(every)


@dataclasses.dataclass
class Fleet:
    """A module's server and the fake behind each model id."""

    gateway: Gateway
    fakes: dict[str, FakeProvider]

    def caller(self, sdk: str, role: str = "client") -> Caller:
        """The application, through the ``sdk`` ("openai" or "anthropic")."""
        if sdk == "openai":
            return OpenAICaller(self.gateway.openai(role))
        return AnthropicCaller(self.gateway.anthropic(role))

    def calls(self) -> int:
        """Requests the fakes have had, all together."""
        return sum(fake.calls for fake in self.fakes.values())


@pytest.fixture(autouse=True)
def _close_clients(request: pytest.FixtureRequest) -> Iterator[None]:
    """The SDK clients a test made are closed when it ends (their connections with them)."""
    yield
    if "fleet" in request.fixturenames:
        fleet: Fleet = request.getfixturevalue("fleet")
        fleet.gateway.close()


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
