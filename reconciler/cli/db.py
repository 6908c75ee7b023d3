"""``grove db upgrade|downgrade|check``: the registry database's migrations and health.

The store and SQLAlchemy are imported when a command runs, not when the CLI
starts. ``db check`` never creates a database; it exits 0 healthy, 1 otherwise.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import click

from reconciler.base.settings import Settings
from reconciler.cli.common import common_options, grove, open_registry
from reconciler.cli.output import emit, output_option


@grove.group("db")
def db_group() -> None:
    """Database migrations and checks."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@output_option(("text", "json", "yaml"))
@common_options
def db_upgrade(revision: str, output: str, settings: Settings) -> int:
    """Migrate the registry database up to REVISION (default: head)."""
    before, after = _migrate(settings, "upgrade", revision)
    if output != "text":
        emit(_migration_json(before, after), output)
    elif before == after:
        click.echo(f"database already at schema {after}")
    else:
        click.echo(f"database migrated from {before or 'empty'} to {after}")
    return 0


@db_group.command("downgrade")
@click.argument("revision")
@output_option(("text", "json", "yaml"))
@common_options
def db_downgrade(revision: str, output: str, settings: Settings) -> int:
    """Migrate the registry database down to REVISION (``base`` removes every table)."""
    before, after = _migrate(settings, "downgrade", revision)
    if output != "text":
        emit(_migration_json(before, after), output)
    else:
        click.echo(f"database migrated from {before or 'empty'} to {after or 'empty'}")
    return 0


def _migrate(
    settings: Settings, direction: Literal["upgrade", "downgrade"], revision: str
) -> tuple[str | None, str | None]:
    """Move the registry's schema to ``revision``; its revisions before and after."""
    from reconciler.store import migrating

    step = migrating.upgrade if direction == "upgrade" else migrating.downgrade
    return step(open_registry(settings, require_schema=False), revision)


def _migration_json(before: str | None, after: str | None) -> dict[str, Any]:
    """``db upgrade|downgrade -o json``: the schema revisions (None: no schema)."""
    return {"from": before, "to": after, "changed": before != after}


@db_group.command("check")
@output_option()
@common_options
def db_check(output: str, settings: Settings) -> int:
    """Check the registry database without changing it (exit 0 healthy, 1 otherwise).

    SQLite: the file, PRAGMA integrity_check and foreign_key_check; PostgreSQL:
    the connection; both: the schema against this grove's migrations and the
    state row. Prints what is wrong and how to recover. Never creates a database.
    """
    from reconciler.store import integrity

    report = integrity.check(settings.db_url)
    if output == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(f"database: {report.location}")
        for finding in report.findings:
            click.echo(
                f"  {'ok' if finding.ok else 'FAIL':<4}  {finding.name:<12}  {finding.detail}"
            )
        click.echo("healthy" if report.healthy else "unhealthy")
    if not report.healthy:
        click.echo(f"grove: {report.problem}; to recover: {report.recovery}", err=True)
        return 1
    return 0
