"""What a page shows of a write: its preview, its outcome, or why it was refused.

Every console write goes through `gitops.authoring.Authoring`, like the API's: a
preview first (``dry_run=True``: the diff, the plan and the violations the change
would add), then the same call committing. This module runs either and turns the
answer, or the refusal, into one :class:`Outcome` that every page renders the same
way (``templates/outcome.html``): a refused change shows each violation with its
way out, an invalid one each diagnostic with its file, line and code; nothing was
committed in either case.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from reconciler.base import errors
from reconciler.base.diagnostics import Diagnostic
from reconciler.gitops import authoring
from reconciler.gitops.authoring import Rollback, RollbackChange, WriteChange, WriteResult
from reconciler.planning.plans import Change, Violation
from reconciler.store.sessions import Session

OUTAGE = (errors.DatabaseUnavailable, errors.DatabaseUnreadable)


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """``kind`` is ``preview``, ``done``, ``review`` (pushed to a branch), ``unchanged``,
    ``refused``, ``invalid`` or ``failed``; ``ok`` when nothing stands in the way."""

    kind: str
    title: str
    detail: str = ""
    revision: str | None = None
    branch: str | None = None
    message: str = ""  # the commit message (a preview's, or the commit's)
    diff: str = ""
    changes: tuple[Change, ...] = ()
    violations: tuple[Violation, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def ok(self) -> bool:
        return self.kind in ("preview", "done", "review", "unchanged")

    @property
    def committed(self) -> bool:
        return self.kind in ("done", "review")


def author_of(session: Session) -> authoring.Author:
    return authoring.Author.of(session.identity.name)


def attempt(write: Callable[[], WriteResult], *, dry_run: bool) -> Outcome:
    """Run ``write`` (an `Authoring` call with ``dry_run`` as given) and say what happened."""
    return _guarded(lambda: _result(write(), dry_run=dry_run))


def attempt_rollback(rollback: Callable[[], Rollback]) -> Outcome:
    """Run ``rollback`` (`Authoring.rollback`, dry or not) and say what happened, as
    `attempt` does for the other writes: a rollback answers a `Rollback` (the versions
    it goes from and to, how it commits; a dry run says so itself), not a `WriteResult`."""
    return _guarded(lambda: _rolled_back(rollback()))


def _guarded(run: Callable[[], Outcome]) -> Outcome:
    try:
        return run()
    except authoring.Refused as exc:
        return Outcome(
            "refused",
            "Refused by the safety checks: nothing was committed",
            str(exc),
            changes=tuple(exc.plan.changes),
            violations=tuple(exc.plan.violations),
        )
    except authoring.Invalid as exc:
        return Outcome(
            "invalid",
            "The manifest is not valid: nothing was committed",
            str(exc),
            diagnostics=exc.diagnostics,
        )
    except (authoring.Conflict, authoring.NotFound, authoring.Suspended) as exc:
        return Outcome("failed", "Not done: nothing was committed", str(exc))
    except OUTAGE:
        raise  # the page's route shows the outage
    except errors.GroveError as exc:
        return Outcome("failed", "Grove could not do that: nothing was committed", str(exc))


def _rolled_back(rollback: Rollback) -> Outcome:
    versions = f"from version {rollback.from_version} to {rollback.to_version}"
    how = f" by {rollback.method}" if rollback.method else ""
    undoes = f" of {rollback.undoes[:12]}" if rollback.undoes else ""
    change = rollback.change
    if change is RollbackChange.DRY_RUN and rollback.preview is not None:
        preview = rollback.preview
        if preview.plan.violations:
            return Outcome(
                "refused",
                "This rollback would be refused by the safety checks",
                "Nothing is committed. Each violation says its way out.",
                message=preview.message,
                diff=preview.diff,
                changes=tuple(preview.plan.changes),
                violations=tuple(preview.plan.violations),
            )
        return Outcome(
            "preview",
            f"Preview: roll back {versions}{how}{undoes}; nothing is committed yet",
            f"{rollback.detail}. Confirming commits it, applies it at once (review branches "
            f"or not) and quarantines version {rollback.from_version}.",
            message=preview.message,
            diff=preview.diff,
            changes=tuple(preview.plan.changes),
        )
    if change is RollbackChange.PENDING:
        held = f"Git holds version {rollback.to_version} already: confirming applies it"
        return Outcome("preview", held, rollback.detail)
    if change in (RollbackChange.NOTHING, RollbackChange.UNCHANGED):
        return Outcome("unchanged", "Nothing to roll back", rollback.detail)
    if change is RollbackChange.ROLLED_BACK:
        return Outcome(
            "done",
            f"Rolled back {versions}; version {rollback.from_version} is quarantined",
            rollback.detail,
            revision=rollback.revision,
        )
    return Outcome(
        "done", "Committed, not applied yet", rollback.detail, revision=rollback.revision
    )


def _result(result: WriteResult, *, dry_run: bool) -> Outcome:
    if result.change is WriteChange.UNCHANGED:
        return Outcome("unchanged", "Nothing to change", result.detail, revision=result.revision)
    if dry_run and result.preview is not None:
        plan = result.preview.plan
        if plan.violations:
            return Outcome(
                "refused",
                "This change would be refused by the safety checks",
                "Nothing is committed. Each violation says its way out.",
                message=result.preview.message,
                diff=result.preview.diff,
                changes=tuple(plan.changes),
                violations=tuple(plan.violations),
            )
        return Outcome(
            "preview",
            "Preview: nothing is committed yet",
            "This is the commit, and what the reconciler would apply.",
            message=result.preview.message,
            diff=result.preview.diff,
            changes=tuple(plan.changes),
        )
    if result.branch is not None:
        return Outcome(
            "review",
            f"Pushed branch {result.branch} for review",
            result.detail,
            revision=result.revision,
            branch=result.branch,
        )
    title = "Committed and applied" if result.applied else "Committed, not applied yet"
    return Outcome("done", title, result.detail, revision=result.revision)
