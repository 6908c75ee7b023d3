"""``-o/--output FORMAT``, the one output flag of every command that prints data.

DESIGN section 5: ``-o/--output text|json`` (plus ``github`` or ``markdown`` where a
command has them), with the older spellings kept as synonyms: ``--format FORMAT``
and the ``--json`` flag. The command receives the chosen format as ``output``.
Parsing only: it never prints and never reads settings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import click

from reconciler import errors

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def output_option(formats: Sequence[str] = ("text", "json"), *, help_text: str = "") -> Decorator:
    """``-o/--output/--format`` (a choice of ``formats``, default the first) and ``--json``.

    ``--json`` with a different ``-o`` is a usage error rather than a silent choice.
    """
    default = formats[0]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_output(*args: Any, output: str | None, as_json: bool, **kwargs: Any) -> Any:
            if as_json and output not in (None, "json"):
                raise errors.UsageError(f"--json and -o {output} disagree; pass one of them")
            return command(*args, output="json" if as_json else output or default, **kwargs)

        decorated = click.option("--json", "as_json", is_flag=True, help="Same as -o json.")(
            with_output
        )
        return click.option(
            "-o",
            "--output",
            "--format",
            "output",
            type=click.Choice(list(formats)),
            help=(help_text + " " if help_text else "")
            + f"[default: {default}; --format is a synonym]",
        )(decorated)

    return decorate
