"""``grove validate [PATH...] [-o text|json|github|markdown] [--list]`` and
``grove validate --ref R [--repo X]``.

Files and folders on disk by default; with ``--ref``, the manifests folder of that
commit, read from git objects as the reconciler reads them (the working tree is
not looked at). Exit 0 when every manifest is valid (warnings allowed), 1
otherwise. Touches no database; the network only to fetch a remote ``--repo``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from reconciler.base import errors
from reconciler.base.diagnostics import github_line, markdown_report, text_line
from reconciler.base.settings import Settings
from reconciler.cli.common import common_options, grove
from reconciler.cli.output import output_option
from reconciler.gitops import validating
from reconciler.manifests import kinds as manifests

JSON_SHAPE_VERSION = 1


@grove.command("validate")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@output_option(
    ("text", "json", "github", "markdown"),
    help_text="text for people, json for tools, github for workflow annotations, "
    "markdown for a pull-request comment.",
)
@click.option("--list", "show", is_flag=True, help="Also print the objects that were checked.")
@common_options
def validate_command(
    paths: tuple[str, ...],
    output: str,
    show: bool,
    settings: Settings,
) -> int:
    """Validate manifest files or folders (default: the manifests path), or with --ref
    the manifests of one commit of --repo (read from git, not the working tree)."""
    given = click.get_current_context().params  # the flags themselves, not the env
    if given.get("ref"):
        report = _validate_commit(paths, settings)
    else:
        default = str(Path(settings.repo) / settings.path) if given.get("repo") else settings.path
        report = validating.validate_paths(list(paths) or [default], settings)
    if output == "json":  # ASCII only: names and keys travel exact, in JSON's escapes
        click.echo(json.dumps(as_json(report), indent=2, ensure_ascii=True))
    elif output == "github":
        for item in report.diagnostics:
            click.echo(github_line(item))
        click.echo(summary(report))
    elif output == "markdown":
        title = f"Grove validate: {'valid' if report.ok else 'invalid'}"
        click.echo(markdown_report(title, report.diagnostics, summary(report)), nl=False)
    else:
        for item in report.diagnostics:
            click.echo(text_line(item), err=True)
        if show:
            for line in table(report):
                click.echo(line)
        click.echo(summary(report))
    return 0 if report.ok else 1


def _validate_commit(paths: tuple[str, ...], settings: Settings) -> validating.Report:
    """``--ref``: the commit's manifests folder, from git objects; PATHs are refused."""
    from reconciler.gitops import reconciling
    from reconciler.sources.git import GitSource

    if paths:
        raise errors.UsageError(
            "--ref validates the manifests folder (--path) of a commit; "
            "give PATH arguments without --ref"
        )
    source = reconciling.open_source(settings)
    try:
        if not isinstance(source, GitSource):
            raise errors.UsageError(
                f"--ref needs a git repository, and {settings.repo!r} is not one; "
                "pass --repo with the fleet repository, or drop --ref to validate files"
            )
        return validating.validate_revision(source, settings.ref, settings)
    finally:
        source.close()


def summary(report: validating.Report) -> str:
    kinds = ", ".join(f"{count} {kind}" for kind, count in report.counts_by_kind().items())
    head = f"checked {len(report.objects)} object(s)"
    if kinds:
        head += f" ({kinds})"
    head += f" in {report.files} file(s)"
    if report.revision:
        head += f" at {report.revision[:12]}"
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
        "revision": report.revision,
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
        "diagnostics": [d.to_json() for d in report.diagnostics],
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
