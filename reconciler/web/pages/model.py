"""``/models/{id}``: one model, what it is, how it does, how it got here, and its actions.

The header is the live manifest with both status axes (as the fleet page judges them);
the charts are the window the URL names (``?window=1h|24h|7d``), percentiles of raw
samples per bucket (`web.modelview.BucketCache` keeps the complete buckets, so a render
reads only the open one); then the versions the registry applied with their commits,
the rules that use the model and where it stands in each rule's decision now, the
recent decisions with why, and what the branch head would change (drift first).

Actions (enable, disable, retire, rollback) are two POSTs each: without ``confirm``
the same `Authoring` call runs with ``dry_run=True`` and the page shows its preview
(the commit message, the diff, the plan, or the violations that refuse it) with a
confirm form; with ``confirm=1`` it commits, and the browser is sent back to the
model page, which says what was done (Post/Redirect/Get).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from reconciler.base import errors
from reconciler.gitops import reconciling
from reconciler.manifests import addresses
from reconciler.manifests import kinds as manifests
from reconciler.store import registry, routing_logs
from reconciler.web import charts, fleet, modelview, writes
from reconciler.web.console import Console
from reconciler.web.pages import ConsoleDep, Form, NotFound, PageRoute, SignedIn, require, see_other

router = APIRouter(route_class=PageRoute, include_in_schema=False)
# no max_length on these: FastAPI's validation error would be a 500 page, not a 404
MAX_ID = 200

WINDOWS = ("1h", "24h", "7d")
ACTIONS = {"enable": "enabled", "disable": "disabled", "retire": "retired", "rollback": ""}
DONE = {"enable": "Enabled", "disable": "Disabled", "retire": "Retired", "rollback": "Rolled back"}
VERBS = {"enable": "Enable", "disable": "Disable", "retire": "Retire", "rollback": "Roll back"}
RECENT = 20  # decisions shown
HISTORY = 30  # versions shown
_REVISION = re.compile(r"[0-9a-f]{7,64}\Z")
_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9/._-]{0,199}\Z")
_RESULTS = ("done", "review", "unchanged")

BUCKETS = modelview.BucketCache()
COMMITS = modelview.Commits()


def _model(console: Console, model_id: str) -> manifests.AIModel:
    model = console.engine.table().models.get(model_id) if len(model_id) <= MAX_ID else None
    if model is None:
        raise NotFound(f"No live model has the id {model_id[:MAX_ID]!r}.")
    return model


def url_of(model_id: str) -> str:
    return "/models/" + quote(model_id, safe="")


def _rules(console: Console) -> dict[str, manifests.RoutingRule]:
    """Every live rule, enabled or not (the router's table keeps only the enabled)."""
    snapshots = console.engine.snapshots
    return dict(snapshots.current.rules) if snapshots is not None else {}


def _window(console: Console, model_id: str, name: str) -> modelview.Read | None:
    window = modelview.window_of(name)
    now = dt.datetime.now(dt.UTC)

    def attempts(since: dt.datetime, limit: int) -> list[routing_logs.Observation]:
        with console.db.transaction() as connection:
            return routing_logs.attempts(connection, model_id, since, limit=limit)

    where = console.settings.db_url
    return console.read(lambda: BUCKETS.read(where, model_id, window, now, attempts), None)


def _versions(console: Console, model: manifests.AIModel) -> list[modelview.Version]:
    kind, ident = manifests.KIND_MODEL, model.meta.id

    def read() -> list[modelview.Version]:
        with console.db.transaction() as connection:
            applied = registry.version_history(connection, kind, ident)
            stretches = registry.live_versions(connection, kind, ident)
            held = registry.quarantined_of(connection, kind, ident)
        return modelview.versions(applied, model.meta.version, held, stretches)[:HISTORY]

    found: list[modelview.Version] = console.read(read, [])
    try:
        commits = COMMITS.named(
            (v.revision or "" for v in found), lambda: reconciling.open_source(console.settings)
        )
    except errors.GroveError:  # git unreadable: the versions without their commits
        commits = {}
    return [dataclasses.replace(v, commit=commits.get(v.revision or "")) for v in found]


def _decisions(console: Console, model_id: str) -> list[modelview.Decision]:
    def read() -> list[modelview.Decision]:
        with console.db.transaction() as connection:
            rows = routing_logs.recent(connection, model_id=model_id, limit=RECENT)
            siblings = routing_logs.of_requests(connection, modelview.needs_siblings(rows))
        return modelview.decisions(rows, siblings)

    found: list[modelview.Decision] = console.read(read, [])
    return found


def _flash(done: str, result: str, rev: str, branch: str) -> dict[str, str] | None:
    if done not in DONE:
        return None
    return {
        "action": DONE[done],
        "result": result if result in _RESULTS else "done",
        "rev": rev if _REVISION.match(rev) else "",
        "branch": branch if _BRANCH.match(branch) else "",
    }


@router.get("/models/{model_id}")
def model_page(
    request: Request,
    console: ConsoleDep,
    session: SignedIn,
    model_id: str,
    window: str = "24h",
    done: str = "",
    result: str = "",
    rev: str = "",
    branch: str = "",
) -> Response:
    model = _model(console, model_id)
    table = console.engine.table()
    window = window if window in WINDOWS else "24h"
    # every read that fails marks the page degraded (its banner, no actions); none clears it
    standing = console.standing()
    overview = standing.overview
    read = _window(console, model_id, window)
    versions = _versions(console, model)
    recent = _decisions(console, model_id)
    chart_set = (
        charts.window_charts(
            read.buckets,
            id_prefix=charts.chart_id(f"m-{model_id}-{window}"),
            title=model.payload.name,
        )
        if read is not None
        else None
    )
    plan = overview.outcome.plan if overview and overview.outcome else None
    drifted = overview.status.drifted if overview and overview.status else ()
    payload = model.payload
    return console.page(
        request,
        "model.html",
        {
            "model": model,
            "url": url_of(model_id),
            "sync": standing.sync(model),
            "health": standing.health(model),
            "numbers": standing.numbers.get(model_id),
            "sunset": fleet.sunset(model, dt.datetime.now(dt.UTC).date()),
            "capabilities": sorted(payload.capabilities.items(), key=lambda kv: (-kv[1], kv[0])),
            "endpoint": addresses.redact_userinfo(str(payload.endpoint))
            if payload.endpoint
            else "",
            "credentials": payload.credentials.env if payload.credentials else "",
            "live_models": table.models,
            "window": window,
            "windows": WINDOWS,
            "read": read,
            "charts": chart_set,
            "versions": versions,
            "rules": modelview.rules_using(model, _rules(console), console.decisions.decide),
            "decisions": recent,
            "pending": modelview.pending_of(model_id, plan.changes if plan else (), drifted),
            "actions": _actions(model, len(versions) > 1),
            "flash": _flash(done, result, rev, branch),
        },
        session=session,
    )


def redacted(endpoint: object) -> str:
    """The endpoint without any user or password in it: a page never shows a credential."""
    return addresses.redact_userinfo(str(endpoint)) if endpoint else ""


def _actions(model: manifests.AIModel, rollback: bool) -> list[tuple[str, str]]:
    """(action, button text) that make sense for the model's state; ``rollback`` when it
    has had another version (the server checks again when asked)."""
    state = model.payload.state
    wanted = ["enable" if state is not manifests.ModelState.ENABLED else "disable"]
    if state is not manifests.ModelState.RETIRED:
        wanted.append("retire")
    if rollback:
        wanted.append("rollback")
    return [(action, VERBS[action]) for action in wanted]


@router.post("/models/{model_id}/actions/{action}")
def model_action(
    request: Request,
    console: ConsoleDep,
    session: SignedIn,
    form: Form,
    model_id: str,
    action: str,
) -> Response:
    require(session, "operator")
    if action not in ACTIONS:
        raise NotFound(f"There is no model action {action[:40]!r}.")
    model = _model(console, model_id)
    confirm = form.get("confirm") == "1"
    author = writes.author_of(session)
    if action == "rollback":
        outcome = writes.attempt_rollback(
            lambda: console.authoring.rollback(model_id, author, dry_run=not confirm)
        )
    else:
        state = ACTIONS[action]
        outcome = writes.attempt(
            lambda: console.authoring.set_state(
                model_id, state, author, kind=manifests.KIND_MODEL, dry_run=not confirm
            ),
            dry_run=not confirm,
        )
    if confirm and outcome.ok:
        console.overview.forget()
        query: dict[str, Any] = {"done": action, "result": outcome.kind}
        if outcome.revision:
            query["rev"] = outcome.revision
        if outcome.branch:
            query["branch"] = outcome.branch
        return see_other(f"{url_of(model_id)}?{urlencode(query)}")
    return console.page(
        request,
        "model_action.html",
        {
            "model": model,
            "url": url_of(model_id),
            "action": action,
            "verb": VERBS[action],
            "outcome": outcome,
            "confirmable": not confirm and outcome.kind == "preview",
        },
        session=session,
        status_code=200 if outcome.ok else 422,
    )
