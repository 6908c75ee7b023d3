"""``-o/--output FORMAT``, the one output flag of every command that prints data, and
colour on a terminal.

DESIGN section 5: ``-o/--output text|json`` (plus ``yaml``, ``github`` or ``markdown``
where a command has them), with the older spellings kept as synonyms: ``--format
FORMAT`` and the ``--json`` flag. The command receives the chosen format as ``output``;
:func:`emit` prints a document as JSON or YAML.

Colour (``--color/--no-color``, :func:`colour_option`) is for text on a terminal only:
never with ``NO_COLOR`` (https://no-color.org) or ``TERM=dumb``, forced by
``FORCE_COLOR``; click strips it when stdout is not a terminal. Only text output is
ever painted: JSON, YAML, GitHub and Markdown never carry a colour.
Parsing and printing only: it never reads settings.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from reconciler.base import errors
from reconciler.manifests import yamlsafe

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

# the tone of a plan line (plans.render_text) -> its colour
COLOURS: Mapping[str, str] = {
    "create": "green",
    "remove": "red",
    "change": "yellow",
    "refused": "red",
}


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


def emit(document: Any, output: str) -> None:
    """Print ``document`` (plain JSON values) as ``output``: ``json`` or ``yaml``."""
    if output == "yaml":
        click.echo(yamlsafe.dump([document]), nl=False, color=False)
    else:
        click.echo(json.dumps(document, indent=2, ensure_ascii=True), color=False)


# ---------------------------------------------------------------- colour


def colour_wanted(flag: bool | None, environ: Mapping[str, str] | None = None) -> bool | None:
    """True: always colour; False: never; None: when stdout is a terminal.

    The flag wins, then ``NO_COLOR`` (any non-empty value), then ``FORCE_COLOR`` (any
    non-empty value), then ``TERM=dumb``; otherwise click decides by the terminal.
    """
    env = os.environ if environ is None else environ
    if flag is not None:
        return flag
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    if env.get("TERM") == "dumb":
        return False
    return None


def colour_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--color/--no-color``: decides once, for the command's context, whether its text
    may carry colour (:func:`colour_wanted`); :func:`paint` and ``click.echo`` follow."""

    @functools.wraps(command)
    def with_colour(*args: Any, colour: bool | None, **kwargs: Any) -> Any:
        click.get_current_context().color = colour_wanted(colour)
        return command(*args, **kwargs)

    return click.option(
        "--color/--no-color",
        "colour",
        default=None,
        help="Colour the plan: + green, - red, ~ yellow [default: on a terminal, "
        "unless NO_COLOR is set or TERM=dumb; FORCE_COLOR forces it].",
    )(with_colour)


def paint(text: str, tone: str) -> str:
    """``text`` in the colour of ``tone`` (:data:`COLOURS`), unless colour is off for this
    command; when it is undecided, click removes it again if stdout is no terminal."""
    context = click.get_current_context(silent=True)
    if context is None or context.color is False or tone not in COLOURS:
        return text
    return click.style(text, fg=COLOURS[tone])
