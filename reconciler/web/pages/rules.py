"""``/rules`` and ``/rules/{id}``: the routing rules, and the rule editor with its route
simulator.

The list shows every live rule (the registry's snapshot holds the disabled ones too;
the router's table only the enabled) with the model the router picks for it now.
The editor is one form posted to ``/rules/{id}`` with the button pressed as
``action``: ``simulate`` (anyone signed in: it reads only) shows the decision now and
after the edit side by side; ``preview`` and ``save`` (operators) go through
`Authoring.update`, dry run first, like the API's PATCH. An edit is validated like a
file in git (`web.ruleedit`) before any git work, so an invalid one never reaches git
and its errors stand at their fields.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from reconciler.manifests import kinds as manifests
from reconciler.manifests import loading
from reconciler.store.sessions import Session
from reconciler.web import ruleedit as editing
from reconciler.web import writes
from reconciler.web.console import Console
from reconciler.web.pages import ConsoleDep, Form, NotFound, PageRoute, SignedIn, require, see_other

router = APIRouter(route_class=PageRoute, include_in_schema=False)
_REVISION = re.compile(r"^[0-9a-f]{7,64}$")
_BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/._-]{0,199}$")
ACTIONS = ("simulate", "preview", "save")


def _rules(console: Console) -> Mapping[str, manifests.RoutingRule]:
    """Every live rule, enabled or not (the router's table keeps only the enabled)."""
    snapshots = console.engine.snapshots
    return snapshots.current.rules if snapshots is not None else {}


def _rule(console: Console, rule_id: str) -> manifests.RoutingRule:
    # a length check here, not in the route's signature: FastAPI's 422 would not be a page
    rule = _rules(console).get(rule_id) if len(rule_id) <= 63 else None
    if rule is None:
        raise NotFound(f"No live routing rule has the id {rule_id[:100]!r}.")
    return rule


@router.get("/rules")
def rules_page(request: Request, console: ConsoleDep, session: SignedIn) -> Response:
    table = console.engine.table()
    # the head's plan (fetched and planned at most every 5 s per server): pending changes
    overview = console.overview_now()
    found = editing.rows(
        _rules(console),
        table,
        editing.dynamic_of(console.engine),
        overview.pending() if overview else {},
    )
    return console.page(
        request,
        "rules.html",
        {"rows": found, "models": table.models},
        session=session,
    )


@dataclasses.dataclass
class _Editor:
    """What the editor page shows, filled as far as the request got."""

    rule: manifests.RoutingRule
    values: dict[str, Any]
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    profile: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"sim-context": "", "sim-cost": ""}
    )
    before: editing.Simulation | None = None
    after: editing.Simulation | None = None
    outcome: writes.Outcome | None = None
    action: str = ""

    def context(self, console: Console) -> dict[str, Any]:
        table = console.engine.table()
        overview = console.overview_now()
        pending = overview.pending() if overview else {}
        current = editing.simulate(table, editing.dynamic_of(console.engine), self.rule)
        return {
            "rule": self.rule,
            "values": self.values,
            "errors": self.errors,
            "error_list": editing.in_order(self.errors),
            "profile": self.profile,
            "before": self.before,
            "after": self.after,
            "current": current,
            "outcome": self.outcome,
            "action": self.action,
            "review": console.settings.review_branches,  # a save pushes a branch instead
            # the branch head changes this rule and is not applied: an edit lands on top
            "pending": pending.get((manifests.KIND_RULE, self.rule.id)),
            "capabilities": editing.CAPABILITIES,
            "strategies": editing.STRATEGIES,
            "failures": editing.FAILURES,
            "model_ids": sorted(table.models),
            "changed": _changed(self.before, self.after),
        }


def _changed(before: editing.Simulation | None, after: editing.Simulation | None) -> str:
    """One sentence on what the edit does to the decision."""
    if before is None or after is None:
        return ""
    old = before.decision.model_id if before.decision else None
    new = after.decision.model_id if after.decision else None
    if old != new:
        return f"The edit changes the pick: {old or 'no model'} → {new or 'no model'}."
    old_chain = before.decision.chain if before.decision else ()
    new_chain = after.decision.chain if after.decision else ()
    if old_chain != new_chain:
        return f"Same pick ({new or 'no model'}); the failover chain changes."
    return f"The edit does not change the decision: {new or 'no model'}, same chain."


def _render(
    request: Request, console: Console, session: Session, editor: _Editor, status: int = 200
) -> Response:
    return console.page(
        request, "rules_edit.html", editor.context(console), session=session, status_code=status
    )


@router.get("/rules/{rule_id}")
def rule_page(
    request: Request,
    console: ConsoleDep,
    session: SignedIn,
    rule_id: str,
    saved: str = "",
    branch: str = "",
) -> Response:
    rule = _rule(console, rule_id)
    editor = _Editor(rule, editing.form_values(rule))
    if branch and _BRANCH.fullmatch(branch) and _REVISION.fullmatch(saved):
        editor.outcome = writes.Outcome(
            "review",
            f"Pushed branch {branch} for review",
            "The fleet branch is unchanged until the branch is merged.",
            revision=saved,
            branch=branch,
        )
    elif _REVISION.fullmatch(saved):
        editor.outcome = writes.Outcome(
            "done", "Saved: one commit to the fleet repository", revision=saved
        )
    return _render(request, console, session, editor)


@router.post("/rules/{rule_id}")
def rule_post(
    request: Request, console: ConsoleDep, session: SignedIn, form: Form, rule_id: str
) -> Response:
    action = form.get("action", "simulate")
    if action not in ACTIONS:
        action = "simulate"
    if action != "simulate":
        require(session, "operator")  # a write: the server's own check, whatever was shown
    rule = _rule(console, rule_id)
    today = dt.datetime.now(dt.UTC).date()
    edit = editing.edit_of(
        form,
        rule,
        console.engine.table().models,
        limits=loading.Limits.of(console.settings),
        allow_local_endpoints=console.settings.allow_local_endpoints,
        today=today,
    )
    profile, profile_values, profile_errors = editing.profile_of(form)
    editor = _Editor(rule, edit.values, {**edit.errors, **profile_errors}, profile_values)
    editor.action = action
    table = console.engine.table()
    dynamic = editing.dynamic_of(console.engine)
    if not profile_errors:
        editor.before = editing.simulate(table, dynamic, rule, profile)
        if edit.rule is not None:
            editor.after = editing.simulate(table, dynamic, edit.rule, profile)
    if not edit.ok:
        return _render(request, console, session, editor, 422)
    if action == "simulate":
        return _render(request, console, session, editor, 422 if profile_errors else 200)
    before = manifests.to_document(rule)["payload"]
    changes = {"payload": editing.changes_of(before, edit.payload)}
    author = writes.author_of(session)
    dry_run = action == "preview"
    outcome = writes.attempt(
        lambda: console.authoring.update(
            manifests.KIND_RULE, rule.id, changes, author, dry_run=dry_run
        ),
        dry_run=dry_run,
    )
    if outcome.committed and outcome.revision:
        console.engine.refresh()  # the page after the redirect shows the applied rule
        console.overview.forget()
        query = {"saved": outcome.revision}
        if outcome.branch:
            query["branch"] = outcome.branch
        return see_other(f"/rules/{rule.id}?{urlencode(query)}")
    editor.outcome = outcome
    return _render(request, console, session, editor, 200 if outcome.ok else 422)
