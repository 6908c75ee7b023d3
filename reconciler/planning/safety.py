"""Safety checks: which plans must not be applied without ``--force``.

Pure judgement over a plan, the desired objects and the live state; it never
changes anything. Each violation carries a stable code, the objects involved
and the way out, like Flux's ``prune`` guard and Argo CD's ``allowEmpty``:
destruction is opt-in. ``--force`` applies a refused plan anyway and the
override is recorded with every event the apply writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from reconciler.manifests import checking
from reconciler.manifests import kinds as manifests
from reconciler.planning.livestate import Key, LiveState
from reconciler.planning.plans import Change, ChangeKind, Violation

# code -> (short name, what it guards against). Stable: never renumber.
CATALOG: dict[str, tuple[str, str]] = {
    "P001": ("version-not-bumped", "content changed but meta.version did not"),
    "P002": ("version-reused", "a version string reused with different content"),
    "P003": ("version-quarantined", "a quarantined version applied again"),
    "P004": ("last-server", "disabling, retiring or removing the last model serving a rule"),
    "P005": ("still-referenced", "removing a model that fallbacks or a chain still name"),
    "P006": ("retire-before-remove", "removing a model that is not retired"),
    "P007": ("protected", "removing a protected object"),
    "P008": ("empty-desired", "git holds no objects while the registry does"),
    "P009": ("mass-delete", "removing more than maxDeleteRatio of the live objects"),
    "P010": ("not-descendant", "the new revision does not descend from the applied one"),
    "P011": ("unrelated-history", "the new revision shares no history with the applied one"),
}

_LOSES_SERVER = (ChangeKind.DISABLE, ChangeKind.RETIRE, ChangeKind.REMOVE, ChangeKind.VERSION)


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    desired: Mapping[Key, manifests.GroveObject]
    live: LiveState
    changes: tuple[Change, ...]
    max_delete_ratio: float = 0.5
    descends: bool | None = None  # None: not applicable (first apply, folder source, diff)
    related: bool | None = None  # False: no commit in common with the applied revision
    revision: str = ""  # the revision planned, for messages
    source: str = ""  # the repository it comes from, for messages
    # The desired models' specs and rules by id, when the caller keeps them (the
    # reconciler's incremental plan); else they are taken from ``desired``.
    model_specs: Mapping[str, manifests.ModelSpec] | None = None
    rules: Sequence[tuple[str, manifests.RoutingRule]] | None = None

    def specs(self) -> Mapping[str, manifests.ModelSpec]:
        if self.model_specs is not None:
            return self.model_specs
        return {
            ident: obj.payload
            for (kind, ident), obj in self.desired.items()
            if kind == manifests.KIND_MODEL and isinstance(obj, manifests.AIModel)
        }

    def sorted_rules(self) -> Sequence[tuple[str, manifests.RoutingRule]]:
        """The desired rules, by id."""
        if self.rules is not None:
            return self.rules
        return [
            (ident, obj)
            for (kind, ident), obj in sorted(self.desired.items())
            if kind == manifests.KIND_RULE and isinstance(obj, manifests.RoutingRule)
        ]


def violation(code: str, message: str, objects: list[str], way_out: str) -> Violation:
    return Violation(code, CATALOG[code][0], message, tuple(objects), way_out)


def removed_models(changes: tuple[Change, ...]) -> frozenset[str]:
    return frozenset(
        c.object_id
        for c in changes
        if c.kind is ChangeKind.REMOVE and c.object_kind == manifests.KIND_MODEL
    )


def check(
    context: Context, last: tuple[list[Violation], frozenset[str]] | None = None
) -> list[Violation]:
    """Every violation of a plan; ``last`` is what :func:`last_servers` answered for this
    context, when the caller asked already (it is not asked twice)."""
    found: list[Violation] = []
    found += _versions(context)
    found += (last or last_servers(context))[0]
    found += _removals(context)
    found += _bulk(context)
    if context.descends is False and context.related is False:
        found.insert(0, _unrelated(context))  # the cause of whatever else it finds: first
    elif context.descends is False:
        found.append(_rewritten(context))
    return found


def _rewritten(context: Context) -> Violation:
    live = context.live.applied_revision or "?"
    return violation(
        "P010",
        f"the revision does not descend from the applied revision {live[:12]}: "
        "history was rewritten (a force-push?)",
        [],
        "restore the branch so it contains the applied commit, or apply with --force "
        "after checking what the rewrite dropped",
    )


def _unrelated(context: Context) -> Violation:
    """P011: not a rewrite of the applied history but another history altogether: most
    often grove pointed at the wrong repository (say, the Grove checkout, not the fleet)."""
    live = context.live.applied_revision or "?"
    new = context.revision[:12] or "the revision"
    where = f" of {context.source}" if context.source else ""
    return violation(
        "P011",
        f"revision {new}{where} shares no history with the applied revision {live[:12]}: "
        "a different repository from the one the registry was reconciled from",
        [],
        "point grove at the fleet repository the registry follows (--repo or GROVE_REPO; "
        "next to a grove up, run grove in its folder, whose .grove/config.json names it); "
        "apply with --force only to replace the whole fleet with this repository's",
    )


def _versions(context: Context) -> list[Violation]:
    found: list[Violation] = []
    for change in context.changes:
        key = (change.object_kind, change.object_id, change.version_to or "")
        if change.kind in (ChangeKind.VERSION, ChangeKind.UPDATE) and (
            change.version_from == change.version_to
        ):
            found.append(
                violation(
                    "P001",
                    f"{change.address} changed content but kept version {change.version_to}",
                    [change.address],
                    f"bump meta.version of {change.object_id} (versions are immutable)",
                )
            )
        elif change.document is not None and key in context.live.versions:
            recorded = context.live.versions[key]
            if change.kind is not ChangeKind.RESTORE and (
                manifests.version_hash(change.document) != recorded
            ):
                found.append(
                    violation(
                        "P002",
                        f"{change.address} version {change.version_to} was applied before "
                        "with different content",
                        [change.address],
                        "give the new content a version string never used for this object",
                    )
                )
        if (
            change.kind
            in (ChangeKind.CREATE, ChangeKind.VERSION, ChangeKind.UPDATE, ChangeKind.ENABLE)
            and key in context.live.quarantined
        ):
            found.append(
                violation(
                    "P003",
                    f"{change.address} version {change.version_to} is quarantined",
                    [change.address],
                    "publish the fix under a new version, or revert to the previous version "
                    "(an admin who knows better lifts the quarantine: grove quarantine lift "
                    "ID VERSION)",
                )
            )
    return found


def last_servers(context: Context) -> tuple[list[Violation], frozenset[str]]:
    """P004: enabled rules that lose their last server because of this plan.

    Returns the violations and the rule ids concerned, whose plain "cannot be
    served" validation error (R006) this check replaces. Only rules that a
    changed model used to serve are examined, so a plan touching nothing
    costs nothing here.
    """
    changed = {
        c.object_id: c
        for c in context.changes
        if c.object_kind == manifests.KIND_MODEL and c.kind in _LOSES_SERVER
    }
    if not changed:
        return [], frozenset()
    before: dict[str, manifests.ModelSpec] = {}
    for ident in changed:
        live = context.live.objects.get((manifests.KIND_MODEL, ident))
        if live is None:
            continue
        try:
            parsed = manifests.parse_document(live.document, allow_local_endpoints=True)
        except ValueError:
            continue  # a live row edited into nonsense served nothing
        if isinstance(parsed, manifests.AIModel):
            before[ident] = parsed.payload
    models_after = context.specs()
    found: list[Violation] = []
    rules: list[str] = []
    # Rules without a chain or constraints that ask the same are served by the same
    # models: their answers are computed once (fleets have many rules, few kinds of ask).
    culprits_of: dict[tuple[object, ...], list[str]] = {}
    served: dict[tuple[object, ...], bool] = {}
    for ident, obj in context.sorted_rules():
        rule = obj.payload
        if not rule.enabled:
            continue
        ask = None
        if not rule.chain and rule.constraints is None:
            ask = (tuple(rule.requires), rule.min_score)
        culprits = culprits_of.get(ask) if ask is not None else None
        if culprits is None:
            culprits = checking.spec_servers(rule, before)
            if ask is not None:
                culprits_of[ask] = culprits
        if not culprits:
            continue
        has = served.get(ask) if ask is not None else None
        if has is None:
            has = checking.has_server(rule, models_after)
            if ask is not None:
                served[ask] = has
        if has:
            continue
        rules.append(ident)
        what = ", ".join(f"{m} ({changed[m].kind.value})" for m in culprits)
        found.append(
            violation(
                "P004",
                f"rule {ident} (taskType {rule.task_type}) would have no enabled model "
                f"left: {what}",
                [
                    f"{manifests.KIND_RULE}/{ident}",
                    *(f"{manifests.KIND_MODEL}/{m}" for m in culprits),
                ],
                f"enable another model that meets {ident}'s requirements first, or disable "
                f"the rule {ident} in the same change",
            )
        )
    return found, frozenset(rules)


def _removals(context: Context) -> list[Violation]:
    found: list[Violation] = []
    removed = removed_models(context.changes)
    for change in context.changes:
        if change.kind is not ChangeKind.REMOVE:
            continue
        if change.key in context.live.protections:
            reason = context.live.protections[change.key]
            found.append(
                violation(
                    "P007",
                    f"{change.address} is protected" + (f" ({reason})" if reason else ""),
                    [change.address],
                    f"run `grove unprotect {change.object_id}` first if the removal is intended",
                )
            )
        if change.object_kind == manifests.KIND_MODEL and change.state_from != "retired":
            found.append(
                violation(
                    "P006",
                    f"{change.address} is {change.state_from} live; retire before remove",
                    [change.address],
                    f"set payload.state: retired for {change.object_id}, reconcile, "
                    "then delete the file",
                )
            )
    for (kind, ident), obj in sorted(context.desired.items()) if removed else ():
        names = (
            list(obj.payload.fallbacks)
            if isinstance(obj, manifests.AIModel)
            else list(obj.payload.chain)
        )
        gone = [name for name in names if name in removed]
        if gone:
            field = "fallbacks" if kind == manifests.KIND_MODEL else "chain"
            found.append(
                violation(
                    "P005",
                    f"{kind}/{ident} still names {', '.join(gone)} in its {field}",
                    [f"{kind}/{ident}", *(f"{manifests.KIND_MODEL}/{g}" for g in gone)],
                    f"remove {', '.join(gone)} from {ident}'s {field} in the same change "
                    "(that is a content change: bump its meta.version too)",
                )
            )
    return found


def _bulk(context: Context) -> list[Violation]:
    live_count = len(context.live.objects) if context.live.total is None else context.live.total
    if not live_count:
        return []
    if not context.desired:
        return [
            violation(
                "P008",
                f"git holds no objects at this revision while the registry holds {live_count}",
                [],
                "check the manifests path and ref; an empty fleet is never applied implicitly",
            )
        ]
    removals = sum(1 for c in context.changes if c.kind is ChangeKind.REMOVE)
    ratio = removals / live_count
    if ratio > context.max_delete_ratio:
        return [
            violation(
                "P009",
                f"the plan removes {removals} of {live_count} live objects ({ratio:.0%}), "
                f"more than maxDeleteRatio {context.max_delete_ratio:.0%}",
                [],
                "remove in smaller steps, or apply with --force after checking the list",
            )
        ]
    return []
