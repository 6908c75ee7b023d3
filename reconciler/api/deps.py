"""Dependencies every route declares: the services, and the caller's identity and role.

Authentication happens here, in route dependencies (never in path-matching
middleware), so a route cannot be reached without the role it declares:
``Viewer`` reads, ``Operator`` writes, ``Admin`` forces and lifts quarantines, and
``DataPlane`` is the data plane (``POST /api/routing/execute`` and ``/v1/*``): a
``client`` token, the role given to applications, or an operator's or admin's,
never a viewer's. A client token gets 403 on every other route, reads included.

While the registry database cannot be read, a token verified successfully within
``GROVE_TOKEN_OUTAGE_WINDOW_S`` (10 minutes) keeps its identity, so routed calls go
on from the snapshot; any other token gets the same 401 as a bogus one, never a
503 (see docs/security.md, "Known limits": revocation cannot reach a replica
that cannot read the database).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from reconciler import gateway
from reconciler.api import hub
from reconciler.api.previews import PlanPreviews
from reconciler.api.problems import UNAUTHORIZED, ApiError
from reconciler.base import errors, logs
from reconciler.base.settings import Settings
from reconciler.gitops import authoring, reconciling
from reconciler.routing import engine as routing
from reconciler.store import integrity, tokens
from reconciler.store.engine import Database

log = logging.getLogger("grove.api")
# The registry cannot be read: the database is down, or its file is damaged.
OUTAGE = (errors.DatabaseUnavailable, errors.DatabaseUnreadable)


@dataclasses.dataclass
class Services:
    settings: Settings
    db: Database
    engine: routing.RoutingEngine
    authoring: authoring.Authoring
    hub: hub.Hub
    previews: PreviewFetches = dataclasses.field(default_factory=lambda: PreviewFetches())  # noqa: PLW0108 - defined below
    database: DatabaseProbe = dataclasses.field(default_factory=lambda: DatabaseProbe())  # noqa: PLW0108 - defined below
    plans: PlanPreviews = dataclasses.field(default_factory=PlanPreviews)
    # The reconcile loop's thread when it runs in this process (``grove serve``
    # without --workers), for /readyz; None where it runs elsewhere or not at all.
    loop: threading.Thread | None = None
    identities: IdentityCache = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.identities = IdentityCache(outage_window_s=self.settings.token_outage_window_s)

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

    def __init__(
        self, min_interval_s: float = 5.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.min_interval_s = min_interval_s
        self.clock = clock  # injected: tests drive the interval with a fake clock
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._failure: errors.GroveError | None = None

    def revision(self, reconciler: reconciling.Reconciler, ref: str) -> str:
        with self._lock:
            now = self.clock()
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


class DatabaseProbe:
    """A cheap read of the registry (`integrity.probe`) for /readyz, off the event loop.

    One read at a time, its answer reused for ``fresh_s``; a read slower than
    ``timeout_s`` counts as a failure (it goes on in its thread, and callers wait
    for it rather than start another), so a probe every second against a
    database that hangs never piles up threads or connections.
    """

    def __init__(self, fresh_s: float = 1.0, timeout_s: float = 2.0) -> None:
        self.fresh_s = fresh_s
        self.timeout_s = timeout_s
        self._last: tuple[float, integrity.Probe] | None = None
        self._running: asyncio.Future[integrity.Probe] | None = None

    async def result(self, db: Database) -> integrity.Probe:
        if self._last is not None and time.monotonic() - self._last[0] < self.fresh_s:
            return self._last[1]
        running = self._running
        if (
            running is None
            or running.done()
            or running.get_loop() is not asyncio.get_running_loop()
        ):
            running = self._running = asyncio.ensure_future(asyncio.to_thread(integrity.probe, db))
        try:
            found = await asyncio.wait_for(asyncio.shield(running), self.timeout_s)
        except TimeoutError:
            return integrity.Probe(
                False, f"the registry database did not answer within {self.timeout_s:g} s"
            )
        self._last = (time.monotonic(), found)
        return found


bearer = HTTPBearer(auto_error=False, description="An API token from `grove token create`.")


class IdentityCache:
    """Verified tokens for a few seconds, keyed by a digest (never the token itself).

    Revoking a token takes effect within ``ttl_s`` on every replica: an identity is
    served only while its last successful check is younger than that. Under steady
    traffic a token is checked again in the background once half of ``ttl_s`` has
    passed, so its entry never expires under the requests using it; requests that
    do find no entry (the first, or after a pause) share one check instead of each
    running its own (without that, 50 clients on one token made 50 database reads
    at once every ``ttl_s``, a pause of tens of milliseconds). Failures are never
    cached, so a new token works at once.

    While the database cannot be read (a check raises one of :data:`OUTAGE`), an
    identity whose last successful check is younger than ``outage_window_s`` is
    served without waiting for the database (checks go on in the background, so
    its return, or a revocation, is seen at once); any other token is refused.
    """

    def __init__(self, ttl_s: float = 5.0, size: int = 1024, outage_window_s: float = 0.0) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self.outage_window_s = outage_window_s
        self._entries: dict[str, tuple[float, tokens.Identity]] = {}
        self._checks: dict[str, asyncio.Task[tokens.Identity | None]] = {}
        self._down_until = 0.0  # the database failed a check: no waiting on it until then

    async def identity(
        self, token: str, check: Callable[[str], tokens.Identity | None]
    ) -> tokens.Identity | None:
        """The identity of ``token``: from the cache while fresh, else from ``check``
        (blocking; run in a thread), one check per token at a time."""
        key = hashlib.sha256(token.encode()).hexdigest()
        found = self._entries.get(key)
        now = time.monotonic()
        if found is not None:
            age = now - found[0]
            if age < self.ttl_s:
                if age >= self.ttl_s / 2:
                    self._start(key, token, check)  # in the background
                return found[1]
        if now < self._down_until:  # the database is down: nobody waits for it
            if found is not None:  # a known token's check notices its return (or a revocation)
                self._start(key, token, check)
            return self._outage_identity(key, now)  # an unknown one costs no check at all
        # shielded: a caller that goes away does not cancel the check the others wait for
        return await asyncio.shield(self._start(key, token, check))

    def _outage_identity(self, key: str, now: float) -> tokens.Identity | None:
        """While the database cannot be read: the identity of a token verified within
        the outage window, else None (a 401, as for any token Grove cannot vouch for)."""
        found = self._entries.get(key)
        if found is not None and now - found[0] < self.outage_window_s:
            return found[1]
        return None

    def _start(
        self, key: str, token: str, check: Callable[[str], tokens.Identity | None]
    ) -> asyncio.Task[tokens.Identity | None]:
        running = self._checks.get(key)
        if running is not None and running.get_loop() is asyncio.get_running_loop():
            return running
        task = asyncio.create_task(self._check(key, token, check))
        task.add_done_callback(_retrieve)
        self._checks[key] = task
        return task

    async def _check(
        self, key: str, token: str, check: Callable[[str], tokens.Identity | None]
    ) -> tokens.Identity | None:
        started = time.monotonic()  # a revocation after this point is seen by the next check
        try:
            identity = await asyncio.to_thread(check, token)
        except OUTAGE as exc:
            if self.outage_window_s <= 0:
                raise
            if time.monotonic() >= self._down_until:
                logs.event(
                    log,
                    "token-checks-unavailable",
                    level=logging.WARNING,
                    reason=str(exc),
                    window_s=self.outage_window_s,
                )
            self._down_until = time.monotonic() + self.ttl_s
            return self._outage_identity(key, time.monotonic())
        finally:
            if self._checks.get(key) is asyncio.current_task():
                del self._checks[key]
        self._down_until = 0.0
        if identity is None:
            self._entries.pop(key, None)
            return None
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (started, identity)
        return identity


def _retrieve(task: asyncio.Task[tokens.Identity | None]) -> None:
    """Mark a check's failure (database unreachable) as seen: its waiters, if any, get
    it; a background check's entry stays until it expires, and the next check reports
    the failure to its callers."""
    if not task.cancelled():
        task.exception()


async def _identity(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> tokens.Identity:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UNAUTHORIZED
    return await identify(request, credentials.credentials)


async def identify(request: Request, token: str | None) -> tokens.Identity:
    """The identity of ``token`` (a token as given, from whatever header carried it):
    401 ``unauthorized`` unless it is a valid, unrevoked token."""
    if not token:
        raise UNAUTHORIZED
    services = await get_services(request)
    identity = await services.identities.identity(token, functools.partial(_verify, services))
    if identity is None:
        raise UNAUTHORIZED
    return identity


def _verify(services: Services, token: str) -> tokens.Identity | None:
    with services.db.transaction() as connection:
        return tokens.verify(connection, token)


class RoleCheck:
    """The dependency of a role: the caller's identity, if its token is valid and its
    role allows what ``role`` may (``tokens.Identity.allows``; 401 or 403 otherwise).
    A class, so that the lean handler of the routed call (``lean.LeanRoute``) can tell
    it from any other dependency and call it directly.

    One dependency (and the bearer scheme, for OpenAPI) rather than a chain of three:
    FastAPI resolves each level anew on every request (a sixth of a route's cost in
    FastAPI 0.165; the dated figure is in bench/README.md)."""

    def __init__(self, role: str) -> None:
        if role not in tokens.ROLES:
            raise ValueError(f"role must be one of {', '.join(tokens.ROLES)}")
        self.role = role

    async def __call__(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> tokens.Identity:
        identity = await _identity(request, credentials)
        if not identity.allows(self.role):
            raise self.refusal(identity)
        return identity

    async def of_token(self, request: Request, token: str | None) -> tokens.Identity:
        """The same check for a token read from another header (the gateway's
        ``x-api-key``): its identity, or the same 401 or 403 :class:`ApiError`."""
        identity = await identify(request, token)
        if not identity.allows(self.role):
            raise self.refusal(identity)
        return identity

    def refusal(self, identity: tokens.Identity) -> ApiError:
        """The 403 for ``identity``, saying what the route needs (never the caller's
        token or name)."""
        if self.role == "client":
            detail = "this is the data plane: it needs the client, operator or admin role"
        elif identity.role == "client":
            detail = (
                "the client role may only call the data plane (POST /api/routing/execute "
                f"and /v1/*); this needs the {self.role} role"
            )
        else:
            detail = f"this needs the {self.role} role"
        return ApiError(403, "forbidden", "Forbidden", detail)


Viewer = Annotated[tokens.Identity, Depends(RoleCheck("viewer"))]
Operator = Annotated[tokens.Identity, Depends(RoleCheck("operator"))]
Admin = Annotated[tokens.Identity, Depends(RoleCheck("admin"))]
# The data plane: POST /api/routing/execute and every /v1 route. Routes declare
# ``DataPlane``; code that reads the token from elsewhere (``x-api-key``) calls
# ``DATA_PLANE.of_token``.
DATA_PLANE = RoleCheck("client")
DataPlane = Annotated[tokens.Identity, Depends(DATA_PLANE)]


async def data_plane(request: Request, token: str | None) -> None:
    """The gateway's token check (``/v1``): the data plane's, with its 401 or 403 handed
    over as the gateway's :class:`~reconciler.gateway.Refused`, for the caller's format."""
    try:
        await DATA_PLANE.of_token(request, token)
    except ApiError as exc:
        raise gateway.Refused(exc.status, exc.detail) from None


def author(identity: tokens.Identity) -> authoring.Author:
    return authoring.Author.of(identity.name)


def allow_force(identity: tokens.Identity, force: bool) -> bool:
    if force and not identity.allows("admin"):
        raise ApiError(403, "forbidden", "Forbidden", "force needs the admin role")
    return force
