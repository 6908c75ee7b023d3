"""The fleet kept between plans, and its patching by a git delta (for `reconciling`).

A :class:`Fleet` is a valid tree of the manifests folder as the checks saw it: its
objects by file and by key, the indexes the checks of a change need, and the
warnings by file. `reconciling` keeps the last few per source (:func:`keep`,
:func:`kept`) and plans a commit that touched a few files by patching the kept
fleet with those files (:class:`Patch`) and checking only what they touch and what
refers to it (:func:`affected`, :func:`check_change`), instead of reading and
checking every file again. Pure but for the cache: no git, no database.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol, TypeVar

from reconciler.base.diagnostics import Diagnostic
from reconciler.manifests import checking, loading
from reconciler.manifests import kinds as manifests
from reconciler.planning.livestate import Key, LiveState
from reconciler.sources import Delta, Entry

_KEPT_MAX = 3
_KEPT: collections.OrderedDict[tuple[object, ...], Fleet] = collections.OrderedDict()
_KEPT_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True, slots=True)
class FleetFile:
    blob: str
    size: int
    objects: tuple[loading.Located, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Fleet:
    """A valid tree of the manifests folder as the checks saw it, kept between plans.

    Its objects by file and by key, the indexes the checks of a change need (models,
    their specs, rules by id, task types, who names each model) and the findings of
    the checks (warnings only) by file, with nothing removed or judged by a safety
    check: what a plan from a registry that holds exactly this fleet reports. Never
    changed once built: a change builds a new one (`Patch`), sharing the objects.
    """

    tree: str
    today: dt.date
    files: dict[str, FleetFile]
    located: dict[Key, loading.Located]  # every object (its file is where it is defined)
    models: dict[str, loading.Located]
    ordered_rules: tuple[tuple[str, manifests.RoutingRule], ...]
    tasks: dict[str, str]  # taskType -> rule id
    referrers: dict[str, frozenset[Key]]  # model id -> objects whose references name it
    diagnostics: dict[str, tuple[Diagnostic, ...]]
    size: int  # bytes of all files

    @property
    def objects(self) -> Mapping[Key, manifests.GroveObject]:
        return _Objects(self.located)

    @property
    def specs(self) -> Mapping[str, manifests.ModelSpec]:
        return _Specs(self.models)


class _Objects(Mapping[Key, manifests.GroveObject]):
    """The objects of a fleet by key: a view, not a copy (a plan reads a few)."""

    def __init__(self, located: dict[Key, loading.Located]) -> None:
        self.located = located

    def __getitem__(self, key: Key) -> manifests.GroveObject:
        return self.located[key].obj

    def __iter__(self) -> Iterator[Key]:
        return iter(self.located)

    def __len__(self) -> int:
        return len(self.located)


class _Specs(Mapping[str, manifests.ModelSpec]):
    """The model specs of a fleet by id: a view, not a copy."""

    def __init__(self, models: dict[str, loading.Located]) -> None:
        self.models = models

    def __getitem__(self, ident: str) -> manifests.ModelSpec:
        obj = self.models[ident].obj
        assert isinstance(obj, manifests.AIModel)
        return obj.payload

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)


class Patch:
    """A new `Fleet` from an old one: files dropped and added, duplicates refused."""

    def __init__(self, base: Fleet | None, tree: str, today: dt.date) -> None:
        self.tree = tree
        self.today = today
        self.files: dict[str, FleetFile] = dict(base.files) if base else {}
        self.located: dict[Key, loading.Located] = dict(base.located) if base else {}
        self.models: dict[str, loading.Located] = dict(base.models) if base else {}
        self.rules: tuple[tuple[str, manifests.RoutingRule], ...] | None = (
            base.ordered_rules if base else None
        )
        self.rule_objects: dict[str, manifests.RoutingRule] | None = None
        self.tasks: dict[str, str] = dict(base.tasks) if base else {}
        self.referrers: dict[str, frozenset[Key]] = dict(base.referrers) if base else {}
        self.size = base.size if base else 0

    def _rules(self) -> dict[str, manifests.RoutingRule]:
        if self.rule_objects is None:
            self.rule_objects = dict(self.rules or ())
            self.rules = None
        return self.rule_objects

    def drop(self, path: str) -> tuple[loading.Located, ...]:
        """Remove a file; returns the objects it held."""
        file = self.files.pop(path, None)
        if file is None:
            return ()
        self.size -= file.size
        for item in file.objects:
            key = (item.kind, item.id)
            del self.located[key]
            if isinstance(item.obj, manifests.AIModel):
                del self.models[item.id]
            elif isinstance(item.obj, manifests.RoutingRule):
                del self._rules()[item.id], self.tasks[item.obj.payload.task_type]
            for target in set(checking.references(item)):
                left = self.referrers[target] - {key}
                if left:
                    self.referrers[target] = left
                else:
                    del self.referrers[target]
        return file.objects

    def add(self, path: str, blob: str, size: int, objects: Sequence[loading.Located]) -> bool:
        """Add a file; False when an id or a task type it defines is defined already."""
        self.files[path] = FleetFile(blob, size, tuple(objects))
        self.size += size
        for item in objects:
            key = (item.kind, item.id)
            if key in self.located:
                return False
            self.located[key] = item
            if isinstance(item.obj, manifests.AIModel):
                self.models[item.id] = item
            elif isinstance(item.obj, manifests.RoutingRule):
                task = item.obj.payload.task_type
                if task in self.tasks:
                    return False
                self.tasks[task] = item.id
                self._rules()[item.id] = item.obj
            for target in set(checking.references(item)):
                self.referrers[target] = self.referrers.get(target, frozenset()) | {key}
        return True

    def fleet(self, diagnostics: dict[str, tuple[Diagnostic, ...]]) -> Fleet:
        rules = self.rules
        if rules is None:
            rules = tuple(sorted(self._rules().items()))
        return Fleet(
            tree=self.tree,
            today=self.today,
            files=self.files,
            located=self.located,
            models=self.models,
            ordered_rules=rules,
            tasks=self.tasks,
            referrers=self.referrers,
            diagnostics=diagnostics,
            size=self.size,
        )


class _InFile(Protocol):
    @property
    def file(self) -> str: ...


InFile = TypeVar("InFile", bound=_InFile)


def by_file(items: Iterable[InFile]) -> dict[str, list[InFile]]:
    """Objects or diagnostics grouped by the file they are in, in their order."""
    out: dict[str, list[InFile]] = {}
    for item in items:
        out.setdefault(item.file, []).append(item)
    return out


def fleet_of(
    tree: str | None,
    loaded: loading.LoadResult,
    entries: Sequence[Entry],
    today: dt.date,
    found: Sequence[Diagnostic],
) -> Fleet | None:
    """The fleet of a valid desired state (``loaded`` from the files ``entries`` of
    ``tree``) whose checks found ``found`` (no error)."""
    if tree is None or not loaded.complete or loaded.broken_ids:
        return None
    patch = Patch(None, tree, today)
    objects = by_file(loaded.objects)
    for entry in entries:
        if not patch.add(entry.path, entry.blob, entry.size, objects.get(entry.path, ())):
            return None
    if len(patch.located) != len(loaded.objects):
        return None  # objects outside the listed files: not a fleet this can keep
    findings = by_file(found)
    if not findings.keys() <= patch.files.keys():
        return None
    return patch.fleet({path: tuple(items) for path, items in findings.items()})


def kept(key: tuple[object, ...], tree: str) -> Fleet | None:
    with _KEPT_LOCK:
        fleet = _KEPT.get((*key, tree))
        if fleet is not None:
            _KEPT.move_to_end((*key, tree))
        return fleet


def keep(key: tuple[object, ...], fleet: Fleet) -> None:
    with _KEPT_LOCK:
        _KEPT[(*key, fleet.tree)] = fleet
        _KEPT.move_to_end((*key, fleet.tree))
        while len(_KEPT) > _KEPT_MAX:
            _KEPT.popitem(last=False)


def forget() -> None:
    """Drop every kept fleet (tests; a process that wants its next plan whole)."""
    with _KEPT_LOCK:
        _KEPT.clear()


def agrees(base: Fleet, live: LiveState, keys: Iterable[Key]) -> bool:
    """Whether the registry holds ``base`` as applied, as far as ``keys`` and the number
    of live objects show: a cheap guard on top of the untouched applied tree."""
    if live.total != len(base.located) or live.applied_tree != base.tree or not live.untouched:
        return False
    for key in keys:
        had = base.located.get(key)
        have = live.objects.get(key)
        if had is None or have is None:
            if had is not None or have is not None:
                return False
            continue
        document = manifests.to_document(had.obj)
        if (
            have.drifted
            or have.applied_hash != manifests.content_hash(document)
            or have.version != had.obj.meta.version
        ):
            return False
    return True


def affected(fleet: Fleet, delta: Delta, keys: set[Key], judged: frozenset[str]) -> set[str]:
    """The files whose findings a change may alter: those it changed, those naming a
    model it changed, added or removed, and those of the rules a safety check judges
    (whose findings it takes over). Every other object's inputs are as they were."""
    changed_models = {ident for kind, ident in keys if kind == manifests.KIND_MODEL}
    affected = {path for path in delta.paths if path in fleet.files}
    for ident in changed_models:
        affected.update(fleet.located[key].file for key in fleet.referrers.get(ident, ()))
    affected.update(fleet.located[(manifests.KIND_RULE, ident)].file for ident in judged)
    return affected


def check_change(
    base: Fleet,
    fleet: Fleet,
    delta: Delta,
    keys: set[Key],
    affected: set[str],
    today: dt.date,
    removing: frozenset[str],
    judged: frozenset[str],
) -> tuple[tuple[Diagnostic, ...], Fleet | None] | None:
    """The cross-object findings of a plan of ``fleet`` (``base`` changed by ``delta``),
    looking only at the ``affected`` files (see `affected`); the other files keep
    ``base``'s findings. None when there is an error (the whole fleet is checked again
    to report it) or a fallback cycle (which can only pass through a changed model).

    Returns the findings and the fleet with its own (``None`` when they hold an error:
    a fleet that is not kept)."""
    changed_models = {ident for kind, ident in keys if kind == manifests.KIND_MODEL}
    if checking.has_cycle(changed_models, fleet.models):
        return None
    items = [item for path in sorted(affected) for item in fleet.files[path].objects]
    found = checking.check_some(
        items, fleet.models, today, removing=removing, judged_elsewhere=judged
    )
    if any(d.is_error for d in found):
        return None
    own = found if not (removing or judged) else checking.check_some(items, fleet.models, today)
    gone = set(delta.paths) | affected
    kept = [d for path, ds in base.diagnostics.items() if path not in gone for d in ds]
    ordered = tuple(sorted({*kept, *found}, key=Diagnostic.sort_key))
    if any(d.is_error for d in own):
        return ordered, None
    findings = {path: ds for path, ds in base.diagnostics.items() if path not in gone}
    for path, items_found in by_file(own).items():
        findings[path] = tuple(items_found)
    return ordered, dataclasses.replace(fleet, diagnostics=findings)
