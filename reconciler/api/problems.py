"""Errors as ``application/problem+json`` (RFC 9457) with a stable ``code``.

The only place, with the routes, that knows HTTP status codes. Every error a
request can meet is mapped here once: Grove's own errors by one table,
:data:`ANSWERS`, looked up along the error's class tree (errors.py draws it), FastAPI's
validation errors with the field path, and anything unexpected as a 500 that
names no internals. A 401 is byte-for-byte the same whatever was wrong with
the credentials.

An answer lists at most :data:`MAX_LISTED` field errors and violations and
counts the rest (``errorsOmitted``, ``violationsOmitted``): a body with
100,000 bad keys gets an answer of a few kilobytes, not megabytes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from reconciler.api.hub import TooManyStreams
from reconciler.base import errors, logs
from reconciler.gitops import authoring
from reconciler.planning import listings, rollbacks
from reconciler.routing import engine as routing
from reconciler.routing import ranking

MEDIA_TYPE = "application/problem+json"
MAX_LISTED = 50  # field errors, and violations, listed in one answer; the rest are counted
_LISTS = ("errors", "violations")
log = logging.getLogger("grove.api")


class FieldError(BaseModel):
    path: str
    message: str


class Problem(BaseModel):
    """An error answer. ``code`` is stable and documented; ``detail`` is for people.
    ``errorsOmitted`` and ``violationsOmitted`` appear only when a list was cut."""

    model_config = ConfigDict(populate_by_name=True)

    type: str = Field("about:blank")
    title: str
    status: int
    code: str
    detail: str = ""
    errors: list[FieldError] = Field(default_factory=list)
    violations: list[dict[str, Any]] = Field(default_factory=list)
    attempts: list[dict[str, Any]] = Field(default_factory=list)
    errors_omitted: int | None = Field(
        None, alias="errorsOmitted", description=f"Field errors not listed (over {MAX_LISTED})."
    )
    violations_omitted: int | None = Field(
        None, alias="violationsOmitted", description=f"Violations not listed (over {MAX_LISTED})."
    )


class ApiError(Exception):
    """An HTTP answer a route raises when it knows its status and code already.

    Outside the error tree on purpose: it is not something that went wrong in Grove
    but the answer to give, and no service's ``except errors.GroveError`` may catch it.
    Grove's own errors reach the client through :data:`ANSWERS` instead."""

    def __init__(self, status: int, code: str, title: str, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or title)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.extra = extra


UNAUTHORIZED = ApiError(401, "unauthorized", "Unauthorized", "a valid bearer token is required")


ERRORS = {
    400: "Bad request",
    401: "Missing or invalid token (always the same body)",
    403: "The token's role is too low",
    404: "No such object or route",
    408: "The request body did not arrive in time (GROVE_BODY_TIMEOUT_S)",
    409: "Refused by safety checks, or a conflict; nothing was committed",
    413: "Request body over the cap",
    422: "Invalid request (the field path is in errors[])",
    502: "Every model of the chain failed",
    503: "The registry or the fleet repository is unavailable for now",
}


def documented_one(description: str) -> dict[str, Any]:
    """One error answer, as a problem document, for the OpenAPI document."""
    return {
        "model": Problem,
        "description": description,
        "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def documented() -> dict[int | str, dict[str, Any]]:
    """The error answers every route can give, for the OpenAPI document."""
    return {status: documented_one(description) for status, description in ERRORS.items()}


def respond(error: ApiError) -> JSONResponse:
    problem = Problem(
        title=error.title,
        status=error.status,
        code=error.code,
        detail=error.detail,
        **_capped(error.extra),
    )
    headers = {"WWW-Authenticate": "Bearer"} if error.code == "unauthorized" else None
    return JSONResponse(
        problem.model_dump(by_alias=True, exclude_none=True),
        status_code=error.status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def _capped(extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` with each list cut to :data:`MAX_LISTED` items, the rest counted in
    ``<list>_omitted`` (added to a count the caller gave for what it never built)."""
    capped = dict(extra)
    for key in _LISTS:
        items: Sequence[Any] = capped.get(key) or ()
        if len(items) > MAX_LISTED:
            capped[key] = list(items[:MAX_LISTED])
            omitted = f"{key}_omitted"
            capped[omitted] = (capped.get(omitted) or 0) + len(items) - MAX_LISTED
    return capped


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """How one class of the error tree is answered; ``fields`` adds what only that class
    carries (violations, field errors, attempts)."""

    status: int
    code: str
    title: str
    fields: Callable[[Any], dict[str, Any]] | None = None


def _violations(exc: authoring.Refused) -> dict[str, Any]:
    return {"violations": [v.to_json() for v in exc.plan.violations]}


def _diagnostics(exc: authoring.Invalid) -> dict[str, Any]:
    return {
        "errors": [
            FieldError(path=d.path or d.file, message=f"{d.code} {d.message}")
            for d in exc.diagnostics
        ]
    }


def _cursor(exc: listings.BadCursor) -> dict[str, Any]:
    return {"errors": [FieldError(path="query.cursor", message=str(exc))]}


def _attempts(exc: routing.RoutingFailed) -> dict[str, Any]:
    return {"attempts": [a.to_json() for a in exc.attempts]}


_MODEL_REFUSED = Answer(422, "model-refused", "The model call failed", _attempts)
_ALL_FAILED = Answer(502, "all-models-failed", "The model call failed", _attempts)
INTERNAL = Answer(500, "internal", "Internal error")
HIDDEN = "the server could not handle the request"

# The one table from the error tree (errors.py draws it) to HTTP answers. An error is
# answered by the entry of the nearest class along its MRO, so an entry covers every
# subclass without one of its own; a GroveError with no entry on the way is a 500.
ANSWERS: dict[type[errors.GroveError], Answer | Callable[[Any], Answer]] = {
    errors.PermanentError: Answer(400, "bad-request", "Bad request"),
    errors.ManifestsInvalid: Answer(422, "invalid-manifest", "Invalid manifests"),
    errors.SourceError: Answer(502, "source-error", "The fleet repository cannot be used"),
    errors.DatabaseNotReady: Answer(503, "database-not-ready", "Database not ready"),
    errors.PlanRefused: Answer(409, "refused", "Refused by safety checks"),
    errors.StalePlan: Answer(409, "stale", "The registry moved"),
    errors.TemporaryError: Answer(503, "unavailable", "Temporarily unavailable"),
    authoring.Refused: Answer(409, "refused", "Refused by safety checks", _violations),
    authoring.Invalid: Answer(
        422, "invalid-manifest", "The change would leave invalid manifests", _diagnostics
    ),
    listings.BadCursor: Answer(422, "invalid-request", "Invalid request", _cursor),
    authoring.Suspended: Answer(409, "suspended", "Change freeze"),
    authoring.Conflict: Answer(409, "conflict", "Conflict"),
    authoring.NotFound: Answer(404, "not-found", "Not found"),
    rollbacks.NoEarlierVersion: Answer(409, "no-earlier-version", "Nothing to roll back to"),
    ranking.NoRoute: Answer(422, "no-route", "No route"),
    routing.NoEligibleModel: Answer(422, "no-eligible-model", "No eligible model"),
    routing.RoutingFailed: lambda exc: _MODEL_REFUSED if exc.client_error else _ALL_FAILED,
    TooManyStreams: Answer(429, "too-many-streams", "Too many event streams"),
}


def answer_for(exc: errors.GroveError) -> Answer:
    """The entry of :data:`ANSWERS` that answers ``exc``: its nearest class's."""
    for cls in type(exc).__mro__:
        entry = ANSWERS.get(cls)
        if entry is not None:
            return entry if isinstance(entry, Answer) else entry(exc)
    return INTERNAL


def _from_grove(exc: errors.GroveError) -> ApiError:
    answer = answer_for(exc)
    detail = HIDDEN if answer is INTERNAL else str(exc)  # a 500 names no internals
    fields = answer.fields(exc) if answer.fields else {}
    return ApiError(answer.status, answer.code, answer.title, detail, **fields)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return respond(exc)

    @app.exception_handler(errors.GroveError)
    async def _grove(_: Request, exc: errors.GroveError) -> JSONResponse:
        error = _from_grove(exc)
        if error.status >= 500:
            logs.event(
                log,
                "api-failure",
                level=logging.WARNING,
                status=error.status,
                code=error.code,
                reason=str(exc)[:300],
            )
        return respond(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        found = exc.errors()
        fields = [  # only those listed are built (a body can carry 100,000 bad keys)
            FieldError(
                path=".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
                message=str(e.get("msg", "invalid")),
            )
            for e in found[:MAX_LISTED]
        ]
        omitted = len(found) - len(fields)
        return respond(
            ApiError(
                422,
                "invalid-request",
                "Invalid request",
                "the request does not match the schema",
                errors=fields,
                errors_omitted=omitted or None,
            )
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # an address that is no route, asked for by a browser: the console's 404 page
        page = getattr(request.app.state, "not_found_page", None)
        if exc.status_code == 404 and page is not None and (answer := await page(request)):
            return cast(Response, answer)
        codes = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}
        code = codes.get(exc.status_code, f"http-{exc.status_code}")
        return respond(ApiError(exc.status_code, code, str(exc.detail), str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logs.event(log, "api-error", level=logging.ERROR, error=type(exc).__name__)
        return respond(ApiError(INTERNAL.status, INTERNAL.code, INTERNAL.title, HIDDEN))
