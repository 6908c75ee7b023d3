"""``grove rollback``: return a model (or a rule) to the version live before the current one."""

from __future__ import annotations

import dataclasses

import click

from reconciler import manifests, plans
from reconciler.cli.common import common_options, grove, kind_option
from reconciler.cli.registry import _report_invalid, actor
from reconciler.settings import Settings


@grove.command("rollback")
@click.argument("ident", metavar="ID")
@click.option(
    "--to",
    "to_version",
    metavar="VERSION",
    help="The version to go back to [default: the one before the version in git now].",
)
@kind_option(default=manifests.KIND_MODEL, show_default=True)
@click.option("--force", is_flag=True, help="Commit and apply even if safety checks refuse.")
@common_options
def rollback_command(
    ident: str,
    to_version: str | None,
    kind: str,
    force: bool,
    settings: Settings,
) -> int:
    """Revert a model (or a rule, with --type) to an earlier version, through git.

    The manifest of ID is restored as it was at that version (its state stays as
    it is now), committed in Grove's own clone of the fleet repository and pushed
    (GROVE_REPO must be a bare repository or a remote), then applied; the version
    it replaces is quarantined, so it is not applied again unless forced.
    """
    from reconciler import authoring, reconciling

    database = reconciling.open_database(settings)
    click.get_current_context().call_on_close(database.dispose)
    service = authoring.Authoring(settings, database)
    try:
        done = service.rollback(
            ident,
            authoring.Author.of(actor()),
            kind=kind,
            to_version=to_version,
            force=force,
        )
    except authoring.Invalid as exc:
        _report_invalid(exc.diagnostics)
        return 1
    except authoring.Refused as exc:
        # the plan's revision names Grove's uncommitted work tree: say what it is
        shown = dataclasses.replace(exc.plan, revision="rollback")
        click.echo(plans.render_text(shown, title="Rollback"), err=True)
        click.echo("grove: the rollback was refused; nothing was committed", err=True)
        return 1
    result = done.result
    click.echo(
        f"{kind}/{ident}: version {done.from_version} -> {done.to_version} "
        f"in commit {result.revision[:12]}; {result.detail}; "
        f"version {done.from_version} is quarantined"
    )
    return 0 if result.applied else 1
