"""Commands on the registry: diff, plan, apply, reconcile, suspend, resume, status, protect.

The store, git and SQLAlchemy are imported when a command runs, not when the
CLI starts, so ``grove validate`` stays quick and never loads a database driver.

Exit codes (DESIGN section 5): ``plan`` and ``diff`` exit 0 with no changes,
2 with safe changes and 1 when refused or invalid; ``apply`` and
``reconcile`` exit 0 when the registry matches the revision afterwards;
``status`` exits 0 Synced and Healthy, 3 not synced, 4 Degraded.
"""

from __future__ import annotations

import getpass
import json
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler.base import errors
from reconciler.base.diagnostics import (
    Diagnostic,
    code_span,
    markdown_line,
    markdown_report,
    text_line,
)
from reconciler.base.settings import Settings
from reconciler.base.settings import parse_duration as _parse_seconds
from reconciler.cli.common import common_options, grove, kind_option, open_registry
from reconciler.cli.output import colour_option, emit, output_option, paint
from reconciler.planning import plans
from reconciler.planning import status as status_module

if TYPE_CHECKING:
    from reconciler.gitops import reconciling
    from reconciler.store import registry

EXIT_CHANGES = 2


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no passwd entry
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def _reconciler(settings: Settings, *, database: bool = True) -> reconciling.Reconciler:
    from reconciler.gitops import reconciling

    source = reconciling.open_source(settings)
    return reconciling.Reconciler(settings, source, open_registry(settings) if database else None)


def _report_invalid(diagnostics: tuple[Diagnostic, ...] | list[Diagnostic]) -> None:
    for item in diagnostics:
        click.echo(text_line(item), err=True)
    count = sum(1 for d in diagnostics if d.is_error)
    click.echo(f"grove: the manifests have {count} error(s); nothing was planned", err=True)


def _warnings(diagnostics: tuple[Diagnostic, ...]) -> None:
    for item in diagnostics:
        if not item.is_error:
            click.echo(text_line(item), err=True)


# ---------------------------------------------------------------- diff


@grove.command("diff")
@click.argument("base")
@click.argument("head")
@output_option(("text", "json", "markdown"), help_text="markdown for a pull-request comment.")
@colour_option
@common_options
def diff_command(
    base: str,
    head: str,
    output: str,
    settings: Settings,
) -> int:
    """Plan between two git revisions with the safety checks; no database (PR preview)."""
    from reconciler.gitops import reconciling

    outcome, base_errors = reconciling.diff_revisions(settings, base, head)
    if base_errors:
        click.echo(
            f"grove: warning: {base} has {len(base_errors)} manifest error(s); "
            "its invalid objects are left out of the comparison",
            err=True,
        )
    if outcome.plan is None:
        if output == "json":
            click.echo(json.dumps(_invalid_json(outcome.diagnostics), indent=2, ensure_ascii=True))
        elif output == "markdown":
            click.echo(_invalid_markdown(base, head, outcome.diagnostics), nl=False)
        _report_invalid(outcome.diagnostics)
        return 1
    _warnings(outcome.diagnostics)
    plan = outcome.plan
    if output == "json":
        click.echo(plan.dumps(), nl=False)
    elif output == "markdown":
        click.echo(plans.render_markdown(plan), nl=False)
        warnings = [item for item in outcome.diagnostics if not item.is_error]
        if warnings:  # sunsets and disabled references belong in the review too
            click.echo("\n**Warnings:**\n\n" + "\n".join(markdown_line(w) for w in warnings))
    else:
        click.echo(plans.render_text(plan, title="Diff", paint=paint), nl=False)
    return _plan_exit(plan)


def _plan_exit(plan: plans.Plan) -> int:
    if plan.refused:
        return 1
    return EXIT_CHANGES if plan.changes else 0


def _invalid_json(found: tuple[Diagnostic, ...]) -> dict[str, Any]:
    return {
        "valid": False,
        "errors": sum(1 for d in found if d.is_error),
        "diagnostics": [d.to_json() for d in found],
    }


def _invalid_markdown(base: str, head: str, found: tuple[Diagnostic, ...]) -> str:
    """The pull-request comment for a head that cannot be planned: every problem."""
    count = sum(1 for d in found if d.is_error)
    summary = (
        f"{code_span(base)} → {code_span(head)}: the manifests at the head have "
        f"{count} error(s), so nothing can be planned or applied. Fix them and push again."
    )
    return markdown_report("Grove plan: invalid manifests", found, summary)


# ---------------------------------------------------------------- plan / apply


@grove.command("plan")
@output_option()
@click.option(
    "--out", type=click.Path(dir_okay=False), help="Also save the plan for `grove apply --plan`."
)
@colour_option
@common_options
def plan_command(
    output: str,
    out: str | None,
    settings: Settings,
) -> int:
    """Plan git at --ref against the live registry (exit 0 none, 2 changes, 1 refused)."""
    outcome = _reconciler(settings).plan()
    if outcome.plan is None:
        if output == "json":
            click.echo(json.dumps(_invalid_json(outcome.diagnostics), indent=2, ensure_ascii=True))
        _report_invalid(outcome.diagnostics)
        return 1
    _warnings(outcome.diagnostics)
    plan = outcome.plan
    if out:
        Path(out).write_text(plan.dumps(), encoding="utf-8")
    if output == "json":
        click.echo(plan.dumps(), nl=False)
    else:
        click.echo(plans.render_text(plan, paint=paint), nl=False)
    if out:  # on stderr with -o json, so stdout stays one JSON document
        click.echo(_saved_note(plan, out), err=output == "json")
    return _plan_exit(plan)


def _saved_note(plan: plans.Plan, out: str) -> str:
    """What the saved plan is good for: a refused one cannot be applied as it is."""
    if plan.refused:
        return (
            f"Saved the plan to {out} for review; the safety checks refused it, so it cannot "
            "be applied as it is: fix the violations above and plan again."
        )
    return f"Saved the plan to {out}; apply it with `grove apply --plan {out}`."


@grove.command("apply")
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Apply a plan saved by `grove plan --out` (refused if the registry moved).",
)
@click.option("--force", is_flag=True, help="Apply even if safety checks refuse (recorded).")
@output_option()
@colour_option
@common_options
def apply_command(
    plan_file: str | None,
    force: bool,
    output: str,
    settings: Settings,
) -> int:
    """Apply git at --ref (or a saved plan) to the registry in one transaction."""
    reconciler = _reconciler(settings)
    if plan_file:
        try:
            saved = plans.Plan.from_json(json.loads(Path(plan_file).read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise errors.UsageError(f"{plan_file}: not a Grove plan file ({exc})") from None
        if output == "text":
            click.echo(plans.render_text(saved, forced=force, paint=paint), nl=False)
        applied = reconciler.apply_saved(saved, actor=actor(), force=force)
        return _report_applied(applied, saved, output)
    outcome = reconciler.plan()
    if outcome.plan is None:
        if output == "json":
            _echo_json({"state": "invalid", **_invalid_json(outcome.diagnostics)})
        _report_invalid(outcome.diagnostics)
        return 1
    _warnings(outcome.diagnostics)
    if output == "text":
        click.echo(plans.render_text(outcome.plan, forced=force, paint=paint), nl=False)
    applied = reconciler.apply(outcome.plan, actor=actor(), force=force)
    return _report_applied(applied, outcome.plan, output)


def _echo_json(document: dict[str, Any]) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=True))


def _outcome_json(state: str, plan: plans.Plan, applied: registry.Applied | None) -> dict[str, Any]:
    """``apply -o json`` and ``reconcile -o json``: what happened, the plan, the result."""
    return {
        "state": state,
        "revision": plan.revision,
        "plan": plan.to_json(),
        "applied": None
        if applied is None
        else {"changes": applied.changes, "stateSerial": applied.state_serial},
    }


def _report_applied(applied: registry.Applied, plan: plans.Plan, output: str) -> int:
    if output == "json":
        state = "already-applied" if applied.already_applied else "applied"
        _echo_json(_outcome_json(state, plan, None if applied.already_applied else applied))
    elif applied.already_applied:
        click.echo(f"Revision {plan.revision[:12]} is already applied; nothing to do.")
    else:
        forced = " (forced over the safety checks)" if plan.refused else ""
        click.echo(
            f"Applied {applied.changes} change(s) at revision {plan.revision[:12]}; "
            f"registry serial {applied.state_serial}{forced}."
        )
    return 0


# ---------------------------------------------------------------- reconcile / status


def parse_duration(text: str) -> float:
    """``30s``, ``2m``, ``500ms``, ``1h`` or plain seconds."""
    try:
        return _parse_seconds(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@grove.command("reconcile")
@click.option("--force", is_flag=True, help="Apply even if safety checks refuse (recorded).")
@click.option("--watch", is_flag=True, help="Run forever: the reconcile loop.")
@click.option(
    "--interval",
    default="30s",
    show_default=True,
    help="With --watch: how often remote sources are fetched (30s, 2m, ...).",
)
@click.option(
    "--now", "now", is_flag=True, help="Ask the running loop(s) for a cycle at once, then exit."
)
@click.option(
    "--full",
    is_flag=True,
    help="Read and check every file and live object (no shortcut over what changed).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="With --watch: log lines as text or JSON [default: json unless a terminal].",
)
@output_option(help_text="The outcome of one cycle (not for --watch, which logs).")
@colour_option
@common_options
def reconcile_command(
    force: bool,
    watch: bool,
    interval: str,
    now: bool,
    full: bool,
    log_format: str | None,
    output: str,
    settings: Settings,
) -> int:
    """One cycle: fetch, plan, apply unless refused, record status (or --watch: forever).

    A process that reconciled before plans a change from the files git says changed,
    with the checks over what they touch; ``--full`` reads and checks everything (the
    loop does that every hour anyway)."""
    if full and (now or watch):
        raise errors.UsageError("--full is for one cycle here; a loop runs a full one hourly")
    if now:
        return _trigger(settings, output)
    if watch:
        if force:
            raise click.UsageError("--force applies one reviewed plan; it is not for --watch")
        if output != "text":
            raise errors.UsageError("--watch logs (--log-format); -o is for one cycle")
        return _watch(settings, parse_duration(interval), log_format)
    from reconciler.gitops.reconciling import CycleState

    outcome = _reconciler(settings).reconcile(actor=actor(), force=force, full=full)
    revision = (outcome.revision or "")[:12]
    if outcome.state == CycleState.INVALID:
        if output == "json":
            found = outcome.planned.diagnostics
            _echo_json({"state": "invalid", "revision": outcome.revision, **_invalid_json(found)})
        _report_invalid(outcome.planned.diagnostics)
        return 1
    _warnings(outcome.planned.diagnostics)
    plan = outcome.plan
    assert plan is not None
    if output == "json":
        _echo_json(_outcome_json(outcome.state, plan, outcome.applied))
        if outcome.state == CycleState.REFUSED:
            click.echo(f"grove: revision {revision} was not applied", err=True)
        return 1 if outcome.state == CycleState.REFUSED else 0
    if outcome.state == CycleState.REFUSED:
        click.echo(plans.render_text(plan, paint=paint), nl=False)
        click.echo(f"grove: revision {revision} was not applied", err=True)
        return 1
    if outcome.state == CycleState.ALREADY_APPLIED:
        click.echo(
            f"Revision {revision} is already applied (by another reconciler); nothing to do."
        )
    elif outcome.state == CycleState.IN_SYNC:
        click.echo(f"In sync at revision {revision}; no changes.")
    elif plan.empty:
        click.echo(f"Recorded revision {revision}: no changes to the registry.")
    else:
        assert outcome.applied is not None
        click.echo(plans.render_text(plan, forced=force, paint=paint), nl=False)
        click.echo(
            f"Applied {outcome.applied.changes} change(s) at revision {revision}; "
            f"registry serial {outcome.applied.state_serial}."
        )
    return 0


def _watch(settings: Settings, interval_s: float, log_format: str | None) -> int:
    from reconciler.base import logs
    from reconciler.gitops import watching

    fmt = log_format or ("text" if sys.stderr.isatty() else "json")
    logs.configure(json_lines=fmt == "json")
    options = watching.Options(
        interval_s=interval_s, poll_s=settings.poll_interval_s, lease_ttl_s=settings.lease_ttl_s
    )
    stop = threading.Event()
    watcher = watching.Watcher(settings, options, stop=stop)

    def shut_down(_signum: int, _frame: object) -> None:
        stop.set()
        watcher.wake.set()

    previous = {sig: signal.signal(sig, shut_down) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return watcher.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _trigger(settings: Settings, output: str) -> int:
    from reconciler.store import coordination

    database = open_registry(settings)
    with database.transaction(write=True) as connection:
        count = coordination.trigger(connection)
        leader = coordination.current(connection)
    if output == "json":
        _echo_json({"trigger": count, "leader": leader.holder if leader else None})
        return 0
    holder = f"; the leader is {leader.holder}" if leader else "; no loop holds the lease now"
    click.echo(f"Asked the reconcile loop for a cycle (trigger {count}){holder}.")
    return 0


@grove.command("suspend")
@output_option(("text", "json", "yaml"))
@common_options
def suspend_command(output: str, settings: Settings) -> int:
    """Stop reconcile loops from applying until `grove resume` (`grove status` shows it)."""
    return _suspension(settings, True, output)


@grove.command("resume")
@output_option(("text", "json", "yaml"))
@common_options
def resume_command(output: str, settings: Settings) -> int:
    """Resume applying after `grove suspend`."""
    return _suspension(settings, False, output)


def _suspension(settings: Settings, suspended: bool, output: str) -> int:
    from reconciler.store import coordination

    database = open_registry(settings)
    with database.transaction(write=True) as connection:
        changed = coordination.set_suspended(connection, suspended, actor=actor())
    if output != "text":
        emit({"suspended": suspended, "changed": changed}, output)
        return 0
    word = "suspended" if suspended else "resumed"
    click.echo(f"Reconciliation {word}." if changed else f"Reconciliation was already {word}.")
    return 0


# ``grove status`` exit codes (DESIGN section 5, docs/reconciling.md), for scripts and
# checks the way ``flux``/``argocd`` use theirs; 1 stays "could not answer" and 2
# "changes" of plan and diff, so neither is reused here.
STATUS_OK = 0
STATUS_NOT_SYNCED = 3  # OutOfSync or Unknown, or health Progressing/Unknown
STATUS_DEGRADED = 4  # Degraded: Stalled (a refused, invalid or failed cycle) or drifted


def status_exit(status: status_module.Status) -> int:
    """0 Synced and Healthy, 4 Degraded (whatever the sync), 3 anything else."""
    if status.health is status_module.Health.DEGRADED:
        return STATUS_DEGRADED
    if status.sync is status_module.Sync.SYNCED and status.health is status_module.Health.HEALTHY:
        return STATUS_OK
    return STATUS_NOT_SYNCED


@grove.command("status")
@output_option()
@common_options
def status_command(output: str, settings: Settings) -> int:
    """Sync, health, conditions, revisions and drift.

    Exits 0 when Synced and Healthy, 3 when not synced (changes pending, or the desired
    revision cannot be read or planned), 4 when Degraded (Stalled or drifted), and 1
    when the status cannot be read at all.
    """
    status = _reconciler(settings).status()
    if output == "json":
        click.echo(json.dumps(status.to_json(), indent=2))
        return status_exit(status)
    click.echo(f"sync:     {status.sync.value}")
    click.echo(f"health:   {status.health.value}")
    click.echo(f"desired:  {status.desired_revision or 'unknown'}")
    click.echo(f"applied:  {status.last_applied_revision or 'never'}")
    click.echo(f"attempted: {status.last_attempted_revision or 'never'}")
    click.echo(
        f"serial:   {status.state_serial}   objects: {status.objects}   "
        f"pending changes: {status.pending_changes}"
    )
    width = max([12, *(len(item.type) for item in status.conditions)])
    for item in status.conditions:
        tail = f" - {item.message}" if item.message else ""
        click.echo(f"  {item.type:<{width}} {item.status:<7} {item.reason}{tail}")
    if status.rollouts:
        click.echo("rollouts:")
        for rollout in status.rollouts:
            click.echo(f"  {rollout_line(rollout)}")
    return status_exit(status)


def rollout_line(rollout: dict[str, Any]) -> str:
    """``alpha  1 -> 2  Running  step 1/2 at 10%  40 calls, success 0.975, p95 812 ms``."""
    where = (
        f"step {rollout['step']}/{rollout['steps']} at {rollout['weight']}%"
        if rollout.get("steps")
        else f"verification at {rollout['weight']}%"
    )
    state = rollout["phase"] + (f" ({rollout['rollback']})" if rollout.get("rollback") else "")
    figures = ""
    if rollout.get("samples") is not None:
        rate, p95 = rollout.get("successRate"), rollout.get("p95LatencyMs")
        figures = f"  {rollout['samples']} calls"
        figures += f", success {rate:.3f}" if rate is not None else ""
        figures += f", p95 {p95:.0f} ms" if p95 is not None else ""
    return (
        f"{rollout['id']}  {rollout['stableVersion']} -> {rollout['canaryVersion']}  "
        f"{state}  {where}{figures}"
    )


@grove.command("protect")
@click.argument("ident", metavar="ID")
@kind_option(help="Needed only when a model and a rule share the id.")
@click.option("--reason", default="", help="Why; shown in the refusal.")
@output_option(("text", "json", "yaml"))
@common_options
def protect_command(
    ident: str,
    kind: str | None,
    reason: str,
    output: str,
    settings: Settings,
) -> int:
    """Protect a live object so that deleting its file cannot remove it."""
    return _protection(ident, kind, reason, True, settings, output)


@grove.command("unprotect")
@click.argument("ident", metavar="ID")
@kind_option()
@output_option(("text", "json", "yaml"))
@common_options
def unprotect_command(
    ident: str,
    kind: str | None,
    output: str,
    settings: Settings,
) -> int:
    """Remove the protection of a live object."""
    return _protection(ident, kind, "", False, settings, output)


def _protection(
    ident: str, kind: str | None, reason: str, protect: bool, settings: Settings, output: str
) -> int:
    from reconciler.store import registry

    database = open_registry(settings)
    with database.transaction(write=True) as connection:
        kinds = [kind] if kind else registry.live_kinds_of(connection, ident)
        if not kinds:
            raise errors.UsageError(f"no live object has the id {ident!r}")
        if len(kinds) > 1:
            raise errors.UsageError(f"{ident!r} is both a model and a rule; pass --type")
        changed = registry.set_protection(
            connection, kinds[0], ident, protect=protect, actor=actor(), reason=reason
        )
    if output != "text":
        document = {"kind": kinds[0], "id": ident, "protected": protect, "changed": changed}
        emit(document, output)
        return 0
    verb = "protected" if protect else "unprotected"
    click.echo(f"{kinds[0]}/{ident} {verb}" + ("" if changed else " (no change)"))
    return 0
