"""Pieces every ``grove`` command shares: the group, the common flags, settings."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from reconciler.base import settings as settings_module
from reconciler.base.settings import Settings
from reconciler.manifests import kinds as manifests

if TYPE_CHECKING:
    from reconciler.store.engine import Database


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="grove-reconciler", prog_name="grove")
def grove() -> None:
    """Grove: a GitOps reconciler and router for fleets of AI models."""


def common_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--repo, --ref, --path and --db, which every command takes (DESIGN section 5).

    The command receives them as one ``settings`` argument (flags > environment >
    the ``.grove/config.json`` of a ``grove up`` in this folder or above > defaults),
    built when it runs, so a bad value is the command's usage error.
    """

    @functools.wraps(command)
    def with_settings(
        *args: Any,
        repo: str | None,
        ref: str | None,
        manifests_path: str | None,
        db: str | None,
        **kwargs: Any,
    ) -> Any:
        return command(*args, settings=load_settings(repo, ref, manifests_path, db), **kwargs)

    options = (
        click.option(
            "--repo",
            help="Fleet repository path or URL [env GROVE_REPO; default: the fleet of a "
            "grove up here or above (.grove/config.json), else .]",
        ),
        click.option("--ref", help="Git ref to read [env GROVE_REF; default HEAD]"),
        click.option(
            "--path",
            "manifests_path",
            metavar="PATH",
            help="Manifests folder in the repo [env GROVE_PATH; default manifests]",
        ),
        click.option(
            "--db",
            help="Registry database URL [env GROVE_DB_URL; default: that of a grove up here "
            "or above, else sqlite:///.grove/registry.db]",
        ),
    )
    decorated: Callable[..., Any] = with_settings
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


def kind_option(**options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--type AIModel|RoutingRule``, passed to the command as ``kind``."""
    return click.option("--type", "kind", type=click.Choice(sorted(manifests.KINDS)), **options)


def load_settings(
    repo: str | None, ref: str | None, manifests_path: str | None, db: str | None
) -> Settings:
    return settings_module.load(repo=repo, ref=ref, path=manifests_path, db_url=db)


def open_registry(settings: Settings, *, require_schema: bool = True) -> Database:
    """The registry database for this command, disposed of when the command ends; never
    created, a missing one named (``require_schema=False``: for ``grove db``). The store
    is imported here, when a command runs, not when the CLI starts."""
    from reconciler.gitops import reconciling

    database = reconciling.open_database(settings, require_schema=require_schema)
    click.get_current_context().call_on_close(database.dispose)
    return database
