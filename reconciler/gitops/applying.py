"""Apply a plan to the registry: all of it in one transaction, or nothing.

Called by the reconciling service (``grove apply``, ``grove reconcile``, the
API later). It refuses a plan the safety checks refused unless ``force`` is
given, and records which violations were overridden in every event. The
store does the locking and compare-and-set; this layer decides whether to try.
"""

from __future__ import annotations

from reconciler.base import errors
from reconciler.planning.plans import Plan
from reconciler.store import coordination, registry
from reconciler.store.engine import Database


def apply(
    db: Database,
    plan: Plan,
    *,
    actor: str,
    force: bool = False,
    fence: coordination.Lease | None = None,
) -> registry.Applied:
    if plan.refused and not force:
        codes = ", ".join(sorted({v.code for v in plan.violations}))
        raise errors.PlanRefused(
            f"safety checks refused the plan ({codes}); nothing was applied", plan
        )
    forced_codes = sorted({v.code for v in plan.violations}) if force else []
    with db.transaction(write=True) as connection:
        return registry.apply_plan(
            connection, plan, actor=actor, forced_codes=forced_codes, fence=fence
        )
