"""Grove: a GitOps reconciler and router for fleets of AI models.

The public Python API (DESIGN.md section 9). Names are imported lazily so that
``import reconciler`` stays cheap for the command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.library import MultiModelRegistry
    from reconciler.manifests import CapabilityType
    from reconciler.ranking import TaskRequest
    from reconciler.routing import RoutingEngine
    from reconciler.scoring import MatchScore, match_capabilities

__all__ = [
    "CapabilityType",
    "MatchScore",
    "MultiModelRegistry",
    "RoutingEngine",
    "TaskRequest",
    "match_capabilities",
]

_EXPORTS = {
    "CapabilityType": ("reconciler.manifests", "CapabilityType"),
    "MatchScore": ("reconciler.scoring", "MatchScore"),
    "MultiModelRegistry": ("reconciler.library", "MultiModelRegistry"),
    "RoutingEngine": ("reconciler.routing", "RoutingEngine"),
    "TaskRequest": ("reconciler.ranking", "TaskRequest"),
    "match_capabilities": ("reconciler.scoring", "match_capabilities"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'reconciler' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module_name), attribute)
