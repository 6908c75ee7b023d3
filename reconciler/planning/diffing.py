"""Desired (git) versus live (registry) -> the changes of a plan.

Pure: set difference and intersection over object keys, as Alembic's
autogenerate compares metadata; no I/O and no judgement (that is `safety`).

For an object in both places the question is what git asks for compared with
what the reconciler last *applied* (``applied_hash``), not with the live row:
a live row edited out of band is drift, restored by a ``restore`` change,
not mistaken for a change git wants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from reconciler.manifests import kinds as manifests
from reconciler.planning import plans
from reconciler.planning.livestate import Key, LiveObject, LiveState
from reconciler.planning.plans import Change, ChangeKind, FieldDiff

_STATE_KINDS = {
    "enabled": ChangeKind.ENABLE,
    "disabled": ChangeKind.DISABLE,
    "retired": ChangeKind.RETIRE,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Desired:
    """An object as git at the pinned revision has it."""

    kind: str
    id: str
    version: str
    document: dict[str, Any]
    source_path: str = ""
    source_blob: str = ""
    content_hash: str = ""  # precomputed when known (an unchanged file's live content)

    @property
    def key(self) -> Key:
        return (self.kind, self.id)

    @property
    def hash(self) -> str:
        return self.content_hash or manifests.content_hash(self.document)

    @classmethod
    def of(
        cls, obj: manifests.GroveObject, source_path: str = "", source_blob: str = ""
    ) -> Desired:
        return cls(
            kind=obj.meta.type,
            id=obj.meta.id,
            version=obj.meta.version,
            document=manifests.to_document(obj),
            source_path=source_path,
            source_blob=source_blob,
        )


def diff(desired: Mapping[Key, Desired], live: LiveState) -> tuple[Change, ...]:
    changes: list[Change] = []
    for key in sorted(set(desired) | set(live.objects)):
        want = desired.get(key)
        have = live.objects.get(key)
        if have is None:
            assert want is not None
            changes.append(_create(want))
        elif want is None:
            changes.append(_remove(have))
        else:
            change = _compare(want, have, live)
            if change is not None:
                changes.append(change)
    return plans.ordered(changes)


def _create(want: Desired) -> Change:
    return Change(
        kind=ChangeKind.CREATE,
        object_kind=want.kind,
        object_id=want.id,
        version_from=None,
        version_to=want.version,
        state_from=None,
        state_to=manifests.state_of(want.document),
        fields=tuple(field_diff({}, want.document)),
        document=want.document,
        source_path=want.source_path,
        source_blob=want.source_blob,
    )


def _remove(have: LiveObject) -> Change:
    return Change(
        kind=ChangeKind.REMOVE,
        object_kind=have.kind,
        object_id=have.id,
        version_from=have.version,
        version_to=None,
        state_from=have.state,
        state_to=None,
    )


def _compare(want: Desired, have: LiveObject, live: LiveState) -> Change | None:
    drifted = have.drifted
    wanted_hash = want.hash
    if wanted_hash == have.applied_hash:
        if not drifted:
            return None
        kind = ChangeKind.RESTORE
    else:
        applied_version_hash = live.versions.get((have.kind, have.id, have.version))
        state_only = (
            want.version == have.version
            and manifests.version_hash(want.document) == applied_version_hash
        )
        state_to = manifests.state_of(want.document)
        if state_only:
            kind = _STATE_KINDS[state_to]
        elif want.kind == manifests.KIND_MODEL:
            kind = ChangeKind.VERSION
        else:
            kind = ChangeKind.UPDATE
    return Change(
        kind=kind,
        object_kind=want.kind,
        object_id=want.id,
        version_from=have.version,
        version_to=want.version,
        state_from=have.state,
        state_to=manifests.state_of(want.document),
        fields=tuple(field_diff(have.document, want.document)),
        document=want.document,
        source_path=want.source_path,
        source_blob=want.source_blob,
        corrects_drift=drifted,
    )


def field_diff(before: dict[str, Any], after: dict[str, Any]) -> list[FieldDiff]:
    """Leaf-level differences by dotted path; lists compare as whole values."""
    old, new = _flatten(before), _flatten(after)
    return [
        FieldDiff(path, old.get(path), new.get(path))
        for path in sorted(set(old) | set(new))
        if old.get(path) != new.get(path) or (path in old) != (path in new)
    ]


def _flatten(document: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    pending: list[tuple[str, Any]] = [("", document)]
    while pending:
        prefix, value = pending.pop()
        if isinstance(value, dict) and value:
            pending.extend((f"{prefix}.{k}" if prefix else str(k), v) for k, v in value.items())
        elif prefix:
            flat[prefix] = value
    return flat
