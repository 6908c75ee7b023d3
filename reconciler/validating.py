"""Validate manifests end to end: read, load, check; the engine of ``grove validate``.

Called by the CLI and, for pull-request previews, by later commands. A service:
it wires the folder source, the loader and the cross-object checks together
and returns a :class:`Report` for an entry point to render. It never touches a
database or the network.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Sequence

from reconciler import checking, diagnostics, loading
from reconciler.diagnostics import Diagnostic
from reconciler.settings import Settings
from reconciler.sources import folder


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    files: int
    objects: tuple[loading.Located, ...]
    diagnostics: tuple[Diagnostic, ...]

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
