"""``grove rollout status|promote|abort`` and ``grove quarantine list|lift``: progressive
delivery from the command line (DESIGN section 11).

``rollout status`` reads the rollouts table: every model's latest rollout, or one in
detail (its steps, SLO, every judgement with its figures and n, the rollback commit or
the commit to make by hand). ``promote`` and ``abort`` act as the analyst would, in the
registry, named ``cli:user@host``; an abort's rollback commit is authored by that user.
``quarantine lift`` lets a version be applied again: an admin's decision, so it asks
for ``--yes`` or a confirmation on a terminal, and records ``quarantine_lifted``.

-o json prints what the HTTP API answers (`delivery` builds both). Exit 0, or 1 with
one line on stderr.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import TYPE_CHECKING, Any

import click

from reconciler.base import errors
from reconciler.base.diagnostics import printable
from reconciler.base.settings import Settings
from reconciler.cli.common import common_options, grove, kind_option, open_registry
from reconciler.cli.get import _shown_time, _table
from reconciler.cli.output import emit, output_option
from reconciler.cli.registry import actor

if TYPE_CHECKING:
    from reconciler.gitops.rollouts import Rollouts

FORMATS = ("text", "json", "yaml")
NO_ROLLOUTS = (
    "no rollouts: a rollout begins when a new version of a model with `slo` is applied "
    "(a canary with `rollout`, else a post-deploy verification)"
)


@grove.group("rollout")
def rollout_group() -> None:
    """Progressive delivery: see, promote or abort the rollout of a model's new version."""


def _service(settings: Settings) -> Rollouts:
    from reconciler.gitops.rollouts import Rollouts

    return Rollouts(settings, open_registry(settings))


@rollout_group.command("status")
@click.argument("ident", metavar="[ID]", required=False)
@output_option(FORMATS)
@common_options
def rollout_status(ident: str | None, output: str, settings: Settings) -> int:
    """Every model's latest rollout, open ones first; with ID, that model's rollout in
    detail: steps, SLO, each judgement with its figures, the rollback, earlier rollouts.

    -o json prints what GET /api/rollouts (or GET /api/rollouts/ID) answers.
    """
    from reconciler.gitops import delivery

    service = _service(settings)
    if ident is None:
        items = [delivery.item(rollout) for rollout in service.listing()]
        if output != "text":
            emit(items, output)
        elif not items:
            click.echo(NO_ROLLOUTS)
        else:
            table(items)
        return 0
    found = detail_of(service, ident)
    if output != "text":
        emit(found, output)
    else:
        show(found)
    return 0


@rollout_group.command("promote")
@click.argument("ident", metavar="ID")
@output_option(FORMATS)
@common_options
def rollout_promote(ident: str, output: str, settings: Settings) -> int:
    """Make the canary of ID's open rollout stable now: every call goes to it, and the
    rollout is Successful. Nothing is committed: git holds that version already."""
    from reconciler.gitops import delivery

    service = _service(settings)
    before, _ = service.get(ident)  # NotFound: "model X has no rollout"
    done = service.promote(ident, actor=actor())
    if output != "text":
        emit(delivery.item(done), output)
        return 0
    click.echo(
        f"{done.model_id}: rollout {done.id} promoted; version {printable(done.canary_version)} "
        f"is stable and gets every call (it had {before.weight}%); "
        f"version {printable(done.stable_version)} gets none"
    )
    return 0


@rollout_group.command("abort")
@click.argument("ident", metavar="ID")
@click.option("--reason", metavar="TEXT", help="Why (one line, at most 500 characters).")
@output_option(FORMATS)
@common_options
def rollout_abort(ident: str, reason: str | None, output: str, settings: Settings) -> int:
    """Stop ID's open rollout: the canary gets no more calls at once, its version is
    quarantined, and the rollback to the stable version is committed (authored by you,
    with the figures so far in the message), pushed and applied, as when it fails.

    Exit 1 when the commit could not be pushed: the rollout is then RollbackPending,
    and `grove rollout status ID` shows the commit to make by hand.
    """
    from reconciler.gitops import delivery
    from reconciler.gitops.authoring import Author
    from reconciler.store.rollouts import RollbackState

    why = delivery.checked_reason(reason)
    name = actor()
    done = _service(settings).abort(ident, actor=name, reason=why)
    pending = done.rollback is RollbackState.PENDING
    if output != "text":
        emit(delivery.item(done), output)
    else:
        said = (
            f"{done.model_id}: rollout {done.id} aborted; version "
            f"{printable(done.canary_version)} gets no calls and is quarantined"
        )
        if pending:
            click.echo(said)
            _pending(done.analysis.get("pending") or {})
        else:
            commit = (done.rollback_commit or "")[:12] or "(none)"
            click.echo(
                f"{said}; rolled back to version {printable(done.stable_version)} in commit "
                f"{commit}, authored by {Author.of(name).name}"
            )
    if pending:
        click.echo(
            "grove: the rollback commit could not be pushed (RollbackPending); "
            "traffic stays on the stable version: make the commit above by hand",
            err=True,
        )
        return 1
    return 0


# ---------------------------------------------------------------- quarantine


@grove.group("quarantine")
def quarantine_group() -> None:
    """Versions held back from being applied again (P003) after a rollback."""


@quarantine_group.command("list")
@click.argument("ident", metavar="[ID]", required=False)
@kind_option(help="Only models or only rules.")
@output_option(FORMATS)
@common_options
def quarantine_list(ident: str | None, kind: str | None, output: str, settings: Settings) -> int:
    """Every quarantined version (of ID), with why and since when.

    -o json prints what GET /api/quarantine answers.
    """
    from reconciler.gitops import delivery

    found = [
        held.to_json()
        for held in delivery.Quarantines(open_registry(settings)).listing(ident, kind=kind)
    ]
    if output != "text":
        emit(found, output)
        return 0
    if not found:
        click.echo(f"no version of {ident} is quarantined" if ident else "no quarantined versions")
        return 0
    _table(
        ["OBJECT", "VERSION", "SINCE", "REASON"],
        [
            [
                f"{held['kind']}/{held['id']}",
                held["version"],
                _shown_time(held["since"]),
                _clipped(held["reason"], 100),
            ]
            for held in found
        ],
    )
    return 0


@quarantine_group.command("lift")
@click.argument("ident", metavar="ID")
@click.argument("version", metavar="VERSION")
@kind_option(help="Needed only when a model and a rule share the id and the version.")
@click.option("--reason", metavar="TEXT", help="Why (one line, at most 500 characters).")
@click.option("--yes", "-y", is_flag=True, help="Lift without asking (needed off a terminal).")
@output_option(FORMATS)
@common_options
def quarantine_lift(
    ident: str,
    version: str,
    kind: str | None,
    reason: str | None,
    yes: bool,
    output: str,
    settings: Settings,
) -> int:
    """Let VERSION of ID be applied again: an admin's decision. A `quarantine_lifted`
    event records who lifted it, and running reconcile loops are asked for a cycle, so
    a revision refused because it holds that version (P003) is planned again at once.
    Asks first on a terminal (on stderr); elsewhere it needs --yes.
    """
    from reconciler.gitops import delivery

    why = delivery.checked_reason(reason)
    service = delivery.Quarantines(open_registry(settings))
    held = [q for q in service.listing(ident, kind=kind) if q.version == version]
    if not held:
        named = f"{kind}/{ident}" if kind else ident
        raise errors.UsageError(f"version {version} of {named} is not quarantined")
    if not yes:
        if not sys.stdin.isatty():
            raise errors.UsageError(
                "lifting a quarantine is an admin's decision: pass --yes to confirm it"
            )
        first = held[0]
        click.confirm(
            f"Lift the quarantine of {first.kind}/{printable(ident)} version "
            f"{printable(version)} (held for: {_clipped(first.reason, 200)})? It may then "
            "be applied again",
            abort=True,
            err=True,  # the question on stderr: stdout stays the answer (-o json)
        )
    lifted = service.lift(ident, version, actor=actor(), kind=kind, reason=why)
    if output != "text":
        emit({**lifted.to_json(), "lifted": True, "by": actor()}, output)
        return 0
    click.echo(
        f"{lifted.kind}/{lifted.ident}: version {printable(lifted.version)} is no longer "
        "quarantined; a reconcile may apply it again"
    )
    return 0


# ---------------------------------------------------------------- reading and printing


def detail_of(service: Rollouts, ident: str) -> dict[str, Any]:
    from reconciler.gitops import delivery

    latest, earlier = service.get(ident)  # NotFound: "model X has no rollout"
    return delivery.detail(latest, earlier)


def table(items: list[dict[str, Any]], *, now: dt.datetime | None = None) -> None:
    """One row per rollout document."""
    from reconciler.gitops import delivery

    moment = now or dt.datetime.now(dt.UTC)
    rows = []
    for item in items:
        judged = delivery.figures(item) or {}
        rows.append(
            [
                item["id"],
                str(item["rolloutId"]),
                item["phase"],
                item["rollback"] or "-",
                f"{item['stableVersion']} -> {item['canaryVersion']}",
                step_of(item),
                f"{item['weight']}%",
                _count(judged.get("samples")),
                _rate(judged.get("successRate")),
                _ms(judged.get("p95LatencyMs")),
                age(item["startedAt"], moment),
            ]
        )
    _table(
        [
            "MODEL",
            "ROLLOUT",
            "PHASE",
            "ROLLBACK",
            "STABLE -> CANARY",
            "STEP",
            "WEIGHT",
            "SAMPLES",
            "SUCCESS",
            "P95",
            "AGE",
        ],
        rows,
    )


def show(found: dict[str, Any], *, now: dt.datetime | None = None) -> None:
    """One rollout document (with its ``history``) as text."""
    moment = now or dt.datetime.now(dt.UTC)
    mode = "canary" if found["mode"] == "canary" else "post-deploy verification, every call"
    click.echo(
        f"{found['id']}: rollout {found['rolloutId']} ({mode}), version "
        f"{printable(found['stableVersion'])} (stable) -> "
        f"{printable(found['canaryVersion'])} (canary)"
    )
    lines = [
        ("Phase", found["phase"] + ("" if found["open"] else " (over)")),
        ("Rollback", found["rollback"] or "-"),
        ("Weight", f"{found['weight']}% of the calls to the canary"),
        ("Revision", f"{found['revision'][:12]} (the apply that began it)"),
        (
            "Started",
            f"{_shown_time(found['startedAt'])} ({age(found['startedAt'], moment)} ago); "
            f"this step since {_shown_time(found['stepStartedAt'])}",
        ),
    ]
    if found["finishedAt"]:
        lines.append(("Finished", _shown_time(found["finishedAt"])))
    if found["message"]:
        lines.append(("Message", _clipped(found["message"], 300)))
    lines.append(("SLO", slo_text(found["slo"])))
    if found["mode"] == "canary":
        lines.append(("Inconclusive", f"{found['onInconclusive']} (too few calls by a step's end)"))
    width = max(len(label) for label, _ in lines) + 2
    for label, value in lines:
        click.echo(f"{label + ':':<{width}}{printable(value)}")
    click.echo("\nSteps:")
    stopped = "   <- current" if not found["rollback"] else "   <- stopped here"
    for number, step in enumerate(_steps(found), start=1):
        current = found["open"] and number - 1 == found["step"] and found["mode"] == "canary"
        marker = ">" if current else " "
        click.echo(f"  {marker} {step}" + (stopped if current else ""))
    judgements = list(found["judgements"])
    current_figures = found.get("current")
    if current_figures and (not judgements or current_figures["at"] != judgements[-1]["at"]):
        judgements.append({**current_figures, "verdict": f"{current_figures['verdict']} (latest)"})
    click.echo("\nJudgements:" if judgements else "\nJudgements: none yet")
    if judgements:
        _table_indented(
            ["AT", "STEP", "WEIGHT", "VERDICT", "SAMPLES", "SUCCESS", "P95", "WINDOW", "REASONS"],
            [
                [
                    _shown_time(j["at"]),
                    str(j["step"] + 1) if found["steps"] else "-",
                    f"{j['weight']}%",
                    j["verdict"],
                    f"{j['samples']} ({j['successes']} ok)",
                    _rate(j["successRate"]),
                    _ms(j["p95LatencyMs"]),
                    f"{j['windowS']:g} s",
                    _clipped("; ".join(j["reasons"]), 120) or "-",
                ]
                for j in judgements
            ],
        )
    if found["rollbackCommit"]:
        click.echo(f"\nRollback commit: {found['rollbackCommit']}")
    if found["rollback"] == "RollbackPending":
        click.echo("")
        _pending(found.get("pending") or {})
    history = found.get("history") or []
    if history:
        click.echo("\nEarlier rollouts:")
        _table_indented(
            ["ROLLOUT", "PHASE", "ROLLBACK", "STABLE -> CANARY", "STARTED", "MESSAGE"],
            [
                [
                    str(h["rolloutId"]),
                    h["phase"],
                    h["rollback"] or "-",
                    f"{h['stableVersion']} -> {h['canaryVersion']}",
                    _shown_time(h["startedAt"]),
                    _clipped(h["message"], 80),
                ]
                for h in history
            ],
        )


def _pending(pending: dict[str, Any]) -> None:
    """What a RollbackPending rollout needs by hand."""
    click.echo(f"Rollback pending: {_clipped(str(pending.get('reason') or 'not pushed'), 300)}")
    click.echo("The commit to make by hand:")
    if pending.get("command"):
        click.echo(f"  {printable(str(pending['command']))}")
    if pending.get("revert"):
        click.echo(f"  or: {printable(str(pending['revert']))}")
    if pending.get("message"):
        click.echo("  with the message:")
        for line in str(pending["message"]).split("\n"):
            click.echo(f"    {printable(line)}".rstrip())
    if pending.get("diff"):
        click.echo("  and the diff:")
        for line in str(pending["diff"]).split("\n"):
            click.echo(f"    {printable(line)}".rstrip())


def _steps(found: dict[str, Any]) -> list[str]:
    if found["mode"] != "canary":
        return [f"100%  verified over the SLO window ({found['slo'].get('windowS')} s)"]
    shown = [
        f"{number}  {step['weight']:>3}%  then a pause of {step['pauseS']} s"
        for number, step in enumerate(found["steps"], start=1)
    ]
    return [*shown, f"{len(found['steps']) + 1}  100%  promotion: the canary becomes stable"]


def step_of(item: dict[str, Any]) -> str:
    if item["mode"] != "canary" or not item["steps"]:
        return "verify"
    return f"{min(item['step'] + 1, len(item['steps']))}/{len(item['steps'])}"


def slo_text(slo: dict[str, Any]) -> str:
    parts = [f"success rate >= {slo.get('minSuccessRate')}"]
    if slo.get("maxP95LatencyMs") is not None:
        parts.append(f"p95 <= {slo['maxP95LatencyMs']} ms")
    parts.append(f"at least {slo.get('minSamples')} calls")
    parts.append(f"over {slo.get('windowS')} s")
    return ", ".join(parts)


def age(iso: str | None, now: dt.datetime) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: how long ago ``iso`` was."""
    if iso is None:
        return ""
    seconds = max(0, int((now - dt.datetime.fromisoformat(iso)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _clipped(text: str, limit: int) -> str:
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _table_indented(headers: list[str], rows: list[list[str]]) -> None:
    shown = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in shown)]) for i, h in enumerate(headers)]
    for row in [headers, *shown]:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo(f"  {line}".rstrip())
