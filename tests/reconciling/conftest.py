"""A fleet repository wired to a registry database (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from reconciler import manifests
from reconciler.store import tables
from tests.conftest import FleetRepo, GroveRunner, Run, model_yaml, rule_yaml


@dataclasses.dataclass
class Registry:
    """The CLI, the fleet repository and direct SQL access to one registry database."""

    grove: GroveRunner
    fleet: FleetRepo
    url: str

    def run(self, *args: str) -> Run:
        return self.grove(*args)

    def sql(self, statement: str, **params: Any) -> list[Any]:
        engine = create_engine(self.url)
        try:
            with engine.begin() as connection:
                result = connection.execute(text(statement), params)
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()

    def live(self) -> dict[str, dict[str, Any]]:
        """object id -> {"version", "state", "payload"} for every live model and rule."""
        engine = create_engine(self.url)
        out: dict[str, dict[str, Any]] = {}
        try:
            with engine.connect() as connection:
                for kind, table in tables.LIVE_TABLES.items():
                    for row in connection.execute(select(table)):
                        document = {"meta": row.meta, "payload": row.payload}
                        out[f"{kind}/{row.object_id}"] = {
                            "version": row.version,
                            "state": manifests.state_of(document),
                            "payload": row.payload,
                        }
        finally:
            engine.dispose()
        return out

    def content_hash(self) -> str:
        """One hash over every live object's content: equal registries, equal hashes."""
        engine = create_engine(self.url)
        try:
            with engine.connect() as connection:
                parts = []
                for kind, table in sorted(tables.LIVE_TABLES.items()):
                    for row in connection.execute(select(table).order_by(table.c.object_id)):
                        document = {"meta": row.meta, "payload": row.payload}
                        parts.append(f"{kind}/{row.object_id}={manifests.content_hash(document)}")
        finally:
            engine.dispose()
        return manifests.content_hash({"meta": {"objects": parts}, "payload": {}})

    def events(self) -> list[tuple[str, str]]:
        rows = self.sql("SELECT event_type, object_id FROM lifecycle_events ORDER BY id")
        return [(row[0], row[1]) for row in rows]

    def revisions(self) -> list[str]:
        return [row[0] for row in self.sql("SELECT revision FROM revisions ORDER BY id")]


@pytest.fixture
def registry(
    fleet: FleetRepo,
    db_url: str,
    grove: GroveRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Registry:
    monkeypatch.setenv("GROVE_REPO", str(fleet.root))
    monkeypatch.setenv("GROVE_DB_URL", db_url)
    monkeypatch.setenv("GROVE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert grove("db", "upgrade").code == 0
    return Registry(grove, fleet, db_url)


def small_fleet() -> dict[str, str]:
    """Three models and a rule: enough for every change kind."""
    return {
        "models/alpha.yaml": model_yaml("alpha", priority="90", fallbacks="[beta]"),
        "models/beta.yaml": model_yaml("beta", priority="50"),
        "models/gamma.yaml": model_yaml("gamma", priority="10"),
        "rules/think.yaml": rule_yaml("think", minScore="0.5"),
    }
