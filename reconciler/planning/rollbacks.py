"""Which version a rollback returns to, decided from the registry's history (pure).

"Roll back" means: go back to the version that was live before the current one,
as the registry applied them (`store.registry.live_versions`), never as git's
parents suggest. After an operator has already reverted a bad version by hand,
the current version is that earlier good one, come back; rolling "back" from it
would bring the bad one again, so there is nothing to roll back. `choose` is
called by `authoring.Authoring.rollback` under its write lock; git is not read
here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from reconciler.base import errors


@dataclasses.dataclass(frozen=True, slots=True)
class Stretch:
    """A stretch of an object's life at one version: live from the apply of ``revision``
    (at ``since``) until the next stretch began."""

    version: str
    revision: str | None
    since: str | None


class NoEarlierVersion(errors.PermanentError):
    """There is no version to go back to (or the one asked for was never live)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    from_version: str
    to_version: str


@dataclasses.dataclass(frozen=True, slots=True)
class Nothing:
    """The version to go back to is live already: ``version`` since the apply of
    ``revision``; ``returned`` when that version is a return to an earlier one (a revert
    or an earlier rollback), not simply the first version."""

    version: str
    revision: str | None
    since: str | None
    returned: bool


def choose(
    stretches: Sequence[Stretch],
    current: str,
    *,
    to_version: str | None,
    applied: Collection[str],
    quarantined: Collection[str],
    name: str,
) -> Target | Nothing:
    """The version to return to from ``current`` (the live version): ``to_version`` when
    given (it must have been applied before), else the newest version live before the
    current one that is not quarantined. ``Nothing`` when that is the live one already.
    ``name`` says which object, for the messages."""
    if not stretches or stretches[-1].version != current:  # a registry older than its events
        stretches = [*stretches, Stretch(current, None, None)]
    last = stretches[-1]
    first_live: dict[str, int] = {}
    for position, stretch in enumerate(stretches):
        first_live.setdefault(stretch.version, position)
    returned = len(stretches) > 1 and first_live[current] < first_live[stretches[-2].version]
    if to_version is not None:
        if to_version == current:
            return Nothing(current, last.revision, last.since, returned)
        if to_version not in applied:
            seen = ", ".join(sorted(applied, key=_order)) or "none"
            raise NoEarlierVersion(
                f"{name} never had version {to_version} applied (applied: {seen})"
            )
        return Target(current, to_version)
    if len(stretches) < 2:
        raise NoEarlierVersion(
            f"{name} has had no other version live than {current}; nothing to roll back to"
        )
    if returned:
        return Nothing(current, last.revision, last.since, returned)
    for stretch in reversed(stretches[:-1]):
        if stretch.version != current and stretch.version not in quarantined:
            return Target(current, stretch.version)
    held = ", ".join(sorted({s.version for s in stretches[:-1]} - {current}, key=_order))
    raise NoEarlierVersion(
        f"every version of {name} live before {current} is quarantined ({held}); name one "
        "with --to once an admin has lifted its quarantine, or fix forward"
    )


def _order(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)
