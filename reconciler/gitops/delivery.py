"""What ``grove rollout``, ``grove quarantine``, ``grove get rollouts`` and the API's
``/api/rollouts`` and ``/api/quarantine`` show and do, built once for all of them: the
documents of rollouts, and the lift of a quarantined version.

Promoting and aborting a rollout are `rollouts.Rollouts`'; this module adds the
documents (a rollout's own, plus the figures of its latest measurement, and the
rollouts before it) and the quarantine service.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.base import errors
from reconciler.store import quarantine
from reconciler.store.engine import Database
from reconciler.store.quarantine import Quarantined
from reconciler.store.rollouts import Rollout

MAX_REASON = 500  # characters of a reason given to an abort or a lift
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class NotQuarantined(errors.PermanentError):
    """That version of that object is not quarantined."""


class Ambiguous(errors.PermanentError):
    """A model and a rule with the same id both have that version quarantined."""


def checked_reason(reason: str | None) -> str:
    """A reason as a commit message and an event carry it: one line, at most
    :data:`MAX_REASON` characters; a usage error otherwise."""
    text = (reason or "").strip()
    if len(text) > MAX_REASON:
        raise errors.UsageError(f"the reason is {len(text)} characters; at most {MAX_REASON}")
    if _CONTROL.search(text):
        raise errors.UsageError("the reason must be one line without control characters")
    return text


def item(rollout: Rollout) -> dict[str, Any]:
    """A rollout as every listing shows it: its own document, plus ``current``, the
    latest measurement (taken at every analysis, a verdict or not; ``analysis`` is the
    latest verdict)."""
    return {**rollout.to_json(), "current": rollout.analysis.get("current")}


def detail(latest: Rollout, earlier: list[Rollout]) -> dict[str, Any]:
    """The model's latest rollout, with the ones before it (newest first) in ``history``."""
    return {**item(latest), "history": [item(rollout) for rollout in earlier]}


def figures(document: dict[str, Any]) -> dict[str, Any] | None:
    """The figures to show for a rollout document: its latest measurement, else its
    latest verdict."""
    found = document.get("current") or document.get("analysis")
    return found if isinstance(found, dict) else None


class Quarantines:
    """Quarantined versions: list them, and lift one (an admin's decision)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def listing(self, ident: str | None = None, *, kind: str | None = None) -> list[Quarantined]:
        with self.db.transaction() as connection:
            return quarantine.listing(connection, ident=ident, kind=kind)

    def lift(
        self,
        ident: str,
        version: str,
        *,
        actor: str,
        kind: str | None = None,
        reason: str = "",
    ) -> Quarantined:
        """Let ``version`` of ``ident`` be applied again; the row lifted. NotQuarantined
        when it is not quarantined; Ambiguous when a model and a rule of that id both
        are, at that version, and ``kind`` does not say which."""
        why = checked_reason(reason)
        with self.db.transaction(write=True) as connection:
            found = quarantine.listing(connection, ident=ident, kind=kind, version=version)
            if not found:
                named = f"{kind}/{ident}" if kind else ident
                raise NotQuarantined(f"version {version} of {named} is not quarantined")
            if len(found) > 1:
                raise Ambiguous(
                    f"version {version} of both the model and the rule {ident!r} is "
                    "quarantined; say which (--type, or ?type=)"
                )
            (held,) = found
            if not quarantine.lift(connection, held, actor=actor, reason=why):
                raise NotQuarantined(f"version {version} of {ident} is not quarantined any more")
        return held
