"""Sources of desired state: git objects at a commit, or a plain folder.

Adapters: they read bytes from the outside world and hand them to `loading`.
A source lists the manifest files of a revision with a content id per file
(the git blob id), so the reconciler reads and parses only files that changed
since the last apply.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from reconciler.base.diagnostics import Diagnostic


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A manifest file at a revision: its path in the repository, blob id and size."""

    path: str
    blob: str
    size: int


@dataclasses.dataclass(frozen=True, slots=True)
class Listing:
    """The manifest files of one revision, and what was refused while listing them."""

    revision: str
    tree: str | None  # id of the manifests folder's tree; equal trees mean equal content
    entries: tuple[Entry, ...]
    problems: tuple[Diagnostic, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Delta:
    """The manifest files that differ between two trees of the manifests folder.

    ``paths`` are every changed manifest path (removed, added or modified);
    ``entries`` the files present in the new tree among them (``size`` -1: not known
    until read). Only files a listing would show count.
    """

    paths: tuple[str, ...]
    entries: tuple[Entry, ...]


class Source(Protocol):
    """Where desired state comes from."""

    @property
    def description(self) -> str:
        """A name for messages, with any credentials removed."""
        ...

    def fetch(self) -> None:
        """Bring remote history up to date (no-op for local sources)."""

    def resolve(self, ref: str) -> str:
        """The immutable revision ``ref`` points at now."""
        ...

    def tree(self, revision: str, path: str) -> str | None:
        """Content id of the manifests folder at ``revision`` (None when it does not exist)."""
        ...

    def list(self, revision: str, path: str) -> Listing:
        """Manifest files under ``path`` at ``revision``, without reading them."""
        ...

    def read(self, entry: Entry) -> bytes:
        """The bytes of one listed file."""
        ...

    def delta(self, old_tree: str, new_tree: str, path: str) -> Delta | None:
        """The manifest files that differ between two trees of the folder at ``path``
        (as :meth:`tree` returns them), in time proportional to the difference; None
        when the source cannot tell or a changed entry is one a listing refuses (a
        symbolic link, a submodule): then the caller lists everything."""
        ...

    def is_ancestor(self, old: str, new: str) -> bool | None:
        """Whether ``old`` is in the history of ``new``; None when the source has no history."""
        ...

    def shares_history(self, old: str, new: str) -> bool | None:
        """Whether ``old`` and ``new`` have a commit in common (False also when ``old`` is
        not in this repository at all); None when the source has no history."""
        ...

    def close(self) -> None:
        """End what the source keeps running (git's persistent readers); it may be used
        again afterwards, and starts them anew."""
