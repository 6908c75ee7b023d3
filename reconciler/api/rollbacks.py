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

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from reconciler.api.deps import Operator, ServicesDep, allow_force, author
from reconciler.api.problems import ApiError, FieldError
from reconciler.manifests import kinds as manifests

router = APIRouter(prefix="/api/models", tags=["models"])


class RollbackOut(BaseModel):
    """What the rollback did or, dry, would do (the same document as
    ``grove rollback -o json``)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    kind: str
    id: str
    change: str = Field(
        description="rolled-back (committed and applied), dry-run, nothing (already live), "
        "pending (git holds it already, not applied), committed (not applied yet) or unchanged"
    )
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
    request: Request,
    services: ServicesDep,
    identity: Operator,
    dry_run: Annotated[bool, Query(alias="dryRun")] = False,
    to: Annotated[str | None, Query(max_length=64, description="A version to go to.")] = None,
    force: bool = False,
) -> RollbackOut:
    _only_known(request)
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


_PARAMETERS = ("dryRun", "to", "force")


def _only_known(request: Request) -> None:
    """A rollback is not undone by a typo: an unknown query parameter (``dry_run``,
    ``dryrun``) or one given twice (``dryRun=true&dryRun=false``) is a 422, before
    anything happens, instead of a real rollback that ignored it."""
    query = request.query_params
    for name in query:
        if name not in _PARAMETERS:
            raise ApiError(
                422,
                "invalid-request",
                "Invalid request",
                f"unknown query parameter {name[:64]!r}; a rollback takes "
                + ", ".join(_PARAMETERS),
                errors=[FieldError(path=f"query.{name[:64]}", message="unknown parameter")],
            )
        if len(query.getlist(name)) > 1:
            raise ApiError(
                422,
                "invalid-request",
                "Invalid request",
                f"{name} is given more than once",
                errors=[FieldError(path=f"query.{name}", message="given more than once")],
            )
