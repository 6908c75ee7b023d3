"""``grove rollback``: return a model (or a rule) to the version live before the current one.

"Before" is the registry's apply history, not git's parents, so after a ``git revert``
done by hand the command says there is nothing to roll back instead of bringing the
bad version back. Exit 0 when rolled back (and applied), when there is nothing to roll
back and for a dry run that would be allowed; 1 otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import click

from reconciler.base.diagnostics import printable, text_line
from reconciler.base.settings import Settings
from reconciler.cli.common import common_options, grove, kind_option, open_registry
from reconciler.cli.output import colour_option, emit, output_option, paint
from reconciler.cli.registry import _report_invalid, actor
from reconciler.manifests import kinds as manifests
from reconciler.planning import plans

if TYPE_CHECKING:
    from reconciler.gitops.authoring import Rollback


@grove.command("rollback")
@click.argument("ident", metavar="ID")
@click.option(
    "--to",
    "to_version",
    metavar="VERSION",
    help="The version to go back to [default: the one live before the current one].",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the commit message, the diff and the plan; change nothing.",
)
@kind_option(default=manifests.KIND_MODEL, show_default=True)
@click.option(
    "--force",
    is_flag=True,
    help="Commit and apply even if safety checks refuse, or a change freeze holds.",
)
@output_option(("text", "json", "yaml"))
@colour_option
@common_options
def rollback_command(
    ident: str,
    to_version: str | None,
    dry_run: bool,
    kind: str,
    force: bool,
    output: str,
    settings: Settings,
) -> int:
    """Return a model (or a rule, with --type) to the version live before the current one.

    The version comes from the registry's apply history. If the commit that
    introduced the current version touched only ID, the rollback is a `git revert`
    of it; otherwise a commit restoring ID's previous document (its state stays as
    it is now) that names the commit it undoes. It is committed in Grove's own clone
    of the fleet repository, pushed (GROVE_REPO must be a bare repository or a
    remote) and applied; the version rolled back from is quarantined, and only that
    one. When the version to go back to is live already there is nothing to do.
    """
    from reconciler.gitops import authoring

    database = open_registry(settings)
    service = authoring.Authoring(settings, database)
    try:
        done = service.rollback(
            ident,
            authoring.Author.of(actor()),
            kind=kind,
            to_version=to_version,
            force=force,
            dry_run=dry_run,
        )
    except authoring.Invalid as exc:
        if exc.at_head:
            for item in exc.diagnostics:
                click.echo(text_line(item), err=True)
            click.echo(f"grove: {exc}", err=True)
            return 1
        _report_invalid(exc.diagnostics)
        return 1
    except authoring.Refused as exc:
        # the plan's revision names Grove's uncommitted work tree: say what it is
        shown = dataclasses.replace(exc.plan, revision="rollback")
        if output != "text":
            emit({"change": "refused", "id": ident, "kind": kind, "plan": shown.to_json()}, output)
        click.echo(plans.render_text(shown, title="Rollback", paint=paint), err=True)
        click.echo("grove: the rollback was refused; nothing was committed", err=True)
        return 1
    if output != "text":
        emit(done.to_json(), output)
    else:
        _print(done)
    if done.preview is not None:
        return 1 if done.preview.plan.violations and not force else 0
    if done.change == authoring.RollbackChange.PENDING:  # fine dry, not live otherwise
        return 0 if dry_run else 1
    live = (authoring.RollbackChange.ROLLED_BACK, authoring.RollbackChange.NOTHING)
    return 0 if done.change in live else 1


def _print(done: Rollback) -> None:
    from reconciler.gitops.authoring import RollbackChange, RollbackMethod

    name = f"{done.kind}/{done.ident}"
    if done.change not in (RollbackChange.ROLLED_BACK, RollbackChange.DRY_RUN):
        click.echo(f"{name}: {done.detail}")
        return
    how = (
        f"a git revert of {done.undoes[:12]}"
        if done.method == RollbackMethod.REVERT and done.undoes
        else "a commit restoring its previous document"
    )
    if done.preview is not None:
        click.echo(f"{name}: version {done.from_version} -> {done.to_version}, by {how}")
        click.echo("\nCommit message:\n")
        message = done.preview.message.split("\n")
        click.echo("\n".join(f"    {printable(line)}".rstrip() for line in message))
        click.echo("\nDiff:\n")
        click.echo("\n".join(_painted(line) for line in done.preview.diff.split("\n")))
        shown = dataclasses.replace(done.preview.plan, revision="rollback")
        click.echo("\n" + plans.render_text(shown, title="Plan", paint=paint))
        if done.preview.plan.violations:
            click.echo("grove: the rollback would be refused (--force to override)", err=True)
        click.echo(f"grove: {done.detail}", err=True)
        return
    assert done.result is not None
    click.echo(
        f"{name}: version {done.from_version} -> {done.to_version} in commit "
        f"{done.result.revision[:12]} ({how}); {done.result.detail}; "
        f"version {done.from_version} is quarantined"
    )


def _painted(line: str) -> str:
    """A line of a unified diff in a plan's colours (added green, removed red), every
    character a terminal would act on escaped (a manifest may hold any)."""
    line = printable(line)
    if line.startswith("+") and not line.startswith("+++"):
        return paint(line, "create")
    if line.startswith("-") and not line.startswith("---"):
        return paint(line, "remove")
    return line
