"""What the registry holds right now, as plain data: objects, versions, flags, apply state.

Built by `store` from the database and read by `diffing` and `safety`; no I/O
here. Drift is judged by comparing a live object's content with the hash of
what the reconciler applied.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Any

from reconciler.manifests import kinds as manifests

Key = tuple[str, str]  # (object kind, object id)
VersionKey = tuple[str, str, str]  # (object kind, object id, version)


@dataclasses.dataclass(frozen=True, slots=True)
class LiveObject:
    kind: str
    id: str
    version: str
    meta: dict[str, Any]
    payload: dict[str, Any]
    applied_hash: str
    source_path: str = ""
    source_blob: str = ""

    @property
    def key(self) -> Key:
        return (self.kind, self.id)

    @property
    def document(self) -> dict[str, Any]:
        return {"meta": self.meta, "payload": self.payload}

    @property
    def state(self) -> str:
        return manifests.state_of(self.document)

    @property
    def drifted(self) -> bool:
        """Live content differs from what was applied (or the version column from meta)."""
        return (
            manifests.content_hash(self.document) != self.applied_hash
            or self.meta.get("version") != self.version
        )


# Validated objects by content hash: a long-running process validates each version
# of each object once, not once per cycle or per snapshot.
_PARSED: collections.OrderedDict[tuple[str, bool], manifests.GroveObject] = (
    collections.OrderedDict()
)
_PARSED_MAX = 100_000
_PARSED_LOCK = threading.Lock()


def parsed(obj: LiveObject, *, allow_local_endpoints: bool) -> manifests.GroveObject:
    """The live object as a validated manifest (raises pydantic's ValidationError)."""
    key = (
        manifests.content_hash(obj.document) if obj.drifted else obj.applied_hash,
        allow_local_endpoints,
    )
    with _PARSED_LOCK:
        found = _PARSED.get(key)
    if found is None:
        found = manifests.parse_document(obj.document, allow_local_endpoints=allow_local_endpoints)
        with _PARSED_LOCK:
            _PARSED[key] = found
            if len(_PARSED) > _PARSED_MAX:
                _PARSED.popitem(last=False)
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class LiveState:
    objects: dict[Key, LiveObject]
    versions: dict[VersionKey, str]  # -> version hash of the recorded content
    protections: dict[Key, str]  # -> the reason given to `grove protect`
    quarantined: frozenset[VersionKey]
    applied_revision: str | None
    applied_tree: str | None
    state_serial: int
    attempted_revision: str | None = None
    suspended: bool = False
    last_error: str | None = None
    conditions: dict[str, Any] = dataclasses.field(default_factory=dict)
    # True when only the apply state was read (the no-op fast path): objects are not loaded.
    partial: bool = False
    # False once anybody wrote to the live tables after the last apply (see migration 0002):
    # then unchanged files are not trusted from the registry but read from git again.
    untouched: bool = True
    # How many live objects there are, when ``objects`` holds only some of them (the
    # incremental plan loads the objects a change touches); None: ``objects`` is all.
    total: int | None = None

    @classmethod
    def empty(cls) -> LiveState:
        return cls({}, {}, {}, frozenset(), None, None, 0)

    def drifted(self) -> list[LiveObject]:
        return [obj for _, obj in sorted(self.objects.items()) if obj.drifted]
