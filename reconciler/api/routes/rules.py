"""``/api/rules``: list, read, create, change, enable, disable and remove routing rules.

Reads come from the router's in-memory snapshot of the reconciled registry;
writes go through git (`authoring`), like the models API's, and answer once
the commit is reconciled. Write handlers are plain functions: FastAPI runs them
in its thread pool, where the blocking git and database work belongs.

A change that would leave a rule that no enabled model can serve (validation
rule R006, with R003/R005 for the chain entries behind it) answers 409
``unservable``, committing nothing: a rule's servability depends on the rest of
the fleet, so it is a conflict with the fleet's state, not a malformed request.
It is a validation error, not a safety check: ``force`` does not override it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import ValidationError

from reconciler.api.bodies import (
    RuleBody,
    RuleDetail,
    RulePage,
    RulePatchBody,
    RuleSummary,
    RuleWriteOut,
)
from reconciler.api.deps import Operator, Services, ServicesDep, Viewer, allow_force, author
from reconciler.api.problems import ApiError, FieldError
from reconciler.gitops import authoring
from reconciler.gitops.authoring import WriteResult
from reconciler.manifests import kinds as manifests
from reconciler.planning import listings
from reconciler.store import tokens

router = APIRouter(prefix="/api/rules", tags=["rules"])
# R006: an enabled rule no enabled model can serve; R003 and R005: chain entries that
# are not models, or do not meet the rule's requirements, when that is why.
UNSERVABLE = frozenset({"R006"})
BEHIND_UNSERVABLE = frozenset({"R003", "R005", "R006"})


def _live(services: Services) -> Mapping[str, manifests.RoutingRule]:
    snapshots = services.engine.snapshots
    return snapshots.current.rules if snapshots is not None else {}


def _rule(services: Services, ident: str) -> manifests.RoutingRule:
    rule = _live(services).get(ident)
    if rule is None:
        raise ApiError(404, "not-found", "Not found", f"no live routing rule has the id {ident!r}")
    return rule


def _detail(rule: manifests.RoutingRule) -> RuleDetail:
    return RuleDetail(**RuleSummary.of(rule).model_dump(), manifest=rule)


def _written(services: Services, result: WriteResult) -> RuleWriteOut:
    services.engine.refresh()
    rule = result.object if isinstance(result.object, manifests.RoutingRule) else None
    return RuleWriteOut(
        revision=result.revision,
        change=result.change,
        applied=result.applied,
        detail=result.detail,
        branch=result.branch,
        rule=_detail(rule) if rule else None,
    )


@contextlib.contextmanager
def _servable() -> Iterator[None]:
    """A write that would leave a rule unservable answers 409 ``unservable`` (nothing was
    committed); any other invalid result stays a 422 ``invalid-manifest``."""
    try:
        yield
    except authoring.Invalid as exc:
        codes = {d.code for d in exc.diagnostics}
        if not codes & UNSERVABLE or not codes <= BEHIND_UNSERVABLE:
            raise
        reasons = "; ".join(d.message for d in exc.diagnostics if d.code in UNSERVABLE)
        raise ApiError(
            409,
            "unservable",
            "No model could serve the rule",
            f"{reasons}; nothing was committed. Enable or register a model that meets the "
            "rule first, or change the rule's requires, minScore, constraints or chain",
            errors=[
                FieldError(path=d.path or d.file, message=f"{d.code} {d.message}")
                for d in exc.diagnostics
            ],
        ) from None


# ---------------------------------------------------------------- reads


def _after(cursor: str | None) -> str:
    """The id a cursor continues after ("" for the first page): the cursors of
    GET /api/models (`listings`), so one client pages both; 422 for one this API did
    not give."""
    if not cursor:  # none, or empty: from the start
        return ""
    return listings.decode_cursor(cursor)  # BadCursor: 422, from problems.ANSWERS


@router.get(
    "",
    response_model=RulePage,
    summary="Every live routing rule, enabled or not, by id, a page at a time",
)
async def list_rules(
    services: ServicesDep,
    identity: Viewer,
    limit: Annotated[int, Query(ge=1, le=listings.MAX_LIMIT)] = listings.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> RulePage:
    after = _after(cursor)
    rules = _live(services)
    ids = sorted(ident for ident in rules if ident > after)
    page = ids[:limit]
    more = len(ids) > limit
    return RulePage(
        items=[_detail(rules[ident]) for ident in page],
        next_cursor=listings.encode_cursor(page[-1]) if more else None,
    )


@router.get("/{rule_id}", response_model=RuleDetail, summary="One live routing rule")
async def read(rule_id: str, services: ServicesDep, identity: Viewer) -> RuleDetail:
    return _detail(_rule(services, rule_id))


# ---------------------------------------------------------------- writes


@router.post(
    "",
    status_code=201,
    response_model=RuleWriteOut,
    summary="Create a routing rule (a commit to the fleet repository)",
)
def create(
    body: RuleBody, services: ServicesDep, identity: Operator, force: bool = False
) -> RuleWriteOut:
    flat = body.flat()
    if flat and body.is_document():
        first = next(iter(flat))
        raise ApiError(
            422,
            "invalid-request",
            "Invalid request",
            f"give a whole document (meta and payload) or the flat fields ({first!r} at "
            "the top), not both",
            errors=[FieldError(path=first, message="not beside 'meta'/'payload': move it inside")],
        )
    document = body.document()
    try:
        manifests.RoutingRule.model_validate(
            document,
            context=manifests.validator_context(
                allow_local_endpoints=services.settings.allow_local_endpoints
            ),
        )
    except ValidationError as exc:
        raise ApiError(
            422,
            "invalid-rule",
            "Invalid routing rule",
            "the routing rule does not pass validation",
            errors=[
                FieldError(path=_field(e["loc"], flat=not body.is_document()), message=e["msg"])
                for e in exc.errors(include_input=False)
            ],
        ) from None
    with _servable():
        result = services.authoring.register(
            document, author(identity), force=allow_force(identity, force)
        )
    return _written(services, result)


_META_FLAT = {"id", "version", "labels"}


def _field(loc: tuple[int | str, ...], *, flat: bool) -> str:
    """A validation error's field as the client sent it: the document's dotted path, or
    for the flat body the payload's fields (and meta's id, version, labels) at the top."""
    parts = [str(p) for p in loc]
    if flat and len(parts) > 1 and (parts[0] == "payload" or parts[1] in _META_FLAT):
        parts = parts[1:]
    return ".".join(parts) or "body"


@router.patch(
    "/{rule_id}",
    response_model=RuleWriteOut,
    summary="Change a routing rule (merge patch; bumps the version when content changes)",
)
def update(
    rule_id: str,
    body: RulePatchBody,
    services: ServicesDep,
    identity: Operator,
    force: bool = False,
) -> RuleWriteOut:
    with _servable():
        result = services.authoring.update(
            manifests.KIND_RULE,
            rule_id,
            body.update(),
            author(identity),
            force=allow_force(identity, force),
        )
    return _written(services, result)


@router.delete(
    "/{rule_id}",
    response_model=RuleWriteOut,
    summary="Remove a routing rule (a commit deleting its manifest)",
)
def remove(
    rule_id: str, services: ServicesDep, identity: Operator, force: bool = False
) -> RuleWriteOut:
    result = services.authoring.remove(
        manifests.KIND_RULE, rule_id, author(identity), force=allow_force(identity, force)
    )
    return _written(services, result)


@router.post("/{rule_id}/disable", response_model=RuleWriteOut, summary="Disable a routing rule")
def disable(
    rule_id: str, services: ServicesDep, identity: Operator, force: bool = False
) -> RuleWriteOut:
    return _set_state(services, identity, rule_id, "disabled", force)


@router.post("/{rule_id}/enable", response_model=RuleWriteOut, summary="Enable a routing rule")
def enable(
    rule_id: str, services: ServicesDep, identity: Operator, force: bool = False
) -> RuleWriteOut:
    return _set_state(services, identity, rule_id, "enabled", force)


def _set_state(
    services: Services, identity: tokens.Identity, rule_id: str, state: str, force: bool
) -> RuleWriteOut:
    """enable/disable act on live rules only: a model's or an unknown id is 404 before
    any git work."""
    _rule(services, rule_id)
    with _servable():
        result = services.authoring.set_state(
            rule_id,
            state,
            author(identity),
            kind=manifests.KIND_RULE,
            force=allow_force(identity, force),
        )
    return _written(services, result)
