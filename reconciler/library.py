"""``MultiModelRegistry``: the product brief's registry API in Python (DESIGN section 9).

An entry point like the CLI and the HTTP API: writes go through git exactly as
the API's do (`authoring`: a commit in the fleet repository, safety checks
first, then a reconcile), and reads come from the router's snapshot of
reconciled state::

    registry = MultiModelRegistry.open(db="sqlite:///.grove/registry.db",
                                       repo=".grove/fleet.git")
    await registry.register_model(model)
    await registry.discover_models([CapabilityType.REASONING])
    await registry.update_model("claude-sonnet", {"priority": 95})
    await registry.remove_model("claude-sonnet")

Writes share the API's rules: an update bumps to a version the model never had
(`authoring.bump`), and while a change freeze holds (``grove suspend``) every
write raises `authoring.Suspended` unless ``force=True``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.base import settings as settings_module
from reconciler.gitops import authoring
from reconciler.manifests import kinds as manifests
from reconciler.routing import engine as routing
from reconciler.store.engine import Database


class MultiModelRegistry:
    def __init__(self, settings: settings_module.Settings, *, author: str = "python") -> None:
        self.settings = settings
        self.db = Database(settings.db_url)
        self.writer = authoring.Authoring(settings, self.db)
        self.engine = routing.RoutingEngine(settings, self.db, write_logs=False)
        self.author = authoring.Author.of(author)

    @classmethod
    def open(
        cls, db: str | None = None, repo: str | None = None, *, author: str = "python"
    ) -> MultiModelRegistry:
        registry = cls(settings_module.load(db_url=db, repo=repo), author=author)
        registry.engine.refresh()
        return registry

    async def register_model(
        self, model: manifests.AIModel | Mapping[str, Any], *, force: bool = False
    ) -> authoring.WriteResult:
        document = (
            manifests.to_document(model) if isinstance(model, manifests.AIModel) else dict(model)
        )
        return await self._write(self.writer.register, document, self.author, force=force)

    async def discover_models(
        self, capabilities: Iterable[manifests.CapabilityType | str], min_score: float = 0.0
    ) -> list[manifests.AIModel]:
        """Enabled models with every capability at ``min_score``, best first."""
        await asyncio.to_thread(self.engine.refresh)
        wanted = [manifests.CapabilityType(c) for c in capabilities]
        return [model for _, model in self.engine.table().discover(wanted, min_score)]

    async def update_model(
        self, model_id: str, changes: Mapping[str, Any], *, force: bool = False
    ) -> authoring.WriteResult:
        """Merge ``changes`` into the payload (camelCase keys); the version is bumped to
        one the model never had applied or quarantined."""
        return await self._write(
            self.writer.update,
            manifests.KIND_MODEL,
            model_id,
            {"payload": dict(changes)},
            self.author,
            force=force,
        )

    async def remove_model(self, model_id: str, *, force: bool = False) -> authoring.WriteResult:
        return await self._write(
            self.writer.remove, manifests.KIND_MODEL, model_id, self.author, force=force
        )

    async def _write(self, operation: Any, *args: Any, **options: Any) -> authoring.WriteResult:
        result: authoring.WriteResult = await asyncio.to_thread(operation, *args, **options)
        await asyncio.to_thread(self.engine.refresh)
        return result

    def close(self) -> None:
        self.engine.close()
