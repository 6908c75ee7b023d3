"""``POST /api/models/{id}/rollback[?dryRun=true]``: `grove rollback` over HTTP.

The model goes back to the version live before the current one, as the registry
applied them, by a ``git revert`` of the commit that introduced the current
version when that commit touched only this model, else by a commit restoring its
previous document; the version rolled back from is quarantined. ``dryRun`` answers
the commit message, the diff and the plan and changes nothing. A plain function:
FastAPI runs it in its thread pool, where the blocking git and database work belongs.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from reconciler import manifests
from reconciler.api.deps import Operator, ServicesDep, allow_force, author

router = APIRouter(prefix="/api/models", tags=["models"])


class RollbackOut(BaseModel):
    """What the rollback did or, dry, would do (the same document as
    ``grove rollback -o json``)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    kind: str
    id: str
    change: str = Field(description="rolled-back, dry-run or nothing (already live)")
    from_version: str
    to_version: str
    method: str | None = Field(description="revert (a git revert) or restore (a commit)")
    undoes: str | None = Field(description="The commit that introduced the version undone.")
    detail: str
    revision: str | None = Field(description="The rollback's commit, when one was made.")
    applied: bool
    quarantined: list[str]
    refused: bool = Field(description="A dry run the safety checks would refuse.")
    message: str | None = Field(description="A dry run's commit message.")
    diff: str | None = Field(description="A dry run's diff of the fleet repository.")
    plan: dict[str, Any] | None = Field(description="A dry run's plan of the apply.")
    live_since: str | None = Field(
        description="Nothing to roll back: the revision whose apply made the version live."
    )
    reverted_in: str | None = Field(
        description="Nothing to roll back: the commit that brought the version back."
    )


@router.post(
    "/{model_id}/rollback",
    response_model=RollbackOut,
    summary="Return a model to the version live before the current one (a git commit)",
)
def rollback(
    model_id: str,
    services: ServicesDep,
    identity: Operator,
    dry_run: Annotated[bool, Query(alias="dryRun")] = False,
    to: Annotated[str | None, Query(max_length=64, description="A version to go to.")] = None,
    force: bool = False,
) -> RollbackOut:
    done = services.authoring.rollback(
        model_id,
        author(identity),
        kind=manifests.KIND_MODEL,
        to_version=to,
        force=allow_force(identity, force),
        dry_run=dry_run,
    )
    if done.change == "rolled-back":
        services.engine.refresh()
    return RollbackOut.model_validate(done.to_json())
