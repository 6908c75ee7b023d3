"""Dependencies every route declares: the services, and the caller's identity and role.

Authentication happens here, in route dependencies (never in path-matching
middleware), so a route cannot be reached without the role it declares:
``Viewer`` reads, ``Operator`` writes, ``Admin`` forces and manages tokens.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import threading
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from reconciler import authoring, errors, reconciling, routing
from reconciler.api import events
from reconciler.api.problems import UNAUTHORIZED, ApiError
from reconciler.settings import Settings
from reconciler.store import tokens
from reconciler.store.engine import Database


@dataclasses.dataclass
class Services:
    settings: Settings
    db: Database
    engine: routing.RoutingEngine
    authoring: authoring.Authoring
    hub: events.Hub
    identities: IdentityCache = dataclasses.field(default_factory=lambda: IdentityCache())  # noqa: PLW0108 - defined below
    previews: PreviewFetches = dataclasses.field(default_factory=lambda: PreviewFetches())  # noqa: PLW0108 - defined below

    def reconciler(self) -> reconciling.Reconciler:
        return reconciling.Reconciler(
            self.settings, reconciling.open_source(self.settings), self.db
        )


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool,
    # a thread hop (and a GIL hand-off) on every request for a dictionary lookup.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


class PreviewFetches:
    """``GET /api/plan`` fetches the fleet repository at most once per ``min_interval_s``.

    A viewer token must not be a way to make Grove hammer the git host: calls in
    between plan against what was fetched last, and concurrent calls wait for the
    one fetch in progress instead of starting their own. A failed fetch counts too:
    until the interval is over, callers get the same error at once instead of each
    trying (and waiting for the timeout) again.
    """

    def __init__(self, min_interval_s: float = 5.0) -> None:
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._failure: errors.GroveError | None = None

    def revision(self, reconciler: reconciling.Reconciler, ref: str) -> str:
        with self._lock:
            now = time.monotonic()
            if now - self._last >= self.min_interval_s:
                self._last = now
                try:
                    reconciler.source.fetch()
                    self._failure = None
                except errors.GroveError as exc:
                    self._failure = exc
                    raise
            elif self._failure is not None:
                raise copy.copy(self._failure).with_traceback(None)
            return reconciler.source.resolve(ref)


_bearer = HTTPBearer(auto_error=False, description="An API token from `grove token create`.")


class IdentityCache:
    """Verified tokens for a few seconds, keyed by a digest (never the token itself).

    Revoking a token takes effect within ``ttl_s`` on every replica; failures are
    never cached, so a new token works at once.
    """

    def __init__(self, ttl_s: float = 5.0, size: int = 1024) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: dict[str, tuple[float, tokens.Identity]] = {}

    def get(self, token: str) -> tokens.Identity | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        found = self._entries.get(key)
        if found is not None and time.monotonic() < found[0]:
            return found[1]
        return None

    def put(self, token: str, identity: tokens.Identity) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()
        key = hashlib.sha256(token.encode()).hexdigest()
        self._entries[key] = (time.monotonic() + self.ttl_s, identity)


async def current_identity(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> tokens.Identity:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UNAUTHORIZED
    token = credentials.credentials
    identity = services.identities.get(token)
    if identity is None:
        identity = await asyncio.to_thread(_verify, services, token)
        if identity is None:
            raise UNAUTHORIZED
        services.identities.put(token, identity)
    return identity


def _verify(services: Services, token: str) -> tokens.Identity | None:
    with services.db.transaction() as connection:
        return tokens.verify(connection, token)


def require(role: str) -> object:
    async def check(
        identity: Annotated[tokens.Identity, Depends(current_identity)],
    ) -> tokens.Identity:
        if not identity.allows(role):
            raise ApiError(403, "forbidden", "Forbidden", f"this needs the {role} role")
        return identity

    return check


Viewer = Annotated[tokens.Identity, Depends(require("viewer"))]
Operator = Annotated[tokens.Identity, Depends(require("operator"))]
Admin = Annotated[tokens.Identity, Depends(require("admin"))]


def author(identity: tokens.Identity) -> authoring.Author:
    return authoring.Author.of(identity.name)


def allow_force(identity: tokens.Identity, force: bool) -> bool:
    if force and not identity.allows("admin"):
        raise ApiError(403, "forbidden", "Forbidden", "force needs the admin role")
    return force
