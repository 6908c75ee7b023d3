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

The model's latest rollout (`web.rollouts`) is in the live part: its steps, its
figures against the SLO with their n, each judgement, and its rollback commit or the
one to make by hand. An open one has two more actions, the same two POSTs: promote
(the canary takes every call; nothing is committed, git holds it already) and abort
(the canary gets no more calls, and the rollback is committed as the person, with the
figures and the reason they give; its preview is that commit's dry run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from reconciler.base import errors
from reconciler.gitops import reconciling
from reconciler.gitops import rollouts as delivery
from reconciler.manifests import addresses
from reconciler.manifests import kinds as manifests
from reconciler.store import registry, routing_logs
from reconciler.store.rollouts import Phase, RollbackState, Rollout
from reconciler.store.sessions import Session
from reconciler.web import charts, fleet, modelview, rollouts, writes
from reconciler.web.console import Console
from reconciler.web.pages import ConsoleDep, Form, NotFound, PageRoute, SignedIn, require, see_other

router = APIRouter(route_class=PageRoute, include_in_schema=False)
# no max_length on these: FastAPI's validation error would be a 500 page, not a 404
MAX_ID = 200

WINDOWS = ("1h", "24h", "7d")
ACTIONS = {"enable": "enabled", "disable": "disabled", "retire": "retired", "rollback": ""}
DONE = {
    "enable": "Enabled",
    "disable": "Disabled",
    "retire": "Retired",
    "rollback": "Rolled back",
    "promote": "Rollout promoted",
    "abort": "Rollout aborted",
}
ROLLOUT_VERBS = {"promote": "Promote", "abort": "Abort"}
REASON_MAX = 500
EARLIER = 10  # earlier rollouts listed
VERBS = {"enable": "Enable", "disable": "Disable", "retire": "Retire", "rollback": "Roll back"}
RECENT = 20  # decisions shown
HISTORY = 30  # versions shown
_REVISION = re.compile(r"[0-9a-f]{7,64}\Z")
_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9/._-]{0,199}\Z")
_RESULTS = ("done", "review", "unchanged", "pending")

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


def _rollout(console: Console, model_id: str) -> tuple[rollouts.View | None, list[Rollout]]:
    """The model's latest rollout as the page shows it, and the ones before it."""

    def read() -> tuple[rollouts.View | None, list[Rollout]]:
        try:
            latest, earlier = delivery.Rollouts(console.settings, console.db).get(model_id)
        except delivery.NotFound:
            return None, []
        return rollouts.view_of(latest), earlier[:EARLIER]

    nothing: tuple[rollouts.View | None, list[Rollout]] = (None, [])
    return console.read(read, nothing)


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
    rollout, earlier = _rollout(console, model_id)
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
            "rollout": rollout,
            "rollout_first": rollout is not None and rollout.recent(dt.datetime.now(dt.UTC)),
            "earlier": [rollouts.view_of(r) for r in earlier],
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


def _reason(form: dict[str, str]) -> tuple[str, dict[str, str]]:
    reason = " ".join(form.get("reason", "").split())
    if not reason:
        return reason, {"reason": "Say why the rollout stops: it goes into the rollback commit."}
    if len(reason) > REASON_MAX:
        return reason[:REASON_MAX], {"reason": f"Keep the reason under {REASON_MAX} characters."}
    return reason, {}


def _not_open(exc: Exception) -> writes.Outcome:
    return writes.Outcome("failed", "Not done: nothing was changed", str(exc))


def _promote_preview(rollout: Rollout, actor: str) -> writes.Outcome:
    return writes.Outcome(
        "preview",
        f"Preview: promote version {rollout.canary_version}; nothing is changed yet",
        f"Confirming ends the rollout as Successful: version {rollout.canary_version} gets "
        f"every call to {rollout.model_id} at once, and version {rollout.stable_version} "
        "stops serving. Git holds the new version already, so nothing is committed; the "
        f"event rollout_promoted records {actor}.",
    )


def _abort_preview(console: Console, rollout: Rollout, session: Session) -> writes.Outcome:
    """The rollback commit that aborting makes, as a dry run, with the figures as now."""
    why = f"aborted by {session.identity.name}: (your reason)"
    evidence: str | None = None
    with contextlib.suppress(errors.GroveError):  # no figures: the commit without them
        with console.db.transaction() as connection:
            figures = delivery.measure(connection, rollout, dt.datetime.now(dt.UTC))
        judged = figures.to_json(rollout)
        judged["reasons"] = [why]
        evidence = delivery.evidence(rollout, judged, Phase.ABORTED.value)
    author = writes.author_of(session)
    return writes.attempt_rollback(
        lambda: console.authoring.rollback(
            rollout.model_id,
            author,
            to_version=rollout.stable_version,
            dry_run=True,
            evidence=evidence,
        )
    )


@router.post("/models/{model_id}/rollout/{action}")
def rollout_action(
    request: Request,
    console: ConsoleDep,
    session: SignedIn,
    form: Form,
    model_id: str,
    action: str,
) -> Response:
    """Promote or abort the model's open rollout: a preview first, then ``confirm=1``.
    Abort stays confirmable when its commit cannot be previewed: stopping the canary
    comes first, and the rollback is then left to make by hand (RollbackPending)."""
    require(session, "operator")
    if action not in ROLLOUT_VERBS:
        raise NotFound(f"There is no rollout action {action[:40]!r}.")
    model = _model(console, model_id)
    service = delivery.Rollouts(console.settings, console.db)
    actor = session.identity.name
    confirm = form.get("confirm") == "1"
    reason, problems = _reason(form) if action == "abort" and confirm else ("", {})
    view: rollouts.View | None = None
    try:
        latest, _ = service.get(model_id)
        view = rollouts.view_of(latest)
        if not view.actionable:
            state = latest.rollback.value or latest.phase.value
            raise delivery.NotOpen(
                f"rollout {latest.id} of {model_id} is {state}; nothing to {action}"
            )
        if confirm and not problems:
            query: dict[str, Any] = {"done": action}
            if action == "promote":
                service.promote(model_id, actor=actor)
            else:
                ended = service.abort(model_id, actor=actor, reason=reason)
                query["result"] = "pending" if ended.rollback is RollbackState.PENDING else "done"
                if ended.rollback_commit:
                    query["rev"] = ended.rollback_commit
            console.engine.refresh()  # this server's router and open pages follow at once
            console.overview.forget()
            return see_other(f"{url_of(model_id)}?{urlencode(query)}#rollout-title")
        outcome = (
            _promote_preview(latest, actor)
            if action == "promote"
            else _abort_preview(console, latest, session)
        )
        confirmable = True
    except (delivery.NotFound, delivery.NotOpen) as exc:
        outcome = writes.Outcome("failed", "Not done: nothing was changed", str(exc))
        confirmable = False
    return console.page(
        request,
        "rollout_action.html",
        {
            "model": model,
            "url": url_of(model_id),
            "action": action,
            "verb": ROLLOUT_VERBS[action],
            "rollout": view,
            "outcome": outcome,
            "confirmable": confirmable,
            "errors": problems,
            "reason": reason,
            "reason_max": REASON_MAX,
        },
        session=session,
        status_code=409 if not confirmable else 422 if problems else 200,
    )
