"""``/status``: the reconciler's state, as ``grove status`` tells it, and its levers.

The page keeps Argo CD's axes apart (sync of git to the registry, the reconciler's
health, and the router's own health) and Flux's conditions and revisions, then what
would change: the branch head's plan with its safety verdict, or the manifest errors
that stop it. Drift is the plan's restore of each object edited outside git, shown
field by field. Its levers are those of the command line, with the same effects:

- "Restore from git" is ``grove reconcile`` (``POST /api/reconcile``): one cycle that
  applies the head's whole plan, which restores every drifted object. It is previewed
  first, and the confirmation carries what the preview was computed on, so a branch
  or registry that moved in between is previewed again instead of applied blind.
- "Suspend" and "Resume" are ``grove suspend`` / ``grove resume``: a change freeze,
  recorded as a lifecycle event with who, when and the reason given here.

Every write records ``console:<token name>`` as its actor, like ``api:<name>``.

The rollouts section lists each model's latest rollout (`web.rollouts`), open ones
first: its versions, its phase and rollback in word and icon, where it stands, its
latest figures against the SLO with their n and, when its rollback could not be
pushed, the commit to make by hand. Promote and abort are on the model's page.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from reconciler.base import errors
from reconciler.gitops import reconciling
from reconciler.gitops.rollouts import Rollouts
from reconciler.planning.plans import Change, Plan
from reconciler.planning.status import Health, Status, Sync
from reconciler.store import coordination, registry
from reconciler.store.sessions import Session
from reconciler.web import rollouts
from reconciler.web.console import OUTAGE, Console, Overview
from reconciler.web.fleet import Axis
from reconciler.web.pages import ConsoleDep, Form, PageRoute, SignedIn, require, see_other
from reconciler.web.writes import Outcome

router = APIRouter(route_class=PageRoute, include_in_schema=False)

EVENTS_SHOWN = 30
REASON_MAX = 500
VALUE_MAX = 160  # characters of one field's value in a drift diff

SYNC = {
    Sync.SYNCED: Axis("Synced", "✓", "ok", "the registry holds git's branch head"),
    Sync.OUT_OF_SYNC: Axis("OutOfSync", "↻", "warn", "the branch head has changes to apply"),
    Sync.UNKNOWN: Axis("Unknown", "?", "idle", "the branch head could not be planned"),
}
HEALTH = {
    Health.HEALTHY: Axis("Healthy", "✓", "ok", "applied and in sync; nothing drifted or stalled"),
    Health.PROGRESSING: Axis("Progressing", "↻", "warn", "changes are waiting to be applied"),
    Health.DEGRADED: Axis(
        "Degraded", "!", "bad", "stalled, drifted from git, or a rollback not pushed"
    ),
    Health.UNKNOWN: Axis("Unknown", "?", "idle", "nothing has been applied yet"),
}
UNKNOWN = Axis("Unknown", "?", "idle", "the status could not be read")

# what a redirect after a write says (Post/Redirect/Get): fixed words, never echoed input
DONE = {
    "restored": "Restored from git: the plan was applied.",
    "in-sync": "Nothing to restore: the registry already matched git.",
    "suspended": "Applying is suspended: a change freeze holds until someone resumes it.",
    "already-suspended": "Applying was already suspended; nothing changed.",
    "resumed": "Applying resumed: the reconcile loop applies the branch head again.",
    "already-resumed": "Applying was not suspended; nothing changed.",
}


@dataclasses.dataclass(frozen=True, slots=True)
class FieldRow:
    path: str
    live: str
    git: str


@dataclasses.dataclass(frozen=True, slots=True)
class Drifted:
    """One object edited outside git: its field diff (live -> git), when the branch
    head could be planned, and where its page is."""

    address: str
    href: str | None
    fields: tuple[FieldRow, ...]
    also: str  # the head's own change to it besides the restore ("" when none)


@dataclasses.dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    time: str | None
    actor: str
    kind: str
    address: str
    revision: str | None
    versions: str
    detail: str


def _value(value: Any) -> str:
    if value is None:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= VALUE_MAX else text[: VALUE_MAX - 1] + "…"


def _href(kind: str, ident: str) -> str | None:
    base = {"AIModel": "/models/", "RoutingRule": "/rules/"}.get(kind)
    return None if base is None else base + ident


def drifted_of(status: Status | None, plan: Plan | None) -> list[Drifted]:
    """Each drifted object with the field diff of the head plan's change to it."""
    if status is None:
        return []
    by_address: dict[str, Change] = {}
    if plan is not None:
        by_address = {c.address: c for c in plan.changes if c.corrects_drift}
    out = []
    for address in status.drifted:
        kind, _, ident = address.partition("/")
        change = by_address.get(address)
        fields = () if change is None else change.fields
        also = "" if change is None or change.kind == "restore" else str(change.kind)
        out.append(
            Drifted(
                address,
                _href(kind, ident),
                tuple(FieldRow(f.path, _value(f.before), _value(f.after)) for f in fields),
                also,
            )
        )
    return out


def _detail(details: Any) -> str:
    if not isinstance(details, dict):
        return ""
    parts = []
    if isinstance(details.get("reason"), str):
        parts.append(f"reason: {details['reason']}")
    fields = details.get("fields")
    if isinstance(fields, list) and fields:
        shown = ", ".join(str(f) for f in fields[:6])
        parts.append(f"fields: {shown}" + (" …" if len(fields) > 6 else ""))
    for key in ("error", "message"):
        if isinstance(details.get(key), str):
            parts.append(str(details[key]))
    return "; ".join(parts)[:300]


def events_of(rows: list[dict[str, Any]]) -> list[EventRow]:
    out = []
    for row in rows:
        before, after = row.get("versionFrom"), row.get("versionTo")
        versions = "" if before is None and after is None else f"{before or '–'} → {after or '–'}"
        out.append(
            EventRow(
                int(row.get("id") or 0),
                row.get("timestamp"),
                str(row.get("actor") or ""),
                str(row.get("type") or ""),
                f"{row.get('objectKind')}/{row.get('objectId')}",
                row.get("revision"),
                versions,
                _detail(row.get("details")),
            )
        )
    return out


def _events(console: Console) -> list[dict[str, Any]]:
    with console.db.transaction() as connection:
        return registry.events(connection, EVENTS_SHOWN)


def _suspension(console: Console) -> registry.Suspension:
    with console.db.transaction() as connection:
        return registry.suspension(connection)


def _rollouts(console: Console) -> rollouts.Listing:
    return rollouts.listing_of(Rollouts(console.settings, console.db).listing())


def _seen(console: Console) -> str:
    """What a restore's preview was computed on: the registry's serial and its count of
    writes to the live tables (a drift moves the second, not the first)."""
    with console.db.transaction() as connection:
        state = registry.read_state(connection)
    return f"{state.state_serial}.{state.write_counter}"


def _render(
    request: Request,
    console: Console,
    session: Session,
    *,
    outcome: Outcome | None = None,
    confirm: dict[str, str] | None = None,
    errors_: dict[str, str] | None = None,
    reason: str = "",
    status_code: int = 200,
) -> Response:
    overview: Overview | None = console.overview_now()
    status = overview.status if overview else None
    planned = overview.outcome if overview else None
    plan = planned.plan if planned else None
    health, reasons = console.engine.health()
    suspension = console.read(lambda: _suspension(console), None)
    events = events_of(console.read(lambda: _events(console), []))
    listing = console.read(lambda: _rollouts(console), None)
    done = request.query_params.get("done", "")
    diagnostics = [d for d in planned.diagnostics if d.is_error] if planned and plan is None else []
    return console.page(
        request,
        "status.html",
        {
            "status": status,
            "problem": overview.problem if overview else "",
            "checked_at": overview.at if overview else None,
            "sync": SYNC[status.sync] if status else UNKNOWN,
            "health": HEALTH[status.health] if status else UNKNOWN,
            "router": (
                Axis("Healthy", "✓", "ok", "every circuit closed, an enabled model to route to")
                if health == "healthy"
                else Axis("Degraded", "!", "warn", "; ".join(reasons))
            ),
            "plan": plan,
            "diagnostics": diagnostics,
            "drifted": drifted_of(status, plan),
            "suspension": suspension,
            "events": events,
            "rollouts": listing,
            "live_models": console.engine.table().models,
            "done": DONE.get(done, ""),
            "outcome": outcome,
            "confirm": confirm,
            "errors": errors_ or {},
            "reason": reason,
            "reason_max": REASON_MAX,
        },
        session=session,
        status_code=status_code,
    )


@router.get("/status")
def status_page(request: Request, console: ConsoleDep, session: SignedIn) -> Response:
    return _render(request, console, session)


@router.get("/status/restore")
@router.get("/status/suspend")
@router.get("/status/resume")
def after_a_post(request: Request, console: ConsoleDep, session: SignedIn) -> Response:
    """A page rendered by a POST (a preview, a refusal, a field error) stays at the POST's
    address: its live refresh asks that address for the ``live`` fragment, and a person
    who opens it again gets the status page, never a form resent."""
    if request.headers.get("x-grove-fragment") == "live":
        return _render(request, console, session)
    return see_other("/status")


def _actor(session: Session) -> str:
    return f"console:{session.identity.name}"


@router.post("/status/restore")
def restore(request: Request, console: ConsoleDep, session: SignedIn, form: Form) -> Response:
    """Preview (the default), or apply with ``confirm=yes`` what was previewed."""
    require(session, "operator")
    reconciler = console.reconciler()
    if form.get("confirm") != "yes":
        return _preview(request, console, session, reconciler)
    try:
        revision = reconciler.resolve()
        seen = _seen(console)
    except OUTAGE:
        raise
    except errors.GroveError as exc:
        failed = Outcome("failed", "Not restored: nothing was applied", str(exc))
        return _render(request, console, session, outcome=failed, status_code=502)
    if form.get("revision") != revision or form.get("seen") != seen:
        moved = (
            "The branch head or the registry changed since that preview: check this plan, "
            "then confirm it again."
        )
        return _preview(request, console, session, reconciler, note=moved, status_code=409)
    try:
        cycle = reconciler.reconcile(actor=_actor(session), revision=revision)
    except OUTAGE:
        raise
    except errors.GroveError as exc:
        failed = Outcome("failed", "Not restored: nothing was applied", str(exc))
        return _render(request, console, session, outcome=failed, status_code=409)
    console.engine.refresh()  # this server's router and open pages follow at once
    console.overview.forget()
    if cycle.state is reconciling.CycleState.IN_SYNC:
        return see_other("/status?done=in-sync")
    if cycle.state.live:
        return see_other("/status?done=restored")
    outcome = _verdict(cycle.planned, revision)
    return _render(request, console, session, outcome=outcome, status_code=409)


def _verdict(planned: reconciling.PlanOutcome, revision: str) -> Outcome:
    """What restoring to ``revision`` does: a preview, or why it cannot."""
    plan = planned.plan
    if plan is None:
        return Outcome(
            "invalid",
            "The branch head's manifests are not valid: nothing can be restored",
            reconciling.invalid_message(planned.diagnostics),
            diagnostics=tuple(d for d in planned.diagnostics if d.is_error),
        )
    if plan.violations:
        return Outcome(
            "refused",
            "Restoring is refused by the safety checks: nothing was applied",
            "Restoring applies the branch head's whole plan, so its other changes are "
            "checked too. Each violation says its way out.",
            changes=plan.changes,
            violations=plan.violations,
        )
    if not plan.changes:
        return Outcome(
            "unchanged",
            "Nothing to restore",
            f"The registry already matches git at {revision[:12]}.",
            revision=revision,
        )
    drift = sum(1 for c in plan.changes if c.corrects_drift)
    others = len(plan.changes) - drift
    more = (
        f" It also applies {others} other change{'s' if others != 1 else ''} pending at the "
        "branch head, as every reconcile does."
        if others
        else ""
    )
    return Outcome(
        "preview",
        "Preview: restore from git (nothing is applied yet)",
        f"Confirming runs one reconcile (grove reconcile) at {revision[:12]}: it writes git's "
        f"content over {drift} drifted object{'s' if drift != 1 else ''}.{more}",
        revision=revision,
        changes=plan.changes,
    )


def _preview(
    request: Request,
    console: Console,
    session: Session,
    reconciler: reconciling.Reconciler,
    *,
    note: str = "",
    status_code: int = 200,
) -> Response:
    try:
        seen = _seen(console)
        revision = reconciler.resolve()
        planned = reconciler.plan(revision=revision)
    except OUTAGE:
        raise
    except errors.GroveError as exc:
        failed = Outcome("failed", "The branch head could not be planned", str(exc))
        return _render(request, console, session, outcome=failed, status_code=502)
    outcome = _verdict(planned, revision)
    if note:
        outcome = dataclasses.replace(outcome, detail=f"{note} {outcome.detail}")
    frozen = console.read(lambda: _suspension(console).suspended, False)
    if frozen and outcome.kind == "preview":
        outcome = dataclasses.replace(
            outcome,
            detail=f"{outcome.detail} A change freeze holds: confirming applies this plan "
            "anyway, as grove reconcile and POST /api/reconcile do; the loop stays suspended.",
        )
    confirm = {"revision": revision, "seen": seen} if outcome.kind == "preview" else None
    code = {"refused": 409, "invalid": 422}.get(outcome.kind, status_code)
    return _render(request, console, session, outcome=outcome, confirm=confirm, status_code=code)


def _reason(form: dict[str, str], *, required: bool) -> tuple[str, dict[str, str]]:
    reason = " ".join(form.get("reason", "").split())
    if required and not reason:
        return reason, {"reason": "Say why applying stops, so others know when it may resume."}
    if len(reason) > REASON_MAX:
        return reason[:REASON_MAX], {"reason": f"Keep the reason under {REASON_MAX} characters."}
    return reason, {}


def _freeze(
    request: Request, console: Console, session: Session, form: dict[str, str], suspended: bool
) -> Response:
    require(session, "operator")
    reason, problems = _reason(form, required=suspended)
    if problems:
        return _render(request, console, session, errors_=problems, reason=reason, status_code=422)
    with console.db.transaction(write=True) as connection:
        changed = coordination.set_suspended(
            connection, suspended, actor=_actor(session), reason=reason
        )
    console.overview.forget()
    word = "suspended" if suspended else "resumed"
    return see_other(f"/status?done={word if changed else 'already-' + word}")


@router.post("/status/suspend")
def suspend(request: Request, console: ConsoleDep, session: SignedIn, form: Form) -> Response:
    return _freeze(request, console, session, form, True)


@router.post("/status/resume")
def resume(request: Request, console: ConsoleDep, session: SignedIn, form: Form) -> Response:
    return _freeze(request, console, session, form, False)
