"""A leaner request handler for the hot route, ``POST /api/routing/execute``.

FastAPI's generic handler is most of what the framework costs a routed call:
it reads the content type through ``email.message``, decodes the JSON into
Python objects and validates those, solves the dependency graph with its
caches and exit stacks, and validates the returned model again before
serializing it. bench/lean.py measured it at a third of the application's CPU
per call and bench/api.py at a fifth of the whole server's, the network
included (the dated figures: bench/README.md).

:class:`LeanRoute` keeps everything that makes the route what it is: its path
and method in the router, its declared dependencies (so the token is still
checked by the route's own ``DataPlane`` dependency, never by middleware that
matches paths), its body and response models and its OpenAPI entry. It
replaces only how one request is handled: the body is validated from its bytes
in one pass of pydantic's JSON parser, the route's two dependencies (the
services, the caller's identity) are called directly, and the returned model
is serialized once.

Whatever is not that plain case goes to FastAPI's own handler, which then
answers exactly as it always has: a body that does not validate (so 422s name
the field the same way), a content type other than ``application/json``, and
any dependency override (tests). Errors raised by the endpoint or the
dependencies take the same exception handlers either way.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import fastapi.routing
from fastapi import Request, Response
from fastapi.datastructures import DefaultPlaceholder
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError

from reconciler.api import deps

try:
    from fastapi.telemetry import get_telemetry_data
except ImportError:  # FastAPI before its OpenTelemetry support: nothing to record

    def get_telemetry_data() -> Any:  # type: ignore[misc]
        return None


Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Resolver = Callable[[Request], Awaitable[Any]]


class LeanRoute(APIRoute):
    """An ``APIRoute`` for an endpoint taking one JSON body model and dependencies
    among ``ServicesDep`` and the role checks of :mod:`deps` (``deps.RoleCheck``),
    and returning its response model. Anything else is refused when the route is
    declared."""

    def get_route_handler(self) -> Handler:
        general = super().get_route_handler()
        if not _declared_here(self):
            return general  # dependencies came with include_router: FastAPI resolves them
        plan = _LeanPlan.of(self)

        async def handler(request: Request) -> Response:
            if not _lean_allowed(request) or _traced():
                return await general(request)
            try:
                body = plan.body_model.model_validate_json(await request.body())
            except ValidationError:
                return await general(request)  # FastAPI's 422, field paths and all
            values = {plan.body_name: body}
            for name, resolve in plan.resolvers:
                values[name] = await resolve(request)
            result = await plan.call(**values)
            out = (
                result
                if isinstance(result, plan.out_model)
                else plan.out_model.model_validate(result)
            )
            return Response(
                plan.out.dump_json(out, by_alias=True),  # the declared model's fields only
                status_code=plan.status_code,
                media_type="application/json",
            )

        return handler


@dataclasses.dataclass(frozen=True)
class _LeanPlan:
    """What the lean handler needs of a route, worked out once when it is declared."""

    call: Callable[..., Awaitable[Any]]
    body_name: str
    body_model: type[BaseModel]
    out_model: type[BaseModel]
    out: TypeAdapter[Any]  # serializes as out_model, whatever subclass the endpoint returns
    resolvers: list[tuple[str, Resolver]]
    status_code: int

    @classmethod
    def of(cls, route: APIRoute) -> _LeanPlan:
        dependant = route.dependant
        where = f"{route.path} ({route.name})"
        plain = not (
            dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.request_param_name
            or dependant.response_param_name
            or dependant.background_tasks_param_name
        )
        if not plain or len(dependant.body_params) != 1:
            raise TypeError(f"{where}: a lean route takes one JSON body and dependencies only")
        body = dependant.body_params[0]
        if getattr(body.field_info, "embed", False):
            raise TypeError(f"{where}: a lean route's body is the model itself, not embedded")
        if not inspect.iscoroutinefunction(dependant.call):
            raise TypeError(f"{where}: a lean route's endpoint must be a coroutine function")
        shaped = (
            route.response_model_include is not None
            or route.response_model_exclude is not None
            or route.response_model_exclude_unset
            or route.response_model_exclude_defaults
            or route.response_model_exclude_none
            or not route.response_model_by_alias
        )
        if shaped or not _plain_json(route.response_class):
            raise TypeError(f"{where}: a lean route answers its response model as plain JSON")
        resolvers = [
            (_named(d.name, where), _resolver(d.call, where)) for d in dependant.dependencies
        ]
        out_model = _model(route.response_model, where)
        return cls(
            dependant.call,
            body.name,
            _model(body.field_info.annotation, where),
            out_model,
            TypeAdapter(out_model),
            resolvers,
            route.status_code or 200,
        )


def _declared_here(route: APIRoute) -> bool:
    """Whether the route's dependencies are all its own. FastAPI (0.165) builds a
    route's handler once more for each ``include_router``, with that inclusion's
    dependencies added to a dependant of its own (a private "effective route
    context"); the lean handler resolves only the route's own, so it stands aside
    for an inclusion that adds any. Without that context (other FastAPI versions
    copy the route, dependencies merged into its own dependant) nothing is hidden."""
    context_var = getattr(fastapi.routing, "_effective_route_context_var", None)
    context = context_var.get() if context_var is not None else None
    if context is None or getattr(context, "original_route", None) is not route:
        return True
    if not _plain_json(getattr(context, "response_class", None)):
        return False  # a default_response_class from the app or an inclusion
    effective = getattr(context, "dependant", None)
    if effective is None:
        return not getattr(context, "dependencies", None)
    return [d.call for d in effective.dependencies] == [
        d.call for d in route.dependant.dependencies
    ]


def _plain_json(response_class: Any) -> bool:
    """Whether answers are FastAPI's default, ``JSONResponse`` (None: nothing said)."""
    if isinstance(response_class, DefaultPlaceholder):
        response_class = response_class.value
    return response_class is None or response_class is JSONResponse


def _named(name: str | None, where: str) -> str:
    if name is None:  # dependencies=[Depends(...)]: run for effect, no value to pass
        raise TypeError(f"{where}: a lean route resolves only named dependencies")
    return name


def _resolver(call: Callable[..., Any] | None, where: str) -> Resolver:
    if call is deps.get_services:
        return deps.get_services
    if not isinstance(call, deps.RoleCheck):
        raise TypeError(f"{where}: a lean route resolves only the services and a role")
    check = call

    async def identify(request: Request) -> Any:
        return await check(request, await deps.bearer(request))

    return identify


def _model(annotation: Any, where: str) -> type[BaseModel]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    raise TypeError(f"{where}: a lean route's body and response must be pydantic models")


def _traced() -> bool:
    """Whether FastAPI's OpenTelemetry support is recording this request (a tracer,
    meter or logger provider is configured): its handler makes the spans and the
    telemetry data, so it answers."""
    return get_telemetry_data() is not None


def _lean_allowed(request: Request) -> bool:
    """Whether this request may take the lean handler: a JSON body (``application/json``,
    any parameters, any case; FastAPI's handler decides for every other type), no
    dependency overrides, and lean routes not switched off for the app
    (``app.state.lean_routes = False``: what the tests and bench/lean.py compare with)."""
    app = request.app
    if app.dependency_overrides or not getattr(app.state, "lean_routes", True):
        return False
    kind = request.headers.get("content-type", "")
    return kind.partition(";")[0].strip().lower() == "application/json"
