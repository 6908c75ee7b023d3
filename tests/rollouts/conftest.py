"""A fleet with one model under rollout: real git (a bare remote), a real registry, and
each version of the model served by its own fake OpenAI-compatible provider on loopback,
so which version answered is seen at the provider too."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.base import settings as settings_module
from reconciler.gitops import rollouts as analysis
from reconciler.routing import engine as routing
from reconciler.routing.ranking import TaskRequest
from reconciler.store import rollouts
from reconciler.store.engine import Database
from tests.conftest import FleetRepo, Registry, rule_yaml
from tests.routing.fakes import FakeProvider

SLO = "{minSuccessRate: 0.95, maxP95LatencyMs: 5000, minSamples: 40, windowS: 3600}"
STEPS = "{steps: [{weight: 10, pauseS: 60}, {weight: 50, pauseS: 60}]}"


def alpha_yaml(
    version: str,
    endpoint: str,
    *,
    slo: str | None = SLO,
    rollout: str | None = STEPS,
    extra: str = "",
) -> str:
    lines = [
        f'meta: {{id: alpha, type: AIModel, version: "{version}"}}',
        "payload:",
        "  name: Alpha",
        "  provider: openai-compatible",
        "  providerModel: alpha-model",
        f"  endpoint: {endpoint}",
        "  capabilities: {reasoning: 0.9, speed: 0.8}",
        "  priority: 90",
        "  fallbacks: [beta]",
    ]
    if slo:
        lines.append(f"  slo: {slo}")
    if rollout:
        lines.append(f"  rollout: {rollout}")
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


BETA = (
    'meta: {id: beta, type: AIModel, version: "1"}\npayload:\n  name: Beta\n  provider: mock\n'
    "  capabilities: {reasoning: 0.9, speed: 0.8}\n  priority: 10\n"
)


@dataclasses.dataclass
class Canary:
    registry: Registry
    fleet: FleetRepo
    bare: Path
    stable: FakeProvider  # serves version 1
    canary: FakeProvider  # serves version 2
    settings: settings_module.Settings
    databases: list[Database] = dataclasses.field(default_factory=list)

    def push(self, message: str, files: dict[str, str | bytes]) -> str:
        return self.fleet.push_to(self.bare, message, files)

    def reconcile(self) -> None:
        done = self.registry.run("reconcile")
        assert done.code == 0, done.err

    def db(self) -> Database:
        """A database handle, disposed at the end of the test."""
        made = Database(self.settings.db_url)
        self.databases.append(made)
        return made

    def latest(self) -> rollouts.Rollout:
        db = self.db()
        with db.transaction() as connection:
            found = rollouts.latest(connection, "alpha")
        assert found is not None
        return found

    def log(self) -> list[str]:
        """``author|subject`` of the fleet branch, newest first."""
        out = FleetRepo.__new__(FleetRepo)
        out.root = self.bare
        return out.git("log", "--format=%an|%s", "main").splitlines()

    def log_head(self) -> str:
        out = FleetRepo.__new__(FleetRepo)
        out.root = self.bare
        return out.git("rev-parse", "main")

    def message(self, ref: str = "main") -> str:
        out = FleetRepo.__new__(FleetRepo)
        out.root = self.bare
        return out.git("log", "-1", "--format=%B", ref)

    def analyst(self) -> analysis.Analyst:
        return analysis.Analyst(self.settings, self.db(), holder="test-analyst")


@pytest.fixture
def canary(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Canary]:
    """Version 1 of alpha live (no rollout yet: it was created), beta as its fallback."""
    monkeypatch.setenv("GROVE_ALLOW_LOCAL_ENDPOINTS", "true")  # the fakes are on loopback
    monkeypatch.setenv("GROVE_RESOLVE_ENDPOINTS", "false")
    stable, new = FakeProvider("openai", reply="from v1"), FakeProvider("openai", reply="from v2")
    fleet = registry.fleet
    fleet.commit(
        "fleet",
        {
            "models/alpha.yaml": alpha_yaml("1", stable.url),
            "models/beta.yaml": BETA,
            "rules/think.yaml": rule_yaml("think"),
        },
    )
    bare = tmp_path / "fleet.git"
    fleet.git("clone", "-q", "--bare", str(fleet.root), str(bare))
    monkeypatch.setenv("GROVE_REPO", str(bare))
    made = Canary(registry, fleet, bare, stable, new, settings_module.load())
    made.reconcile()
    try:
        yield made
    finally:
        for db in made.databases:
            db.dispose()
        stable.close()
        new.close()


def route(engine: routing.RoutingEngine, count: int, **request: Any) -> list[routing.RoutingResult]:
    """``count`` calls of task ``think``, each with a new request id, one event loop."""

    async def calls() -> list[routing.RoutingResult]:
        out = []
        for _ in range(count):
            task = TaskRequest(task_type="think", request_id=str(uuid.uuid4()), **request)
            out.append(await engine.route_request(task))
        return out

    results = routing.run(engine, calls())
    engine.flush_logs()
    return results


def later(rollout: rollouts.Rollout, seconds: float) -> dt.datetime:
    return rollout.step_started_at + dt.timedelta(seconds=seconds)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
