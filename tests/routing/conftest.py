"""Routing fixtures: fake providers on loopback, models pointing at them, engines."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from reconciler.base import settings
from reconciler.manifests import kinds as manifests
from reconciler.routing import engine as routing
from reconciler.routing import snapshots
from tests.conftest import Registry
from tests.routing.fakes import KEYS, FakeProvider

ENV = {"openai": "FAKE_OPENAI_KEY", "anthropic": "FAKE_ANTHROPIC_KEY", "gemini": "FAKE_GEMINI_KEY"}
PROVIDER = {"openai": "openai", "anthropic": "anthropic", "gemini": "google"}


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for kind, variable in ENV.items():
        monkeypatch.setenv(variable, KEYS[kind])
    monkeypatch.delenv(routing.OVERRIDE_VARIABLE, raising=False)


@pytest.fixture
def local_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROVE_ALLOW_LOCAL_ENDPOINTS", "true")


@pytest.fixture
def fake() -> Iterator[Callable[[str], FakeProvider]]:
    started: list[FakeProvider] = []

    def make(kind: str, **options: Any) -> FakeProvider:
        server = FakeProvider(kind, **options)
        started.append(server)
        return server

    yield make
    for server in started:
        server.close()


def model_doc(
    ident: str,
    server: FakeProvider | None = None,
    *,
    priority: int = 100,
    capabilities: dict[str, float] | None = None,
    **payload: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": ident,
        "capabilities": capabilities or {"reasoning": 0.9, "speed": 0.8},
        "priority": priority,
        "timeoutMs": 2000,
    }
    if server is None:
        body["provider"] = "mock"
    else:
        body.update(
            provider=PROVIDER[server.kind],
            providerModel=f"{server.kind}-model",
            endpoint=server.url,
            credentials={"env": ENV[server.kind]},
            pricing={"inputPerMTok": 1.0, "outputPerMTok": 2.0},
        )
    body.update(payload)
    return {"meta": {"id": ident, "type": "AIModel", "version": "1"}, "payload": body}


def rule_doc(ident: str, **payload: Any) -> dict[str, Any]:
    body = {"taskType": ident, "requires": ["reasoning"]}
    body.update(payload)
    return {"meta": {"id": ident, "type": "RoutingRule", "version": "1"}, "payload": body}


def snapshot_of(*documents: dict[str, Any], serial: int = 1) -> snapshots.Snapshot:
    models: dict[str, manifests.AIModel] = {}
    rules: dict[str, manifests.RoutingRule] = {}
    for document in documents:
        obj = manifests.parse_document(document, allow_local_endpoints=True)
        if isinstance(obj, manifests.AIModel):
            models[obj.id] = obj
        else:
            rules[obj.id] = obj
    return snapshots.Snapshot(
        serial, "0" * 40, MappingProxyType(models), MappingProxyType(rules), time.monotonic()
    )


@pytest.fixture
def engine_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> Iterator[Callable[..., routing.RoutingEngine]]:
    made: list[routing.RoutingEngine] = []
    monkeypatch.setenv("GROVE_ALLOW_LOCAL_ENDPOINTS", "true")
    monkeypatch.setenv("GROVE_DATA_DIR", str(tmp_path / "data"))

    def make(*documents: dict[str, Any], **options: Any) -> routing.RoutingEngine:
        engine = routing.RoutingEngine(settings.load(), None, write_logs=False, **options)
        engine.use_snapshot(snapshot_of(*documents))
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


def ask(
    engine: routing.RoutingEngine, task: str = "think", **request: Any
) -> routing.RoutingResult:
    return routing.run(
        engine, engine.route_request(routing.TaskRequest(task_type=task, prompt="hello", **request))
    )


def commit_documents(registry: Registry, *documents: dict[str, Any]) -> None:
    """Commit the documents to the registry's fleet repository and reconcile them."""
    files = {f"{d['meta']['type']}-{d['meta']['id']}.yaml": yaml.safe_dump(d) for d in documents}
    registry.fleet.commit("fleet", files)
    result = registry.run("reconcile")
    assert result.code == 0, result.err
