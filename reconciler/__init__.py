"""Grove: a GitOps reconciler and router for fleets of AI models.

The public Python API (DESIGN.md section 9). Names are imported lazily so that
``import reconciler`` stays cheap for the command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.library import MultiModelRegistry
    from reconciler.manifests.kinds import CapabilityType
    from reconciler.manifests.scoring import MatchScore, match_capabilities
    from reconciler.routing.engine import RoutingEngine
    from reconciler.routing.ranking import TaskRequest

__all__ = [
    "CapabilityType",
    "MatchScore",
    "MultiModelRegistry",
    "RoutingEngine",
    "TaskRequest",
    "match_capabilities",
]

_EXPORTS = {
    "CapabilityType": ("reconciler.manifests.kinds", "CapabilityType"),
    "MatchScore": ("reconciler.manifests.scoring", "MatchScore"),
    "MultiModelRegistry": ("reconciler.library", "MultiModelRegistry"),
    "RoutingEngine": ("reconciler.routing.engine", "RoutingEngine"),
    "TaskRequest": ("reconciler.routing.ranking", "TaskRequest"),
    "match_capabilities": ("reconciler.manifests.scoring", "match_capabilities"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'reconciler' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module_name), attribute)
