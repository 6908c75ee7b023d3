"""The console's services, and what its pages share: rendering, headers, the outage
banner, the overview of git and the registry.

`Console` is built by the app (``api.create_app``) from the same services the API
uses, so a page and an API call see the same router snapshot and write through the
same authoring path. Pages are plain functions run in the thread pool: they read
the registry and git, which block.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from reconciler.base import errors
from reconciler.base.settings import Settings
from reconciler.gitops import authoring, reconciling
from reconciler.planning.status import Status
from reconciler.routing import engine as routing
from reconciler.routing import ranking
from reconciler.sources.git import Commit, GitSource
from reconciler.store import routing_logs
from reconciler.store.engine import Database
from reconciler.store.sessions import Session
from reconciler.web import assets
from reconciler.web.fleet import FleetNumbers, ItemCache, Standing, circuit_states
from reconciler.web.sessions import SessionCache

T = TypeVar("T")
OUTAGE = (errors.DatabaseUnavailable, errors.DatabaseUnreadable)
OVERVIEW_FRESH_S = 5.0  # git is fetched and the head planned at most this often per server

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def secured(response: Response, *, cache: str = "no-store") -> Response:
    """The console's security headers on ``response`` (pages, fragments, redirects,
    assets and errors alike)."""
    for name, value in HEADERS.items():
        response.headers[name] = value
    response.headers.setdefault("Cache-Control", cache)
    return response


class Outage:
    """Since when the registry cannot be read (None: it can), and why. Pages record
    each read's outcome here; the banner shows it."""

    def __init__(self) -> None:
        self.since: dt.datetime | None = None
        self.reason = ""

    def failed(self, exc: Exception) -> None:
        if self.since is None:
            self.since = dt.datetime.now(dt.UTC)
        self.reason = str(exc)

    def recovered(self) -> None:
        self.since = None
        self.reason = ""


@dataclasses.dataclass(frozen=True)
class Overview:
    """The reconciler's status and the plan of the branch head, as of ``at``; ``plan``
    is None when the head could not be planned (``status`` says why)."""

    status: Status | None
    outcome: reconciling.PlanOutcome | None
    at: dt.datetime
    problem: str = ""
    applied: Commit | None = None  # the commit the registry holds, from git
    head: Commit | None = None  # the branch head
    behind: int | None = None  # commits the registry is behind the branch head

    @functools.cached_property
    def drifted(self) -> frozenset[str]:
        return frozenset(self.status.drifted) if self.status else frozenset()

    def pending(self) -> dict[tuple[str, str], str]:
        return self._pending

    def refused(self) -> set[tuple[str, str]]:
        return self._refused

    @functools.cached_property
    def _pending(self) -> dict[tuple[str, str], str]:
        """(kind, id) -> the change the head's plan has for it."""
        if self.outcome is None or self.outcome.plan is None:
            return {}
        return {c.key: str(c.kind) for c in self.outcome.plan.changes}

    @functools.cached_property
    def _refused(self) -> set[tuple[str, str]]:
        if self.outcome is None or self.outcome.plan is None:
            return set()
        return {
            (kind, ident)
            for violation in self.outcome.plan.violations
            for kind, _, ident in (address.partition("/") for address in violation.objects)
        }


class OverviewCache:
    """One fetch and one plan of the branch head per :data:`OVERVIEW_FRESH_S` per server,
    however many pages ask; concurrent askers wait for the one in progress."""

    def __init__(self, compute: Callable[[], Overview], fresh_s: float = OVERVIEW_FRESH_S) -> None:
        self.compute = compute
        self.fresh_s = fresh_s
        self._lock = threading.Lock()
        self._last: tuple[float, Overview] | None = None

    def get(self, *, fresh: bool = False) -> Overview:
        with self._lock:
            if (
                not fresh
                and self._last is not None
                and time.monotonic() - self._last[0] < self.fresh_s
            ):
                return self._last[1]
            found = self.compute()
            self._last = (time.monotonic(), found)
            return found

    def last(self) -> Overview | None:
        return None if self._last is None else self._last[1]

    def forget(self) -> None:
        with self._lock:
            self._last = None


class DecisionCache:
    """The router's decision for a request, kept ``fresh_s`` while the snapshot is the
    same, its candidates explained once (``RoutingDecision.candidates`` is computed on
    first read and kept). The model page asks it for every rule that uses the model:
    explaining 1,000 candidates for each of 80 rules on every render cost 150 ms a page.
    A decision up to a few seconds old is what a page shows anyway."""

    def __init__(
        self,
        decide: Callable[[ranking.TaskRequest], ranking.RoutingDecision],
        serial: Callable[[], int],
        fresh_s: float = 5.0,
    ) -> None:
        self._decide = decide
        self._serial = serial  # the snapshot's: a new one makes every decision stale
        self.fresh_s = fresh_s
        self._lock = threading.Lock()
        self._found: dict[ranking.TaskRequest, tuple[float, int, ranking.RoutingDecision]] = {}

    def decide(self, request: ranking.TaskRequest) -> ranking.RoutingDecision:
        """The decision (raising as the router does: no route, no eligible model)."""
        now, serial = time.monotonic(), self._serial()
        with self._lock:
            found = self._found.get(request)
        if found is not None and now - found[0] < self.fresh_s and found[1] == serial:
            return found[2]
        decision = self._decide(request)
        with self._lock:
            if len(self._found) >= 4096:
                self._found.clear()
            self._found[request] = (now, serial, decision)
        return decision


@dataclasses.dataclass
class Console:
    settings: Settings
    db: Database
    engine: routing.RoutingEngine
    authoring: authoring.Authoring
    streams: int = 0  # open live streams of this process (pages.live caps them)
    sessions: SessionCache = dataclasses.field(init=False)
    outage: Outage = dataclasses.field(default_factory=Outage)
    overview: OverviewCache = dataclasses.field(init=False)
    numbers: FleetNumbers = dataclasses.field(init=False)
    items: ItemCache = dataclasses.field(default_factory=ItemCache)
    decisions: DecisionCache = dataclasses.field(init=False)
    templates: jinja2.Environment = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.sessions = SessionCache(outage_window_s=max(self.settings.token_outage_window_s, 600))
        self.overview = OverviewCache(
            self._overview, fresh_s=min(OVERVIEW_FRESH_S, self.settings.console_overview_s)
        )
        self.numbers = FleetNumbers(self._bucket_totals)
        self.decisions = DecisionCache(
            self.engine.get_routing_decision, lambda: self.engine.table().serial
        )
        self.templates = environment()

    def reconciler(self) -> reconciling.Reconciler:
        return reconciling.Reconciler(
            self.settings, reconciling.open_source(self.settings), self.db
        )

    def _overview(self) -> Overview:
        now = dt.datetime.now(dt.UTC)
        reconciler = self.reconciler()
        try:
            status, outcome = reconciler.overview()
        except OUTAGE as exc:
            self.outage.failed(exc)
            last = self.overview.last()
            return Overview(
                last.status if last else None, last.outcome if last else None, now, str(exc)
            )
        except errors.GroveError as exc:
            return Overview(None, None, now, str(exc))
        self.outage.recovered()
        applied = head = behind = None
        source = reconciler.source
        if isinstance(source, GitSource):
            if status.last_applied_revision:
                applied = source.commit(status.last_applied_revision)
            if status.desired_revision:
                head = source.commit(status.desired_revision)
            if applied and head:
                behind = source.count_between(applied.sha, head.sha)
        return Overview(status, outcome, now, applied=applied, head=head, behind=behind)

    def _bucket_totals(
        self, since: dt.datetime, bucket_s: int
    ) -> dict[str, list[routing_logs.BucketTotals]]:
        with self.db.transaction() as connection:
            found = routing_logs.bucket_totals(connection, since, bucket_s)
        self.outage.recovered()
        return found

    def overview_now(self) -> Overview | None:
        """The overview (planned again once older than a few seconds), or the last one
        while the registry cannot be read."""
        return self.read(self.overview.get, self.overview.last())

    def standing(self) -> Standing:
        """Both status axes' inputs for every model, read once for a page."""
        numbers = self.read(self.numbers.get, self.numbers.last())
        table = self.engine.table()
        return Standing(
            self.overview_now(),
            numbers[1] if numbers else {},
            circuit_states(self.engine.breakers.states(), table.versions),
        )

    def read(self, read: Callable[[], T], default: T) -> T:
        """``read()`` of the registry; ``default`` (and the outage recorded, for the
        banner) when the registry cannot be read.

        A read that succeeds does not clear the banner: it may have been answered from a
        cache. The two reads every page makes, the overview and the fleet's numbers, clear
        it when they really read the registry, at most every few seconds."""
        try:
            return read()
        except OUTAGE as exc:
            self.outage.failed(exc)
            return default

    # ---------------------------------------------------------------- rendering

    def page(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        session: Session | None,
        status_code: int = 200,
    ) -> Response:
        """A full page, or only its ``live`` block when the console's script asks for the
        fragment (``X-Grove-Fragment: live``) to refresh an open page.

        A form shown again with its errors or its refusal (``status_code`` 409 or 422)
        answers 200, as Django's and GOV.UK's forms do: it is the page the person asked
        for, its errors are in it (at the fields, in a summary, in the title), and a
        browser logs every 4xx page as a console error, which the console must not
        cause. Real failures keep their status: 400, 403, 404, 5xx."""
        if status_code in (409, 422):
            status_code = 200
        values = {**self.common(request, session), **context}
        loaded = self.templates.get_template(template)
        if request.headers.get("x-grove-fragment") == "live" and "live" in loaded.blocks:
            body = "".join(loaded.blocks["live"](loaded.new_context(values)))
        else:
            body = loaded.render(values)
        return secured(HTMLResponse(body, status_code=status_code))

    def fragment(self, template: str, **context: Any) -> Markup:
        """A partial rendered on its own (a fleet card), to be placed in a page as it is:
        the template autoescapes every value it shows, so its output is markup."""
        return Markup(self.templates.get_template(template).render(**context))  # noqa: S704

    def common(self, request: Request, session: Session | None) -> dict[str, Any]:
        table = self.engine.table()
        writable = (
            session is not None
            and session.identity.allows("operator")
            and self.outage.since is None
        )
        return {
            "request_path": request.url.path,
            "session": session,
            "user": session.identity if session else None,
            "csrf": session.csrf if session else "",
            "can_write": writable,
            "can_admin": writable and session is not None and session.identity.allows("admin"),
            "outage": self.outage,
            "serving": {"revision": table.revision, "serial": table.serial},
            "overview": self.overview.last(),
            "now": dt.datetime.now(dt.UTC),
            "review_branches": self.settings.review_branches,
        }


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reconciler.web", "templates"),
        autoescape=True,  # every value is escaped unless it is Markup (the charts)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["asset"] = assets.url
    env.filters["ago"] = ago
    env.filters["short"] = short
    env.filters["when"] = when
    # the macros every template uses (status axes, the revision header, form errors), as
    # a global: a page's ``live`` block rendered alone sees them too
    env.globals["ui"] = env.get_template("macros.html").make_module()
    return env


def short(revision: str | None) -> str:
    return (revision or "")[:12] or "none"


def _moment(moment: dt.datetime | str | None) -> dt.datetime | None:
    if isinstance(moment, str):
        try:
            moment = dt.datetime.fromisoformat(moment)
        except ValueError:
            return None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


def when(moment: dt.datetime | str | None) -> str:
    found = _moment(moment)
    if found is None:
        return "never" if not moment else str(moment)
    return found.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(moment: dt.datetime | str | None, now: dt.datetime | None = None) -> str:
    """ "3 min ago" (or "in 2 days" for a future moment)."""
    found = _moment(moment)
    if found is None:
        return "never" if not moment else str(moment)
    seconds = ((now or dt.datetime.now(dt.UTC)) - found).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size:
            count = int(seconds // size)
            text = f"{count} {unit}{'s' if unit == 'day' and count != 1 else ''}"
            break
    else:
        text = f"{int(seconds)} s"
    return f"in {text}" if future else f"{text} ago"


__all__ = ["HEADERS", "Console", "Markup", "Outage", "Overview", "environment", "secured"]
