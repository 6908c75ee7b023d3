"""``grove route --task T | --capability C... [--json]``: show the routing decision.

Reads the reconciled registry, decides as the router would, and prints every
candidate with its rank or the reason it was excluded. Calls no model.
Exit 0 when a model is eligible, 1 when none is.
"""

from __future__ import annotations

import json

import click

from reconciler import errors
from reconciler.cli.common import common_options, grove
from reconciler.manifests import CapabilityType
from reconciler.settings import Settings

CAPABILITIES = [c.value for c in CapabilityType]


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
@click.option("--json", "as_json", is_flag=True)
@common_options
def route_command(
    task_type: str | None,
    capabilities: tuple[str, ...],
    min_score: float,
    as_json: bool,
    settings: Settings,
) -> int:
    """Show which model a task would go to, the failover chain, and why."""
    from reconciler import ranking, routing

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
    if as_json:
        click.echo(json.dumps(decision.to_json(), indent=2))
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
