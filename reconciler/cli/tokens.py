"""``grove token create --role viewer|operator|admin|client --name N`` / ``grove token revoke N``.

``client`` is the role to give applications: it may call the data plane
(``POST /api/routing/execute``, ``/v1/*``) and nothing else.

``-o json`` (or ``yaml``) prints the name, the role and, for ``create``, the token: still
once, on stdout, and never anywhere else.
"""

from __future__ import annotations

import click

from reconciler.base import errors
from reconciler.base.settings import Settings
from reconciler.cli.common import common_options, grove, open_registry
from reconciler.cli.output import emit, output_option
from reconciler.cli.registry import actor

ROLES = ("viewer", "operator", "admin", "client")  # store.tokens.ROLES, without importing it


@grove.group("token")
def token_group() -> None:
    """API tokens (stored hashed; a token is shown once, when created)."""


@token_group.command("create")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    required=True,
    help="viewer reads; operator also writes; admin also forces; client (for "
    "applications) may only call the data plane: POST /api/routing/execute and /v1/*.",
)
@click.option("--name", required=True, help="A unique name, used to revoke it.")
@output_option(("text", "json", "yaml"))
@common_options
def create_command(
    role: str,
    name: str,
    output: str,
    settings: Settings,
) -> int:
    """Create a token and print it once on stdout. NAME: 1 to 64 of a-z, 0-9, '.', '_'
    and '-', starting with a letter or digit; unique, even after a revocation."""
    from reconciler.store import tokens

    tokens.check_name(name)  # before the database is opened
    database = open_registry(settings)
    with database.transaction(write=True) as connection:
        token = tokens.create(connection, name=name, role=role, created_by=actor())
    if output != "text":
        emit({"name": name, "role": role, "token": token}, output)
    else:
        click.echo(token)
    return 0


@token_group.command("revoke")
@click.argument("name")
@output_option(("text", "json", "yaml"))
@common_options
def revoke_command(name: str, output: str, settings: Settings) -> int:
    """Revoke the token called NAME; requests with it get 401 within 5 s.

    A server keeps a verified token for up to 5 seconds.
    """
    from reconciler.store import tokens

    database = open_registry(settings)
    with database.transaction(write=True) as connection:
        if not tokens.revoke(connection, name):
            raise errors.UsageError(f"no active token is named {name!r}")
    if output != "text":
        emit({"name": name, "revoked": True}, output)
        return 0
    click.echo(f"token {name} revoked")
    return 0
