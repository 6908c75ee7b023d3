"""``/api/models``: list, register, discover, health, read, change, enable, disable, remove,
metrics, rollback.

Reads come from the router's in-memory snapshot; writes go through git
(`authoring`) and answer once the commit is reconciled. Write handlers are
plain functions: FastAPI runs them in its thread pool, where the blocking git
and database work belongs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import json
import re
import socket
import weakref
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from reconciler.api.bodies import (
    HealthOut,
    ModelDetail,
    ModelSummary,
    PatchBody,
    RegisterBody,
    RollbackOut,
    WriteOut,
)
from reconciler.api.deps import Operator, Services, ServicesDep, Viewer, allow_force, author
from reconciler.api.problems import ApiError, FieldError
from reconciler.gitops.authoring import RollbackChange, WriteResult
from reconciler.manifests import addresses, secretscan
from reconciler.manifests import kinds as manifests
from reconciler.planning import listings
from reconciler.routing import analysis
from reconciler.store import tokens

router = APIRouter(prefix="/api/models", tags=["models"])
_WINDOW = re.compile(r"^(\d{1,7})(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_S = 30 * 86400


def _model(services: ServicesDep, ident: str) -> manifests.AIModel:
    model = services.engine.table().models.get(ident)
    if model is None:
        raise ApiError(404, "not-found", "Not found", f"no live model has the id {ident!r}")
    return model


def _detail(model: manifests.AIModel) -> ModelDetail:
    return ModelDetail(**ModelSummary.of(model).model_dump(), manifest=model)


def _written(services: ServicesDep, result: WriteResult) -> WriteOut:
    services.engine.refresh()
    model = result.object if isinstance(result.object, manifests.AIModel) else None
    return WriteOut(
        revision=result.revision,
        change=result.change,
        applied=result.applied,
        detail=result.detail,
        branch=result.branch,
        model=_detail(model) if model else None,
    )


# getaddrinfo has no timeout of its own (the system resolver may retry for tens of
# seconds): registration waits this long, in a small pool of its own.
RESOLVE_TIMEOUT_S = 2.0
_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="grove-dns")


def _check_resolution(services: ServicesDep, endpoint: str | None) -> None:
    """Registration refuses a name that resolves to a private address (unless allowed)."""
    if endpoint is None or not services.settings.resolve_endpoints:
        return
    host = _host(endpoint)
    if host is None or addresses.parse_ip_literal(host) is not None:
        return
    lookup = _RESOLVER.submit(socket.getaddrinfo, host, 443, type=socket.SOCK_STREAM)
    try:
        infos = lookup.result(timeout=RESOLVE_TIMEOUT_S)
    except (OSError, concurrent.futures.TimeoutError):
        # unresolvable now, or the resolver is slow (it cannot be interrupted; its
        # thread finishes on its own): the connect-time check still guards every call
        return
    for info in infos:
        try:
            addresses.check_ip(
                ipaddress.ip_address(str(info[4][0]).split("%")[0]),
                allow_local=services.settings.allow_local_endpoints,
            )
        except addresses.EndpointRejected as exc:
            raise ApiError(
                422,
                "endpoint-not-allowed",
                "Endpoint not allowed",
                f"{host}: {exc}",
                errors=[FieldError(path="endpoint", message=str(exc))],
            ) from None


def _host(endpoint: str) -> str | None:
    try:
        return urlsplit(endpoint).hostname
    except ValueError:
        return None


@router.post(
    "/register",
    status_code=201,
    response_model=WriteOut,
    summary="Register a model (a commit to the fleet repository)",
)
def register(
    body: RegisterBody, services: ServicesDep, identity: Operator, force: bool = False
) -> WriteOut:
    document = body.document()
    leaks = [
        (*path[:-1], "<key>") if is_key else path for path, _, is_key in secretscan.scan(document)
    ]
    if leaks:  # named by field only: neither the value nor a key that is a secret is echoed
        raise ApiError(
            422,
            "literal-secret",
            "Literal secret",
            "a field looks like a key or token; "
            "put keys in an environment variable and send credentials: {env: NAME}",
            errors=[
                FieldError(path=".".join(str(p) for p in path[1:]), message="looks like a secret")
                for path in leaks
            ],
        )
    try:
        manifests.AIModel.model_validate(
            document,
            context=manifests.validator_context(
                allow_local_endpoints=services.settings.allow_local_endpoints
            ),
        )
    except ValidationError as exc:
        raise ApiError(
            422,
            "invalid-model",
            "Invalid model",
            "the model does not pass validation",
            errors=[
                FieldError(path=".".join(str(p) for p in e["loc"][1:]) or "body", message=e["msg"])
                for e in exc.errors(include_input=False)
            ],
        ) from None
    _check_resolution(services, document["payload"].get("endpoint"))
    result = services.authoring.register(
        document, author(identity), force=allow_force(identity, force)
    )
    return _written(services, result)


class ModelPage(BaseModel):
    """One page of ``GET /api/models``: the models by id, and the cursor of the next page
    (null on the last). The items are built by `listings`, as ``grove get models`` does."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    items: list[ModelSummary]
    next_cursor: str | None


@router.get(
    "",
    response_model=ModelPage,
    summary="Every live model in any state (enabled, disabled, retired), by id, paged",
)
async def list_models(
    services: ServicesDep,
    identity: Viewer,
    state: Annotated[list[manifests.ModelState] | None, Query()] = None,
    provider: Annotated[list[manifests.Provider] | None, Query()] = None,
    capability: Annotated[list[manifests.CapabilityType] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=listings.MAX_LIMIT)] = listings.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    page = listings.page_models(  # a bad cursor: 422, from problems.ANSWERS
        services.engine.table().models,
        states=[s.value for s in state or ()],
        providers=[p.value for p in provider or ()],
        capabilities=[c.value for c in capability or ()],
        limit=limit,
        cursor=cursor or None,  # empty: from the start, as with none
    )
    return Response(json.dumps(page.to_json()).encode(), media_type="application/json")


# Answers per snapshot (the routing table) and query: computed once, then served as bytes.
_DISCOVERED: weakref.WeakKeyDictionary[object, dict[tuple[Any, ...], bytes]] = (
    weakref.WeakKeyDictionary()
)


@router.get(
    "/discover",
    response_model=list[ModelSummary],
    summary="Enabled models meeting the capabilities, best first",
)
async def discover(
    services: ServicesDep,
    identity: Viewer,
    capability: Annotated[list[manifests.CapabilityType], Query()],
    min_score: Annotated[float, Query(alias="minScore", ge=0, le=1)] = 0.0,
) -> Response:
    table = services.engine.table()
    answers = _DISCOVERED.setdefault(table, {})
    key = (tuple(sorted(c.value for c in capability)), min_score)
    body = answers.get(key)
    if body is None:
        found = table.discover(capability, min_score)
        summaries = [ModelSummary.of(model, score) for score, model in found]
        body = json.dumps([s.model_dump(mode="json", by_alias=True) for s in summaries]).encode()
        if len(answers) > 256:
            answers.clear()
        answers[key] = body
    return Response(body, media_type="application/json")


@router.get(
    "/health",
    response_model=HealthOut,
    summary="healthy, or degraded with reasons",
)
async def health(services: ServicesDep, identity: Viewer) -> HealthOut:
    # A reachable registry is read at once; an unreachable one is retried by the
    # snapshot follower every poll interval, not here: a health check must not wait out
    # a connect timeout (10 s to a PostgreSQL that drops packets) on every call.
    if not services.engine.degraded_reasons:
        await asyncio.to_thread(services.engine.refresh)
    _, reasons = services.engine.health()
    # The reconciler's Stalled condition, from the probe /readyz reads (one read a second
    # at most): a router serving a fleet that git can no longer change is not healthy.
    probe = await services.database.result(services.db)
    if probe.readable and probe.stalled is not None:
        stalled = probe.stalled
        said = f"{stalled.get('reason', '')}: {stalled.get('message', '')}"
        reasons.append(f"reconciler stalled, git changes are not applied: {said}"[:500])
    table = services.engine.table()
    return HealthOut(
        status="degraded" if reasons else "healthy",
        reasons=reasons,
        serial=table.serial,
        revision=table.revision,
    )


@router.get("/{model_id}", response_model=ModelDetail, summary="One live model")
async def read(model_id: str, services: ServicesDep, identity: Viewer) -> ModelDetail:
    return _detail(_model(services, model_id))


@router.patch(
    "/{model_id}",
    response_model=WriteOut,
    summary="Change a model (merge patch; bumps the version when content changes)",
)
def update(
    model_id: str,
    body: PatchBody,
    services: ServicesDep,
    identity: Operator,
    force: bool = False,
) -> WriteOut:
    changes = body.update()
    if isinstance(changes["payload"].get("endpoint"), str):
        _check_resolution(services, changes["payload"]["endpoint"])
    result = services.authoring.update(
        manifests.KIND_MODEL,
        model_id,
        changes,
        author(identity),
        force=allow_force(identity, force),
    )
    return _written(services, result)


@router.delete(
    "/{model_id}",
    response_model=WriteOut,
    summary="Remove a model (retire it first, or force as admin)",
)
def remove(
    model_id: str, services: ServicesDep, identity: Operator, force: bool = False
) -> WriteOut:
    result = services.authoring.remove(
        manifests.KIND_MODEL, model_id, author(identity), force=allow_force(identity, force)
    )
    return _written(services, result)


@router.post("/{model_id}/disable", response_model=WriteOut, summary="Disable a model")
def disable(
    model_id: str, services: ServicesDep, identity: Operator, force: bool = False
) -> WriteOut:
    return _set_state(services, identity, model_id, "disabled", force)


@router.post("/{model_id}/enable", response_model=WriteOut, summary="Enable a model")
def enable(
    model_id: str, services: ServicesDep, identity: Operator, force: bool = False
) -> WriteOut:
    return _set_state(services, identity, model_id, "enabled", force)


def _set_state(
    services: Services, identity: tokens.Identity, model_id: str, state: str, force: bool
) -> WriteOut:
    """enable/disable act on models only: a rule or unknown id is 404 before any git work."""
    _model(services, model_id)
    result = services.authoring.set_state(
        model_id,
        state,
        author(identity),
        kind=manifests.KIND_MODEL,
        force=allow_force(identity, force),
    )
    return _written(services, result)


@router.get(
    "/{model_id}/metrics",
    response_model=dict[str, Any],
    summary="Requests, success rate, latency percentiles, cost, errors",
)
def metrics(
    model_id: str, services: ServicesDep, identity: Viewer, window: str = "1h"
) -> dict[str, Any]:
    match = _WINDOW.match(window)
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if not 0 < seconds <= MAX_WINDOW_S:
        raise ApiError(
            422,
            "invalid-window",
            "Invalid window",
            "window is like 15m, 1h or 7d, at most 30d",
            errors=[FieldError(path="window", message="expected 15m, 1h, 7d ...")],
        )
    _model(services, model_id)
    return analysis.model_metrics(services.db, model_id, window_s=seconds).to_json()


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
    if done.change == RollbackChange.ROLLED_BACK:
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
