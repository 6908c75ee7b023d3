"""``grove route --task T | --capability C... [-o text|json|yaml]``: show the routing decision.

Reads the reconciled registry, decides as the router would, and prints every
candidate with its rank or the reason it was excluded. Calls no model and writes
no file. The router's warnings (an ignored ``ROUTING_OVERRIDE_MODEL``, a registry
it cannot read) are one line each on stderr, with their reason.
Exit 0 when a model is eligible, 1 when none is.
"""

from __future__ import annotations

import logging
import sys

import click

from reconciler.base import diagnostics, errors
from reconciler.base.settings import Settings
from reconciler.cli.common import common_options, grove
from reconciler.cli.output import emit, output_option
from reconciler.manifests.kinds import CapabilityType

CAPABILITIES = [c.value for c in CapabilityType]


class _OneLine(logging.Formatter):
    """``grove: warning: EVENT: REASON`` (or ``EVENT: key=value ...``) for the router's
    log events, which a long-running process writes as JSON or text lines instead."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = getattr(record, "fields", {})
        if set(fields) == {"reason"}:
            detail = str(fields["reason"])
        else:
            detail = " ".join(f"{key}={value}" for key, value in fields.items())
        text = f"grove: {record.levelname.lower()}: {record.getMessage()}"
        return diagnostics.printable(f"{text}: {detail}" if detail else text)


def _warnings_to_stderr() -> None:
    """Until the command ends, the router's warnings go to stderr as one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    root = logging.getLogger("grove")
    saved = (root.handlers[:], root.level, root.propagate)
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    root.propagate = False

    def restore() -> None:
        root.handlers[:], level, root.propagate = saved
        root.setLevel(level)

    click.get_current_context().call_on_close(restore)


@grove.command("route")
@click.option("--task", "task_type", help="A taskType of an enabled routing rule.")
@click.option(
    "--capability",
    "capabilities",
    multiple=True,
    type=click.Choice(CAPABILITIES),
    help="A capability the model needs (repeatable).",
)
@click.option(
    "--min-score",
    type=float,
    default=0.0,
    show_default=True,
    help="With --capability: the score every capability must reach.",
)
@output_option(("text", "json", "yaml"), help_text="json and yaml: the decision's document.")
@common_options
def route_command(
    task_type: str | None,
    capabilities: tuple[str, ...],
    min_score: float,
    output: str,
    settings: Settings,
) -> int:
    """Show which model a task would go to, the failover chain, and why."""
    from reconciler.routing import engine as routing
    from reconciler.routing import ranking

    _warnings_to_stderr()
    # it only decides: no routing-log writer, no snapshot.json (a read-only command writes
    # no file, DESIGN section 5)
    deciding = settings.model_copy(update={"save_snapshot": False})
    engine = routing.RoutingEngine.open(settings=deciding, write_logs=False)
    click.get_current_context().call_on_close(engine.close)
    request = ranking.TaskRequest(
        task_type=task_type,
        capabilities=tuple(CapabilityType(c) for c in capabilities),
        min_score=min_score,
    )
    try:
        decision = engine.get_routing_decision(request)
    except ranking.NoRoute as exc:
        raise errors.UsageError(str(exc)) from None
    if output != "text":
        emit(decision.to_json(), output)
    else:
        scope = f"rule {decision.rule_id}" if decision.rule_id else "capabilities"
        click.echo(f"{decision.reason}")
        click.echo(
            f"strategy {decision.strategy}, {scope}, registry serial {decision.serial}"
            + (" (DEGRADED)" if decision.degraded else "")
        )
        click.echo("chain: " + (" -> ".join(decision.chain) or "(none)"))
        click.echo("")
        for report in decision.candidates:
            place = f"#{report.rank}" if report.rank else "--"
            score = "" if report.score is None else f"score {report.score:.2f}  "
            click.echo(f"  {place:<4} {report.model_id:<30} {score}{report.reason}")
    return 0 if decision.model_id else 1
