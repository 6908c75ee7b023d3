"""Errors as ``application/problem+json`` (RFC 9457) with a stable ``code``.

The only place, with the routes, that knows HTTP status codes. Every error a
request can meet is mapped here once: Grove's own errors by class, FastAPI's
validation errors with the field path, and anything unexpected as a 500 that
names no internals. A 401 is byte-for-byte the same whatever was wrong with
the credentials.

An answer lists at most :data:`MAX_LISTED` field errors and violations and
counts the rest (``errorsOmitted``, ``violationsOmitted``): a body with
100,000 bad keys gets an answer of a few kilobytes, not megabytes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from reconciler import authoring, errors, logs, ranking, rollbacks, routing

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


def _from_grove(exc: errors.GroveError) -> ApiError:
    if isinstance(exc, authoring.Refused):
        return ApiError(
            409,
            "refused",
            "Refused by safety checks",
            str(exc),
            violations=[v.to_json() for v in exc.plan.violations],
        )
    if isinstance(exc, authoring.Invalid):
        return ApiError(
            422,
            "invalid-manifest",
            "The change would leave invalid manifests",
            str(exc),
            errors=[
                FieldError(path=d.path or d.file, message=f"{d.code} {d.message}")
                for d in exc.diagnostics
            ],
        )
    if isinstance(exc, authoring.Suspended):
        return ApiError(409, "suspended", "Change freeze", str(exc))
    if isinstance(exc, authoring.Conflict):
        return ApiError(409, "conflict", "Conflict", str(exc))
    if isinstance(exc, rollbacks.NoEarlierVersion):
        return ApiError(409, "no-earlier-version", "Nothing to roll back to", str(exc))
    if isinstance(exc, authoring.NotFound):
        return ApiError(404, "not-found", "Not found", str(exc))
    if isinstance(exc, routing.NoEligibleModel):
        return ApiError(422, "no-eligible-model", "No eligible model", str(exc))
    if isinstance(exc, routing.RoutingFailed):
        status = 422 if exc.client_error else 502
        return ApiError(
            status,
            "model-refused" if exc.client_error else "all-models-failed",
            "The model call failed",
            str(exc),
            attempts=[a.to_json() for a in exc.attempts],
        )
    if isinstance(exc, errors.PlanRefused):
        return ApiError(409, "refused", "Refused by safety checks", str(exc))
    if isinstance(exc, errors.StalePlan):
        return ApiError(409, "stale", "The registry moved", str(exc))
    if isinstance(exc, errors.DatabaseNotReady):
        return ApiError(503, "database-not-ready", "Database not ready", str(exc))
    if isinstance(exc, errors.TemporaryError):
        return ApiError(503, "unavailable", "Temporarily unavailable", str(exc))
    if isinstance(exc, errors.SourceError):
        return ApiError(502, "source-error", "The fleet repository cannot be used", str(exc))
    if isinstance(exc, errors.ManifestsInvalid):
        return ApiError(422, "invalid-manifest", "Invalid manifests", str(exc))
    if isinstance(exc, errors.PermanentError):
        return ApiError(400, "bad-request", "Bad request", str(exc))
    return ApiError(500, "internal", "Internal error", "the server could not handle the request")


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

    @app.exception_handler(ranking.NoRoute)
    async def _no_route(_: Request, exc: ranking.NoRoute) -> JSONResponse:
        return respond(ApiError(422, "no-route", "No route", str(exc)))

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
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}
        code = codes.get(exc.status_code, f"http-{exc.status_code}")
        return respond(ApiError(exc.status_code, code, str(exc.detail), str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logs.event(log, "api-error", level=logging.ERROR, error=type(exc).__name__)
        return respond(
            ApiError(500, "internal", "Internal error", "the server could not handle the request")
        )
