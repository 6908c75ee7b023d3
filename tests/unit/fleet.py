"""Builders of in-memory fleets: manifest documents, desired maps and live states.

Documents go through the manifest classes (``manifests.parse_document``), so every
fleet a unit test builds is one the loader could have produced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.manifests import kinds as manifests
from reconciler.planning import diffing, plans, safety
from reconciler.planning.livestate import Key, LiveObject, LiveState, VersionKey

Document = dict[str, Any]


def model(ident: str, version: str = "1", **payload: Any) -> Document:
    """A valid mock AIModel document; ``payload`` adds or replaces camelCase fields."""
    fields: dict[str, Any] = {
        "name": ident.title(),
        "provider": "mock",
        "capabilities": {"reasoning": 0.9, "speed": 0.8},
    }
    fields.update(payload)
    document = {"meta": {"id": ident, "type": manifests.KIND_MODEL, "version": version}}
    return _valid({**document, "payload": fields})


def rule(ident: str, version: str = "1", **payload: Any) -> Document:
    """A valid RoutingRule document (taskType = id, requires reasoning)."""
    fields: dict[str, Any] = {"taskType": ident, "requires": ["reasoning"]}
    fields.update(payload)
    document = {"meta": {"id": ident, "type": manifests.KIND_RULE, "version": version}}
    return _valid({**document, "payload": fields})


def _valid(document: Document) -> Document:
    return manifests.to_document(parse(document))


def parse(document: Document) -> manifests.GroveObject:
    return manifests.parse_document(document, allow_local_endpoints=False)


def key(document: Document) -> Key:
    return (document["meta"]["type"], document["meta"]["id"])


def desired(documents: Iterable[Document]) -> dict[Key, diffing.Desired]:
    return {key(d): diffing.Desired.of(parse(d), f"{d['meta']['id']}.yaml") for d in documents}


def objects(documents: Iterable[Document]) -> dict[Key, manifests.GroveObject]:
    return {key(d): parse(d) for d in documents}


def live_object(document: Document, *, applied: Document | None = None) -> LiveObject:
    """A live row holding ``document``; ``applied`` (default: the same) is what the
    reconciler wrote, so a different ``applied`` makes an out-of-band edit (drift)."""
    meta = document["meta"]
    return LiveObject(
        kind=meta["type"],
        id=meta["id"],
        version=(applied or document)["meta"]["version"],
        meta=dict(meta),
        payload=dict(document["payload"]),
        applied_hash=manifests.content_hash(applied or document),
    )


def live(
    documents: Iterable[Document] = (),
    *,
    drifted: Mapping[Key, Document] | None = None,
    history: Iterable[Document] = (),
    protections: Mapping[Key, str] | None = None,
    quarantined: Iterable[VersionKey] = (),
    applied_revision: str | None = "a" * 40,
    **state: Any,
) -> LiveState:
    """The registry after applying ``documents`` (and earlier versions ``history``);
    ``drifted`` maps a key to the content somebody wrote over it out of band."""
    rows = {key(d): live_object(d) for d in documents}
    for where, content in (drifted or {}).items():
        rows[where] = live_object(content, applied=rows[where].document)
    versions = {
        (*key(d), d["meta"]["version"]): manifests.version_hash(d) for d in [*history, *documents]
    }
    return LiveState(
        objects=rows,
        versions=versions,
        protections=dict(protections or {}),
        quarantined=frozenset(quarantined),
        applied_revision=applied_revision,
        applied_tree=None,
        state_serial=3,
        **state,
    )


def plan(
    want: Iterable[Document],
    have: LiveState,
    *,
    revision: str = "b" * 40,
    **context: Any,
) -> plans.Plan:
    """Diff and judge, as `reconciling.Reconciler.plan_against` does."""
    documents = list(want)
    changes = diffing.diff(desired(documents), have)
    violations = safety.check(
        safety.Context(
            desired=objects(documents), live=have, changes=changes, revision=revision, **context
        )
    )
    return plans.Plan(
        revision=revision,
        base_revision=have.applied_revision,
        state_serial=have.state_serial,
        changes=changes,
        violations=tuple(violations),
    )


def apply_in_memory(have: LiveState, changes: Iterable[plans.Change]) -> LiveState:
    """What `store.registry.apply_plan` writes, over a LiveState: a removed row goes,
    every other change writes the plan's document with its hash; versions are kept."""
    rows = dict(have.objects)
    versions = dict(have.versions)
    for change in changes:
        if change.kind is plans.ChangeKind.REMOVE:
            del rows[change.key]
            continue
        assert change.document is not None
        if change.kind is plans.ChangeKind.CREATE:
            assert change.key not in rows, f"{change.address} created twice"
        else:
            assert change.key in rows, f"{change.address} changed but not live"
        rows[change.key] = live_object(change.document)
        if change.kind in (
            plans.ChangeKind.CREATE,
            plans.ChangeKind.VERSION,
            plans.ChangeKind.UPDATE,
        ):
            versions[(*change.key, str(change.version_to))] = manifests.version_hash(
                change.document
            )
    return dataclasses.replace(have, objects=rows, versions=versions)
