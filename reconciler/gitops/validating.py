"""Validate manifests end to end: read, load, check; the engine of ``grove validate``.

Called by the CLI (``grove validate [PATH...]`` and ``grove validate --ref R``).
A service: it wires a source (a folder on disk, or the git objects of one commit,
read as the reconciler reads them), the loader and the cross-object checks
together and returns a :class:`Report` for an entry point to render. It never
touches a database, and the network only to fetch a remote ``--repo``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Sequence

from reconciler.base import diagnostics
from reconciler.base.diagnostics import Diagnostic
from reconciler.base.settings import Settings
from reconciler.manifests import checking, loading
from reconciler.sources import Source, folder


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    files: int
    objects: tuple[loading.Located, ...]
    diagnostics: tuple[Diagnostic, ...]
    revision: str | None = None  # the commit validated, for ``--ref``; None for files

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if not d.is_error]

    @property
    def ok(self) -> bool:
        return not self.errors

    def counts_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(item.kind for item in self.objects).items()))


def validate_files(
    files: Sequence[loading.SourceFile],
    settings: Settings,
    *,
    today: dt.date | None = None,
    read_problems: Sequence[Diagnostic] = (),
) -> Report:
    """Load and check files that are already in memory (from disk, git or a request)."""
    loaded = loading.load(
        files, loading.Limits.of(settings), allow_local_endpoints=settings.allow_local_endpoints
    )
    if read_problems:
        loaded.complete = False
    found = [*read_problems, *loaded.diagnostics]
    found += checking.check(loaded, today or dt.datetime.now(dt.UTC).date())
    return Report(
        files=loaded.files + len(read_problems),
        objects=tuple(loaded.objects),
        diagnostics=tuple(diagnostics.ordered(found)),
    )


def validate_paths(
    paths: Sequence[str], settings: Settings, *, today: dt.date | None = None
) -> Report:
    """``grove validate PATH...``: read the files under ``paths`` and validate them."""
    files, problems = folder.read(paths, loading.Limits.of(settings))
    return validate_files(files, settings, today=today, read_problems=problems)


def validate_revision(
    source: Source, ref: str, settings: Settings, *, today: dt.date | None = None
) -> Report:
    """``grove validate --ref R``: the manifests folder (``settings.path``) of the commit
    ``ref`` names, read from git objects as the reconciler reads them (listing, size
    caps, symlinks and submodules refused), never from the working tree."""
    source.fetch()
    revision = source.resolve(ref)
    listing = source.list(revision, settings.path)
    limits = loading.Limits.of(settings)
    problems = list(listing.problems)
    if listing.tree is None:
        problems.append(
            diagnostics.error(
                settings.path,
                1,
                "F007",
                f"no folder {settings.path!r} at {revision[:12]}; pass --path with the "
                "folder that holds the manifests",
            )
        )
    files: list[loading.SourceFile] = []
    for entry in listing.entries:
        too_big = loading.check_size(entry.path, entry.size, limits)
        if too_big is not None:  # never read a blob past the cap
            problems.append(too_big)
            continue
        files.append(loading.SourceFile(entry.path, source.read(entry), entry.blob))
    report = validate_files(files, settings, today=today, read_problems=problems)
    return dataclasses.replace(report, revision=revision)
