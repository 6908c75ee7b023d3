"""Properties over generated fleets: applying diff(A -> B) to live A yields B, and a plan
never both refuses and applies.

A fleet is a small set of models and rules built through the manifest classes, with
ids from a short list so that two fleets share objects, versions and states often.
Live A may also carry out-of-band edits (drift) that the plan must undo.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect

from reconciler.base import errors
from reconciler.gitops import applying
from reconciler.manifests import kinds as manifests
from reconciler.planning import diffing, plans, safety
from reconciler.planning.livestate import LiveState
from reconciler.planning.plans import ChangeKind
from reconciler.store.engine import Database
from tests.unit import fleet

MODEL_IDS = ("m0", "m1", "m2")
RULE_IDS = ("r0", "r1")
CAPABILITIES = ("reasoning", "speed")
FAST = settings(max_examples=50, deadline=None)

Fleet = list[fleet.Document]


def _subset(items: tuple[str, ...] | list[str]) -> st.SearchStrategy[list[str]]:
    return (
        st.lists(st.sampled_from(list(items)), unique=True, max_size=len(items))
        if items
        else st.just([])
    )


@st.composite
def models(draw: st.DrawFn, ident: str, others: list[str]) -> fleet.Document:
    capabilities = draw(
        st.dictionaries(
            st.sampled_from(CAPABILITIES), st.sampled_from([0.5, 0.9]), min_size=1, max_size=2
        )
    )
    return fleet.model(
        ident,
        draw(st.sampled_from(["1", "2"])),
        state=draw(st.sampled_from(["enabled", "disabled", "retired"])),
        capabilities=capabilities,
        priority=draw(st.sampled_from([1, 100])),
        fallbacks=draw(_subset([m for m in others if m != ident])),
    )


@st.composite
def rules(draw: st.DrawFn, ident: str, model_ids: list[str]) -> fleet.Document:
    return fleet.rule(
        ident,
        draw(st.sampled_from(["1", "2"])),
        requires=draw(st.lists(st.sampled_from(CAPABILITIES), unique=True, min_size=1)),
        minScore=draw(st.sampled_from([0.0, 0.7])),
        chain=draw(_subset(model_ids)),
        enabled=draw(st.booleans()),
    )


@st.composite
def fleets(draw: st.DrawFn) -> Fleet:
    model_ids = sorted(draw(_subset(MODEL_IDS)))
    rule_ids = sorted(draw(_subset(RULE_IDS)))
    return [draw(models(m, model_ids)) for m in model_ids] + [
        draw(rules(r, model_ids)) for r in rule_ids
    ]


@st.composite
def registries(draw: st.DrawFn) -> tuple[Fleet, LiveState]:
    """Fleet A and the registry that applied it, some objects edited out of band."""
    applied = draw(fleets())
    model_ids = [d["meta"]["id"] for d in applied if d["meta"]["type"] == "AIModel"]
    drifted: dict[Any, fleet.Document] = {}
    for document in applied:
        if draw(st.booleans()) and draw(st.booleans()):  # about one object in four
            kind, ident = fleet.key(document)
            edit = models(ident, model_ids) if kind == "AIModel" else rules(ident, model_ids)
            drifted[(kind, ident)] = draw(edit)
    return applied, fleet.live(applied, drifted=drifted)


def _edited(draw: st.DrawFn, document: fleet.Document) -> fleet.Document | None:
    """The next revision of one applied object: kept, dropped, its state changed, or a
    new version (most edits in git are one of these, not an unrelated object)."""
    meta, payload = document["meta"], dict(document["payload"])
    how = draw(st.sampled_from(["keep", "drop", "state", "version"]))
    if how == "drop":
        return None
    version = meta["version"]
    if how == "state" and meta["type"] == "AIModel":
        payload["state"] = draw(st.sampled_from(["enabled", "disabled", "retired"]))
    elif how == "state":
        payload["enabled"] = not payload["enabled"]
    elif how == "version":
        version = str(int(version) + 1)
        if meta["type"] == "AIModel":
            payload["priority"] = 50  # generated priorities are 1 or 100
        else:
            payload["minScore"] = 0.5  # generated ones are 0.0 or 0.7
    build = fleet.model if meta["type"] == "AIModel" else fleet.rule
    return build(meta["id"], version, **payload)


@st.composite
def transitions(draw: st.DrawFn) -> tuple[LiveState, Fleet]:
    """Live A and fleet B: an unrelated fleet, or an edit of A's objects."""
    applied, have = draw(registries())
    if draw(st.booleans()):
        return have, draw(fleets())
    edits = [_edited(draw, document) for document in applied]
    return have, [document for document in edits if document is not None]


def _documents(live: LiveState) -> dict[Any, Any]:
    return {key: obj.document for key, obj in live.objects.items()}


@FAST
@given(transition=transitions())
def test_applying_the_diff_of_a_to_b_yields_b(transition: tuple[LiveState, Fleet]) -> None:
    have, want = transition
    changes = diffing.diff(fleet.desired(want), have)
    after = fleet.apply_in_memory(have, changes)
    assert _documents(after) == {fleet.key(d): d for d in want}
    assert after.drifted() == []
    assert diffing.diff(fleet.desired(want), after) == ()  # and planning again finds nothing
    # one change per object that differs, of the kind its presence on each side says
    assert len({c.key for c in changes}) == len(changes)
    for change in changes:
        assert (change.kind is ChangeKind.CREATE) is (change.key not in have.objects)
        assert (change.kind is ChangeKind.REMOVE) is (change.key not in after.objects)
        was = have.objects.get(change.key)
        drifted = was is not None and was.drifted and change.kind is not ChangeKind.REMOVE
        assert change.corrects_drift is drifted
        restores = (
            was is not None
            and change.document is not None
            and manifests.content_hash(change.document) == was.applied_hash
        )
        assert (change.kind is ChangeKind.RESTORE) is restores
        event(change.kind.value)


@FAST
@given(want=fleets())
def test_the_diff_of_a_fleet_against_itself_is_empty(want: Fleet) -> None:
    assert diffing.diff(fleet.desired(want), fleet.live(want)) == ()


@pytest.fixture(scope="module")
def unmigrated() -> Iterator[Database]:
    """A database with no tables: an apply that went past the safety verdict would fail
    on it with another error than PlanRefused (and write nothing either way)."""
    db = Database("sqlite://")
    yield db
    db.dispose()


@FAST
@given(
    transition=transitions(),
    descends=st.sampled_from([None, True, False]),
    related=st.sampled_from([None, True, False]),
    ratio=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_a_plan_never_both_refuses_and_applies(
    unmigrated: Database,
    transition: tuple[LiveState, Fleet],
    descends: bool | None,
    related: bool | None,
    ratio: float,
) -> None:
    have, want = transition
    plan = fleet.plan(want, have, descends=descends, related=related, max_delete_ratio=ratio)
    assert plan.refused is bool(plan.violations)
    event("refused" if plan.refused else "allowed")
    assert {v.code for v in plan.violations} <= set(safety.CATALOG)
    text, markdown, data = plans.render_text(plan), plans.render_markdown(plan), plan.to_json()
    assert data["refused"] is plan.refused
    assert plans.Plan.from_json(data).refused is plan.refused
    if plan.refused:
        assert "nothing will be applied" in text and "Safety: ok." not in text
        assert markdown.startswith("### Grove plan: refused")
        with pytest.raises(errors.PlanRefused, match="nothing was applied") as refused:
            applying.apply(unmigrated, plan, actor="unit")
        assert refused.value.plan is plan
        assert inspect(unmigrated.engine).get_table_names() == []
    else:
        assert text.rstrip().endswith("Safety: ok.") and "REFUSED" not in text
        assert not markdown.startswith("### Grove plan: refused")
