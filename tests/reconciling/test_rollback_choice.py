"""`rollbacks.choose`: the version a rollback returns to, from the registry's history alone
(pure: no git, no database)."""

from __future__ import annotations

import pytest

from reconciler.planning import rollbacks
from reconciler.planning.rollbacks import Nothing, Stretch, Target


def lived(*versions: str) -> list[Stretch]:
    return [Stretch(v, f"rev{i}", None) for i, v in enumerate(versions)]


def choose(
    versions: tuple[str, ...],
    *,
    to: str | None = None,
    quarantined: tuple[str, ...] = (),
) -> Target | Nothing:
    return rollbacks.choose(
        lived(*versions),
        versions[-1],
        to_version=to,
        applied=set(versions),
        quarantined=set(quarantined),
        name="AIModel a",
    )


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        (("1", "2"), Target("2", "1")),
        (("1", "2", "3"), Target("3", "2")),
        (("1", "2", "1", "3"), Target("3", "1")),  # a new version after a revert
        (("1", "2", "1", "2"), Target("2", "1")),  # the bad one re-applied: back again
        (("1", "2", "1"), Nothing("1", "rev2", None, returned=True)),  # reverted by hand
        (("1", "2", "3", "2"), Nothing("2", "rev3", None, returned=True)),
    ],
)
def test_the_version_live_before_the_current_one(
    versions: tuple[str, ...], expected: Target | Nothing
) -> None:
    assert choose(versions) == expected


def test_quarantined_versions_are_passed_over() -> None:
    assert choose(("1", "2", "3"), quarantined=("2",)) == Target("3", "1")
    with pytest.raises(rollbacks.NoEarlierVersion, match=r"quarantined \(1, 2\)"):
        choose(("1", "2", "3"), quarantined=("1", "2"))
    with pytest.raises(rollbacks.NoEarlierVersion, match=r"quarantined \(2\); name one"):
        choose(("2", "3", "2", "3"), quarantined=("2",))


def test_a_named_version() -> None:
    assert choose(("1", "2", "3"), to="1") == Target("3", "1")
    assert choose(("1", "2", "3"), to="3") == Nothing("3", "rev2", None, returned=False)
    with pytest.raises(rollbacks.NoEarlierVersion, match=r"never had version 9 applied"):
        choose(("1", "2", "10"), to="9")


def test_no_earlier_version() -> None:
    with pytest.raises(rollbacks.NoEarlierVersion, match="no other version live than 1"):
        choose(("1",))


def test_a_registry_without_events_for_the_live_version() -> None:
    """Events older than the object's row (a registry from before they were kept)."""
    found = rollbacks.choose(
        lived("1"), "2", to_version=None, applied={"1", "2"}, quarantined=set(), name="a"
    )
    assert found == Target("2", "1")
