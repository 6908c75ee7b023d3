"""``/api/rollouts`` and ``/api/quarantine`` (DESIGN section 11): read rollouts, promote or
abort one, list quarantined versions and lift one.

Reads need a viewer; promoting and aborting an operator (an abort's rollback commit is
authored by the caller); lifting a quarantine an admin. The answers are the documents
``grove rollout status -o json`` and ``grove quarantine list -o json`` print. Handlers
are plain functions: FastAPI runs them in its thread pool, where database and git work
belongs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from reconciler.api.deps import Admin, Operator, ServicesDep, Viewer
from reconciler.api.problems import ApiError
from reconciler.api.rollout_bodies import (
    AbortBody,
    LiftOut,
    QuarantinedOut,
    RolloutDetail,
    RolloutOut,
)
from reconciler.gitops import delivery
from reconciler.gitops import rollouts as analysis
from reconciler.manifests import kinds as manifests

router = APIRouter(prefix="/api/rollouts", tags=["rollouts"])
quarantine = APIRouter(prefix="/api/quarantine", tags=["rollouts"])

VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$"  # as manifests' Version
ModelId = Annotated[str, Path(pattern=manifests.ID_PATTERN, max_length=63)]
ObjectId = Annotated[str, Path(pattern=manifests.ID_PATTERN, max_length=63)]
Version = Annotated[str, Path(pattern=VERSION_PATTERN, max_length=64)]
Kind = Literal["AIModel", "RoutingRule"]


@contextmanager
def _answered() -> Iterator[None]:
    """The rollout and quarantine errors as their problems."""
    try:
        yield
    except analysis.NotFound as exc:
        raise ApiError(404, "no-rollout", "No rollout", str(exc)) from None
    except analysis.NotOpen as exc:
        raise ApiError(409, "rollout-not-open", "The rollout is not open", str(exc)) from None
    except delivery.NotQuarantined as exc:
        raise ApiError(404, "not-quarantined", "Not quarantined", str(exc)) from None
    except delivery.Ambiguous as exc:
        raise ApiError(409, "ambiguous", "Ambiguous", str(exc)) from None


def _rollouts(services: ServicesDep) -> analysis.Rollouts:
    """The service, telling this process's router at once when routing changes."""
    return analysis.Rollouts(services.settings, services.db, on_routing=services.engine.refresh)


@router.get(
    "",
    response_model=list[RolloutOut],
    summary="Every model's latest rollout, open ones first",
)
def list_rollouts(services: ServicesDep, identity: Viewer) -> list[RolloutOut]:
    return [
        RolloutOut.model_validate(delivery.item(rollout))
        for rollout in _rollouts(services).listing()
    ]


@router.get(
    "/{model_id}",
    response_model=RolloutDetail,
    summary="A model's latest rollout, with the earlier ones in history",
)
def read_rollout(model_id: ModelId, services: ServicesDep, identity: Viewer) -> RolloutDetail:
    with _answered():
        latest, earlier = _rollouts(services).get(model_id)
    return RolloutDetail.model_validate(delivery.detail(latest, earlier))


@router.post(
    "/{model_id}/promote",
    response_model=RolloutOut,
    summary="Make the canary stable now: every call to it, the rollout Successful",
)
def promote(model_id: ModelId, services: ServicesDep, identity: Operator) -> RolloutOut:
    with _answered():
        done = _rollouts(services).promote(model_id, actor=identity.name)
    return RolloutOut.model_validate(delivery.item(done))


@router.post(
    "/{model_id}/abort",
    response_model=RolloutOut,
    summary="Stop the canary now and roll back by a commit authored by the caller",
)
def abort(
    model_id: ModelId,
    services: ServicesDep,
    identity: Operator,
    body: AbortBody | None = None,
) -> RolloutOut:
    reason = (body.reason or "").strip() if body else ""
    with _answered():
        done = _rollouts(services).abort(model_id, actor=identity.name, reason=reason)
    services.engine.refresh()  # the rollback's apply: version 1 is live again
    return RolloutOut.model_validate(delivery.item(done))


@quarantine.get(
    "",
    response_model=list[QuarantinedOut],
    summary="Every quarantined version: held back from being applied again (P003)",
)
def list_quarantined(
    services: ServicesDep,
    identity: Viewer,
    ident: Annotated[
        str | None, Query(alias="id", pattern=manifests.ID_PATTERN, max_length=63)
    ] = None,
    kind: Annotated[Kind | None, Query(alias="type")] = None,
) -> list[QuarantinedOut]:
    found = delivery.Quarantines(services.db).listing(ident, kind=kind)
    return [QuarantinedOut.model_validate(held.to_json()) for held in found]


@quarantine.delete(
    "/{object_id}/{version}",
    response_model=LiftOut,
    summary="Lift a quarantine: the version may be applied again (admin)",
)
def lift(
    object_id: ObjectId,
    version: Version,
    services: ServicesDep,
    identity: Admin,
    kind: Annotated[
        Kind | None, Query(alias="type", description="When a model and a rule share the id.")
    ] = None,
) -> LiftOut:
    with _answered():
        lifted = delivery.Quarantines(services.db).lift(
            object_id, version, actor=identity.name, kind=kind
        )
    return LiftOut.model_validate({**lifted.to_json(), "lifted": True, "by": identity.name})
