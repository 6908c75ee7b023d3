"""The ``grove`` command line (also ``python -m reconciler``).

An entry point: it parses flags into settings, calls one service, renders its
result and chooses the exit code. User errors become one line on stderr and
exit 1, never a traceback (set ``GROVE_DEBUG=1`` to see one for a bug).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from reconciler.base import errors
from reconciler.base.diagnostics import printable
from reconciler.cli import (
    db,
    get,
    registry,
    rollback,
    rollouts,
    route,
    schema,
    serve,
    tokens,
    validate,
)
from reconciler.cli.common import grove


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run ``grove`` and exit with its code."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    try:
        result = grove.main(args=argv, prog_name="grove", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        # Exit 2 means "changes" for plan and diff, so a usage error must not look like it.
        return 1
    except click.Abort:
        click.echo("grove: aborted", err=True)
        return 130
    except errors.GroveError as exc:
        click.echo(f"grove: {printable(str(exc))}", err=True)  # one line, nothing a terminal runs
        return 1
    except KeyboardInterrupt:
        click.echo("grove: interrupted", err=True)
        return 130
    except Exception as exc:
        if os.environ.get("GROVE_DEBUG"):
            raise
        click.echo(
            f"grove: internal error: {type(exc).__name__}: {exc} "
            "(set GROVE_DEBUG=1 for a traceback, and please report it)",
            err=True,
        )
        return 1
    return result if isinstance(result, int) else 0


__all__ = [
    "db",
    "get",
    "grove",
    "main",
    "registry",
    "rollback",
    "rollouts",
    "route",
    "run",
    "schema",
    "serve",
    "tokens",
    "validate",
]
