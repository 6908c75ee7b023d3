"""``grove schema export [--check] [--out DIR]``: the JSON Schemas of the manifests."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.common import grove
from reconciler.manifests import schemagen


@grove.group("schema")
def schema_group() -> None:
    """JSON Schemas generated from the manifest classes."""


@schema_group.command("export")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if schemas/ is out of date.")
@click.option(
    "--out",
    "out",
    default="schemas",
    show_default=True,
    type=click.Path(),
    help="Folder to write the schemas to.",
)
def export_command(check: bool, out: str) -> int:
    """Write schemas/AIModel.schema.json and schemas/RoutingRule.schema.json."""
    folder = Path(out)
    if check:
        schemagen.check(folder)  # raises SchemaDrift, which exits 1 with the file names
        click.echo(f"{folder.as_posix()}: schemas are up to date")
        return 0
    changed = schemagen.export(folder)
    for path in changed:
        click.echo(f"wrote {path.as_posix()}")
    if not changed:
        click.echo(f"{folder.as_posix()}: schemas are up to date")
    return 0
