"""``grove get models|rules|versions ID|events|rollouts [ID]``: what is live in the registry.

Like ``kubectl get`` and ``argocd app list``: it reads the registry (never the files
in git), prints a table, or with ``-o json``/``-o yaml`` the same items the HTTP API
answers (`listings` builds both). Read-only: it opens an existing registry and
creates no file or database; a missing one gets the message ``grove status`` gives.
Exit 0, or 1 with one line on stderr (an unknown id, no registry).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from reconciler.base import errors
from reconciler.base.diagnostics import printable
from reconciler.base.settings import Settings
from reconciler.cli.common import common_options, grove, kind_option, open_registry
from reconciler.cli.output import emit, output_option
from reconciler.manifests import kinds as manifests
from reconciler.planning import listings

if TYPE_CHECKING:
    from reconciler.routing import snapshots
    from reconciler.store.engine import Database

FORMATS = ("text", "json", "yaml")
STATES = [s.value for s in manifests.ModelState]
PROVIDERS = [p.value for p in manifests.Provider]
CAPABILITIES = [c.value for c in manifests.CapabilityType]


@grove.group("get")
def get_group() -> None:
    """List what is live in the registry (not the files in git), like `kubectl get`."""


# ---------------------------------------------------------------- models


@get_group.command("models")
@click.argument("ident", metavar="[ID]", required=False)
@click.option("--state", "states", multiple=True, type=click.Choice(STATES), help="Repeatable.")
@click.option(
    "--provider", "providers", multiple=True, type=click.Choice(PROVIDERS), help="Repeatable."
)
@click.option(
    "--capability",
    "capabilities",
    multiple=True,
    type=click.Choice(CAPABILITIES),
    help="Repeatable: the model must have every one.",
)
@output_option(FORMATS)
@common_options
def get_models(
    ident: str | None,
    states: tuple[str, ...],
    providers: tuple[str, ...],
    capabilities: tuple[str, ...],
    output: str,
    settings: Settings,
) -> int:
    """Every live model in any state, by id (or the one model ID).

    -o json prints the items GET /api/models answers, all pages; with ID, what
    GET /api/models/ID answers.
    """
    if ident is not None and (states or providers or capabilities):
        raise errors.UsageError("--state, --provider and --capability filter a list, not an ID")
    database = open_registry(settings)
    live = _snapshot(database, settings)
    if ident is not None:
        model = live.models.get(ident)
        if model is None:
            raise errors.UsageError(f"no live model has the id {ident!r}")
        chosen = [model]
        if output != "text":
            return _emit(listings.model_detail(model), output)
    else:
        chosen = listings.select_models(
            live.models, states=states, providers=providers, capabilities=capabilities
        )
        if output != "text":
            return _emit([listings.model_item(model) for model in chosen], output)
    if not chosen:
        filtered = states or providers or capabilities
        click.echo("no models match the filters" if filtered else "no models in the registry")
        return 0
    updated = _updated(database, manifests.KIND_MODEL)
    _table(
        ["ID", "VERSION", "STATE", "PROVIDER", "PRIORITY", "CAPABILITIES", "UPDATED"],
        [
            [
                model.id,
                model.meta.version,
                model.payload.state.value,
                model.payload.provider.value,
                str(model.payload.priority),
                _capabilities(model),
                updated.get(model.id, ""),
            ]
            for model in chosen
        ],
    )
    return 0


def _capabilities(model: manifests.AIModel) -> str:
    """``reasoning=0.9,speed=0.8``, in the order of the capabilities' definition (the
    registry's JSON may hold them in any order: PostgreSQL's JSONB sorts keys)."""
    scores = {c.value: s for c, s in model.payload.capabilities.items()}
    return ",".join(f"{name}={scores[name]:g}" for name in CAPABILITIES if name in scores)


# ---------------------------------------------------------------- rules


@get_group.command("rules")
@click.argument("ident", metavar="[ID]", required=False)
@output_option(FORMATS)
@common_options
def get_rules(ident: str | None, output: str, settings: Settings) -> int:
    """Every live routing rule, by id (or the one rule ID), each with its manifest in
    -o json and -o yaml."""
    database = open_registry(settings)
    live = _snapshot(database, settings)
    if ident is not None:
        rule = live.rules.get(ident)
        if rule is None:
            raise errors.UsageError(f"no live rule has the id {ident!r}")
        if output != "text":
            return _emit(listings.rule_detail(rule), output)
        chosen = [rule]
    else:
        if output != "text":
            return _emit(listings.rules(live.rules), output)
        chosen = [rule for _, rule in sorted(live.rules.items())]
    if not chosen:
        click.echo("no rules in the registry")
        return 0
    updated = _updated(database, manifests.KIND_RULE)
    _table(
        ["ID", "TASK", "STRATEGY", "REQUIRES", "CHAIN", "ENABLED", "VERSION", "UPDATED"],
        [
            [
                rule.id,
                rule.payload.task_type,
                rule.payload.strategy.value,
                ",".join(c.value for c in rule.payload.requires),
                ",".join(rule.payload.chain) or "(any)",
                "yes" if rule.payload.enabled else "no",
                rule.meta.version,
                updated.get(rule.id, ""),
            ]
            for rule in chosen
        ],
    )
    return 0


# ---------------------------------------------------------------- versions


@get_group.command("versions")
@click.argument("ident", metavar="ID")
@kind_option(help="Needed only when a model and a rule share the id.")
@output_option(FORMATS)
@common_options
def get_versions(ident: str, kind: str | None, output: str, settings: Settings) -> int:
    """Every version of ID the registry ever applied, oldest first: which one is live
    and which are quarantined (kept from being applied again)."""
    from reconciler.store import registry

    database = open_registry(settings)
    with database.transaction(snapshot=True) as connection:
        kinds = [kind] if kind else list(manifests.KINDS)
        found = {k: registry.version_history(connection, k, ident) for k in kinds}
        found = {k: rows for k, rows in found.items() if rows}
        if not found:
            named = kind or "model or rule"
            raise errors.UsageError(f"no {named} with the id {ident!r} was ever applied")
        if len(found) > 1:
            raise errors.UsageError(f"{ident!r} is both a model and a rule; pass --type")
        ((chosen, history),) = found.items()
        live = registry.live_version(connection, chosen, ident)
        quarantined = registry.quarantined_of(connection, chosen, ident)
        stretches = registry.live_versions(connection, chosen, ident)
    first: dict[str, str | None] = {}
    for stretch in stretches:
        first.setdefault(stretch.version, stretch.since)
    # a version can be live more than once (a rollback returns to it): since the last time
    live_since = stretches[-1].since if stretches and stretches[-1].version == live else None
    items = [
        {
            "version": row["version"],
            "revision": row["revision"],
            "appliedAt": first.get(row["version"]),
            "live": row["version"] == live,
            "liveSince": live_since if row["version"] == live else None,
            "quarantined": row["version"] in quarantined,
        }
        for row in history
    ]
    if output != "text":
        return _emit({"kind": chosen, "id": ident, "versions": items}, output)
    click.echo(f"{chosen}/{ident}" + ("" if live else " (not live: removed)"))
    _table(
        ["VERSION", "REVISION", "APPLIED", "STATUS"],
        [
            [
                item["version"],
                item["revision"][:12],
                _shown_time(item["appliedAt"]),
                _status(item),
            ]
            for item in items
        ],
    )
    return 0


def _status(item: dict[str, Any]) -> str:
    words = []
    if item["live"]:
        since = _shown_time(item["liveSince"])
        words.append(f"live since {since}" if since else "live")
    if item["quarantined"]:
        words.append("quarantined")
    return ", ".join(words)


# ---------------------------------------------------------------- events


@get_group.command("events")
@click.option(
    "--limit",
    type=click.IntRange(1, listings.MAX_LIMIT),
    default=50,
    show_default=True,
    help="How many of the newest events.",
)
@output_option(FORMATS)
@common_options
def get_events(limit: int, output: str, settings: Settings) -> int:
    """The newest lifecycle events (applies, state changes, quarantines, suspensions),
    newest first."""
    from reconciler.store import registry

    database = open_registry(settings)
    with database.transaction() as connection:
        found = registry.events(connection, limit=limit)
    if output != "text":
        return _emit(found, output)
    if not found:
        click.echo("no events in the registry")
        return 0
    _table(
        ["TIME", "EVENT", "OBJECT", "VERSION", "REVISION", "ACTOR"],
        [
            [
                _shown_time(event["timestamp"]),
                event["type"],
                f"{event['objectKind']}/{event['objectId']}",
                _versions(event["versionFrom"], event["versionTo"]),
                (event["revision"] or "")[:12],
                event["actor"] + (" (forced)" if event["forced"] else ""),
            ]
            for event in found
        ],
    )
    return 0


def _versions(before: str | None, after: str | None) -> str:
    if before and after and before != after:
        return f"{before} -> {after}"
    return after or before or ""


# ---------------------------------------------------------------- rollouts


@get_group.command("rollouts")
@click.argument("ident", metavar="[ID]", required=False)
@output_option(FORMATS)
@common_options
def get_rollouts(ident: str | None, output: str, settings: Settings) -> int:
    """Every model's latest rollout (DESIGN section 11), open ones first; with ID, every
    rollout of that model, newest first.

    -o json prints what GET /api/rollouts (or GET /api/rollouts/ID) answers; `grove
    rollout status ID` shows one in detail.
    """
    from reconciler.cli import rollouts as shown
    from reconciler.gitops import delivery
    from reconciler.gitops.rollouts import Rollouts

    service = Rollouts(settings, open_registry(settings))
    if ident is None:
        items = [delivery.item(rollout) for rollout in service.listing()]
        if output != "text":
            return _emit(items, output)
        if not items:
            click.echo(shown.NO_ROLLOUTS)
            return 0
        shown.table(items)
        return 0
    found = shown.detail_of(service, ident)
    if output != "text":
        return _emit(found, output)
    history = found.pop("history")
    shown.table([found, *history])
    return 0


# ---------------------------------------------------------------- reading and printing


def _snapshot(database: Database, settings: Settings) -> snapshots.Snapshot:
    """The live models and rules, read and parsed as the router's snapshot is."""
    from reconciler.routing import snapshots

    reader = snapshots.Snapshots(database, allow_local_endpoints=settings.allow_local_endpoints)
    reader.refresh(force=True)
    return reader.current


def _updated(database: Database, kind: str) -> dict[str, str]:
    from reconciler.store import registry

    with database.transaction() as connection:
        return {
            ident: _shown_time(when)
            for ident, when in registry.updated_at(connection, kind).items()
        }


def _shown_time(iso: str | None) -> str:
    """``2026-12-05T10:56:52Z``: UTC to the second."""
    if iso is None:
        return ""
    return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _emit(document: Any, output: str) -> int:
    emit(document, output)
    return 0


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell, every cell on one line (escaped)."""
    shown = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in shown)]) for i, h in enumerate(headers)]
    for row in [list(headers), *shown]:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
