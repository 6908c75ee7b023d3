"""``grove validate [PATH...] [--format text|json|github] [--list]``.

Exit 0 when every manifest is valid (warnings allowed), 1 otherwise. Touches
no database and no network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from reconciler import manifests, validating
from reconciler.cli.common import FORMATS, common_options, grove
from reconciler.diagnostics import github_line, text_line
from reconciler.settings import Settings

JSON_SHAPE_VERSION = 1


@grove.command("validate")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for people, json for tools, github for workflow annotations.",
)
@click.option("--list", "show", is_flag=True, help="Also print the objects that were checked.")
@common_options
def validate_command(
    paths: tuple[str, ...],
    fmt: str,
    show: bool,
    settings: Settings,
) -> int:
    """Validate manifest files or folders (default: the manifests path)."""
    repo_given = click.get_current_context().params.get("repo")  # --repo itself, not the env
    default = str(Path(settings.repo) / settings.path) if repo_given else settings.path
    report = validating.validate_paths(list(paths) or [default], settings)
    if fmt == "json":  # ASCII only: names and keys travel exact, in JSON's escapes
        click.echo(json.dumps(as_json(report), indent=2, ensure_ascii=True))
    elif fmt == "github":
        for item in report.diagnostics:
            click.echo(github_line(item))
        click.echo(summary(report))
    else:
        for item in report.diagnostics:
            click.echo(text_line(item), err=True)
        if show:
            for line in table(report):
                click.echo(line)
        click.echo(summary(report))
    return 0 if report.ok else 1


def summary(report: validating.Report) -> str:
    kinds = ", ".join(f"{count} {kind}" for kind, count in report.counts_by_kind().items())
    head = f"checked {len(report.objects)} object(s)"
    if kinds:
        head += f" ({kinds})"
    head += f" in {report.files} file(s)"
    errors, warnings = len(report.errors), len(report.warnings)
    if report.ok:
        tail = "valid" + (f", {warnings} warning(s)" if warnings else "")
    else:
        tail = f"{errors} error(s), {warnings} warning(s)"
    return f"{head}: {tail}"


def as_json(report: validating.Report) -> dict[str, Any]:
    """The documented, stable shape of ``--format json`` (docs/validation.md)."""
    return {
        "version": JSON_SHAPE_VERSION,
        "valid": report.ok,
        "summary": {
            "files": report.files,
            "objects": len(report.objects),
            "byType": report.counts_by_kind(),
            "errors": len(report.errors),
            "warnings": len(report.warnings),
        },
        "objects": [
            {
                "type": item.kind,
                "id": item.id,
                "version": item.obj.meta.version,
                "file": item.file,
                "line": item.document.line,
            }
            for item in report.objects
        ],
        "diagnostics": [
            {
                "file": d.file,
                "line": d.line,
                "column": d.column,
                "code": d.code,
                "name": d.name,
                "severity": d.severity.value,
                "path": d.path,
                "message": d.message,
            }
            for d in report.diagnostics
        ],
    }


def table(report: validating.Report) -> list[str]:
    rows = [("TYPE", "ID", "VERSION", "STATE", "DETAIL")]
    for item in sorted(report.objects, key=lambda i: (i.kind, i.id)):
        obj = item.obj
        if isinstance(obj, manifests.AIModel):
            spec = obj.payload
            caps = " ".join(f"{c.value}={s:g}" for c, s in spec.capabilities.items())
            detail = f"{spec.provider.value} priority={spec.priority} {caps}"
            state = spec.state.value
        else:
            rule = obj.payload
            detail = f"task={rule.task_type} strategy={rule.strategy.value} requires=" + ",".join(
                c.value for c in rule.requires
            )
            state = "enabled" if rule.enabled else "disabled"
        rows.append((item.kind, item.id, obj.meta.version, state, detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
        for row in rows
    ]
