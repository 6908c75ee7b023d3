"""``/models/new``: the add-model wizard, three steps that end in one git commit.

1. who the model is (name, id, provider, provider model, endpoint, the credentials
   variable's name); 2. what it is good at and costs (capabilities, context window,
   pricing, priority, fallbacks); 3. the review: the manifest as it will be committed,
   the plan with its safety verdict (the same dry run the API's writes make), and what
   each enabled rule would pick with it. Every step is a form that posts every value
   so far, so it works without JavaScript and Back keeps what was typed; each post is
   judged again (`web.wizard.check`), errors shown at their field. Submit commits
   through `Authoring.register`, or pushes a branch for review, and redirects to a
   page naming the commit (Post/Redirect/Get).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from reconciler.manifests import loading
from reconciler.routing import ranking
from reconciler.store.sessions import Session
from reconciler.web import wizard, writes
from reconciler.web.console import Console
from reconciler.web.pages import ConsoleDep, Form, PageRoute, SignedIn, require, see_other
from reconciler.web.writes import Outcome

router = APIRouter(route_class=PageRoute, include_in_schema=False)
STEPS = ("Who it is", "What it is good at", "Review and commit")
_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_BRANCH = re.compile(r"^grove/review/[A-Za-z0-9._-]{1,200}$")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _live(console: Console) -> tuple[dict[str, Any], dict[str, Any]]:
    """The router's live models and rules (one snapshot)."""
    table = console.engine.table()
    snapshots = console.engine.snapshots
    rules = dict(snapshots.current.rules) if snapshots is not None else {}
    return dict(table.models), rules


def _fallback_choices(console: Console) -> list[tuple[str, str]]:
    """(id, name) of the enabled models, highest priority first: the order they are listed
    and, once ticked, the order of the failover chain."""
    models = console.engine.table().models.values()
    enabled = [m for m in models if str(m.payload.state) == "enabled"]
    enabled.sort(key=lambda m: (-m.payload.priority, m.meta.id))
    return [(m.meta.id, m.payload.name) for m in enabled]


def _check(console: Console, draft: wizard.Draft, upto: int) -> list[wizard.Problem]:
    models = console.engine.table().models
    found = wizard.check(
        draft,
        upto=upto,
        limits=loading.Limits.of(console.settings),
        allow_local_endpoints=console.settings.allow_local_endpoints,
        taken=lambda ident: ident in models,
    )
    if upto >= 2:
        live = {ident for ident, _ in _fallback_choices(console)}
        unknown = [f for f in draft.fallbacks if f not in live]
        if unknown:
            found.append(
                wizard.Problem(
                    "fallbacks",
                    "R008",
                    f"payload.fallbacks: {', '.join(unknown[:3])} is not an enabled model",
                )
            )
        if len(draft.fallbacks) > wizard.MAX_FALLBACKS:
            found.append(
                wizard.Problem(
                    "fallbacks",
                    "S004",
                    f"payload.fallbacks: at most {wizard.MAX_FALLBACKS} fallbacks",
                )
            )
    return found


def _dynamic(console: Console) -> ranking.Dynamic:
    """The router's own circuits and observed latencies, as its decisions see them."""
    engine = console.engine
    quiet = wizard.quiet_dynamic()
    return ranking.Dynamic(
        blocked=engine.breakers.blocked,
        p95_ms=engine.stats.p95,
        today=quiet.today,
        open_circuits=engine.breakers.open_ids(),
        stats_epoch=engine.stats.epoch,
    )


def _render(
    request: Request,
    console: Console,
    session: Session,
    draft: wizard.Draft,
    step: int,
    *,
    problems: list[wizard.Problem] | None = None,
    outcome: Outcome | None = None,
    status_code: int = 200,
) -> Response:
    shown = [p for p in problems or [] if wizard.step_of(p.field) == step] or list(problems or [])
    problems = wizard.in_page_order(shown)
    errors = wizard.errors_by_field(problems)
    context: dict[str, Any] = {
        "step": step,
        "steps": STEPS,
        "values": draft.shown(),
        "fallbacks": draft.fallbacks,
        "errors": errors,
        "error_list": [(p.field, p.text) for p in problems],
        "capabilities": wizard.CAPABILITIES,
        "providers": wizard.PROVIDERS,
        "choices": _fallback_choices(console) if step == 2 else [],
        "carry": [f for f in wizard.TEXT_FIELDS if wizard.step_of(f) != step],
        "outcome": outcome,
        "review": console.settings.review_branches,
        "yaml": "",
        "effects": [],
        "effect_summary": "",
        "file": f"{console.settings.path}/models/{draft.ident}.yaml",
    }
    if step == 3:
        document = draft.document()
        context["yaml"] = wizard.yaml_text(document)
        model = wizard.new_model(
            document, allow_local_endpoints=console.settings.allow_local_endpoints
        )
        if model is not None:
            models, rules = _live(console)
            effects = wizard.routing_effect(model, models, rules, _dynamic(console))
            context["effects"] = effects
            context["effect_summary"] = wizard.summary(draft.ident, effects)
    return console.page(request, "wizard.html", context, session=session, status_code=status_code)


def _earliest(problems: list[wizard.Problem]) -> int:
    return min((wizard.step_of(p.field) for p in problems), default=1)


@router.get("/models/new")
def wizard_page(request: Request, console: ConsoleDep, session: SignedIn) -> Response:
    require(session, "operator")
    return _render(request, console, session, wizard.Draft.of({}), 1)


@router.post("/models/new")
def wizard_step(request: Request, console: ConsoleDep, session: SignedIn, form: Form) -> Response:
    require(session, "operator")
    draft = wizard.Draft.of(form)
    try:
        step = min(max(int(form.get("step", "1")), 1), 3)
    except ValueError:
        step = 1
    action = form.get("action", "next")
    if action == "back":  # no judgement on the way back: the values go back as typed
        return _render(request, console, session, draft, max(step - 1, 1))
    upto = min(step, 2)
    problems = _check(console, draft, upto)
    if problems:
        return _render(
            request,
            console,
            session,
            draft,
            _earliest(problems),
            problems=problems,
            status_code=422,
        )
    if step == 1:
        return _render(request, console, session, draft, 2)
    author = writes.author_of(session)
    document = draft.document()
    if step == 2 or action != "submit":
        outcome = writes.attempt(
            lambda: console.authoring.register(document, author, dry_run=True), dry_run=True
        )
        return _back_to_field(request, console, session, draft, outcome) or _render(
            request, console, session, draft, 3, outcome=outcome
        )
    outcome = writes.attempt(lambda: console.authoring.register(document, author), dry_run=False)
    if outcome.committed:
        console.overview.forget()
        query = f"id={draft.ident}&commit={outcome.revision or ''}"
        if outcome.branch:
            query += f"&branch={outcome.branch}"
        elif outcome.title.startswith("Committed and applied"):
            query += "&applied=1"
        return see_other(f"/models/new/done?{query}")
    return _back_to_field(request, console, session, draft, outcome) or _render(
        request, console, session, draft, 3, outcome=outcome, status_code=422
    )


def _back_to_field(
    request: Request, console: Console, session: Session, draft: wizard.Draft, outcome: Outcome
) -> Response | None:
    """An invalid outcome whose diagnostics are about this model's fields: the step with
    those fields, each error at its field (a fallback gone since step 2, say)."""
    if outcome.kind != "invalid":
        return None
    ours = [d for d in outcome.diagnostics if d.file.endswith(f"models/{draft.ident}.yaml")]
    problems = [p for p in wizard.problems_of(ours) if p.field != "form"]
    if not problems:
        return None
    return _render(
        request,
        console,
        session,
        draft,
        _earliest(problems),
        problems=problems,
        outcome=outcome,
        status_code=422,
    )


Text = Annotated[str, Query(max_length=300)]


@router.get("/models/new/done")
def wizard_done(
    request: Request,
    console: ConsoleDep,
    session: SignedIn,
    id: Text = "",
    commit: Text = "",
    branch: Text = "",
    applied: Text = "",
) -> Response:
    """The success page of a submit: what the query says, each part checked (a link to it
    can be made by anyone, so it names nothing it cannot show as it is)."""
    return console.page(
        request,
        "wizard_done.html",
        {
            "ident": id if _ID.match(id) else "",
            "commit": commit if _SHA.match(commit) else "",
            "branch": branch if _BRANCH.match(branch) else "",
            "applied": applied == "1",
        },
        session=session,
    )
