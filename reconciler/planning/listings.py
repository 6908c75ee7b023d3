"""Listings of what is live: the items of ``GET /api/models`` and ``grove get``.

One place builds them, so the API and the command line can never disagree:
``grove get models -o json`` prints exactly the items ``GET /api/models`` answers
(same fields, same order, same values). Callers hand in the live objects they
read (the API from the router's snapshot, the CLI from the registry through
`snapshots`); this module is pure: no I/O, no database, no HTTP.

Paging is a keyset on the object id: items come sorted by id, and a cursor is
the last id of a page, encoded so that clients treat it as opaque. A model
removed between two pages makes no other model skip or repeat.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar

from reconciler.base import errors
from reconciler.manifests import kinds as manifests

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_CURSOR_PREFIX = "id:"  # inside the encoding: a later cursor format gets another prefix
_ID = re.compile(manifests.ID_PATTERN)
_Listed = TypeVar("_Listed", manifests.AIModel, manifests.RoutingRule)


class BadCursor(errors.UsageError):
    """A cursor this module did not make (or that was altered)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        # By hand, not by `base.serial`: the items are JSON data already, and a
        # TypeAdapter would walk every one again (about 1 ms per 1,000-item page of
        # GET /api/models, over the 1.7 ms of json.dumps; this is a constant time).
        return {"items": self.items, "nextCursor": self.next_cursor}


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode((_CURSOR_PREFIX + last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id after which the next page starts; :class:`BadCursor` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise BadCursor("not a cursor of this listing: pass nextCursor as it came") from None
    ident = raw.removeprefix(_CURSOR_PREFIX)
    if ident == raw or not _ID.fullmatch(ident) or encode_cursor(ident) != cursor:
        raise BadCursor("not a cursor of this listing: pass nextCursor as it came")
    return ident


# ---------------------------------------------------------------- models


def model_item(model: manifests.AIModel) -> dict[str, Any]:
    """One model as listed: the fields (and their order) of the API's ModelSummary,
    ``score`` null as a plain read has it (tests/api/test_listing.py keeps them equal)."""
    spec = model.payload
    return {
        "id": model.id,
        "name": spec.name,
        "provider": spec.provider.value,
        "version": model.meta.version,
        "state": spec.state.value,
        "priority": spec.priority,
        "capabilities": {c.value: s for c, s in spec.capabilities.items()},
        "endpoint": spec.endpoint,
        "score": None,
    }


def model_detail(model: manifests.AIModel) -> dict[str, Any]:
    """One model with its whole manifest, as ``GET /api/models/{id}`` answers it."""
    return {**model_item(model), "manifest": model.model_dump(mode="json", by_alias=True)}


def select_models(
    models: Mapping[str, manifests.AIModel],
    *,
    states: Collection[str] = (),
    providers: Collection[str] = (),
    capabilities: Collection[str] = (),
) -> list[manifests.AIModel]:
    """The models in any of ``states`` and of any of ``providers`` (none given: all) that
    have every one of ``capabilities``, sorted by id."""
    wanted = set(capabilities)
    return [
        model
        for ident, model in sorted(models.items())
        if (not states or model.payload.state.value in states)
        and (not providers or model.payload.provider.value in providers)
        and wanted <= {c.value for c in model.payload.capabilities}
    ]


def page_models(
    models: Mapping[str, manifests.AIModel],
    *,
    states: Collection[str] = (),
    providers: Collection[str] = (),
    capabilities: Collection[str] = (),
    limit: int | None = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page:
    """One page of :func:`select_models` as items: after ``cursor``, at most ``limit``
    (None: all), with the cursor of the next page when there is one."""
    chosen = select_models(models, states=states, providers=providers, capabilities=capabilities)
    return _page(chosen, model_item, limit=limit, cursor=cursor)


# ---------------------------------------------------------------- rules


def rule_item(rule: manifests.RoutingRule) -> dict[str, Any]:
    """One rule as listed: the fields (and their order) of the API's RuleSummary."""
    spec = rule.payload
    return {
        "id": rule.id,
        "taskType": spec.task_type,
        "version": rule.meta.version,
        "enabled": spec.enabled,
        "requires": [c.value for c in spec.requires],
        "minScore": spec.min_score,
        "strategy": spec.strategy.value,
        "chain": list(spec.chain),
    }


def rule_detail(rule: manifests.RoutingRule) -> dict[str, Any]:
    """One rule with its whole manifest."""
    return {**rule_item(rule), "manifest": rule.model_dump(mode="json", by_alias=True)}


def rules(found: Mapping[str, manifests.RoutingRule]) -> list[dict[str, Any]]:
    return [rule_detail(rule) for _, rule in sorted(found.items())]


# ---------------------------------------------------------------- paging


def _page(
    chosen: Iterable[_Listed],
    item: Callable[[_Listed], dict[str, Any]],
    *,
    limit: int | None,
    cursor: str | None,
) -> Page:
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise errors.UsageError(f"limit must be 1 to {MAX_LIMIT}, not {limit}")
    after = decode_cursor(cursor) if cursor is not None else None
    rest = [obj for obj in chosen if after is None or obj.id > after]
    if limit is None or len(rest) <= limit:
        return Page([item(obj) for obj in rest], None)
    shown = rest[:limit]
    return Page([item(obj) for obj in shown], encode_cursor(shown[-1].id))
