"""Read manifest files from folders and files on disk, without following links.

Called by `validating` (``grove validate PATH...``) and for plain-folder
sources. It reads bytes and reports what it refused (links, devices, files
over the size cap); it never parses YAML and never writes.

Folders are walked in sorted order, iteratively; only ``*.yaml`` and ``*.yml``
files are read, hidden entries (``.git``, ``.grove``) are skipped, and a
symbolic link anywhere is an error rather than a path to follow, so a
manifests folder can never pull in ``/etc/passwd`` or another tree.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from reconciler.base import diagnostics
from reconciler.base.diagnostics import Diagnostic
from reconciler.manifests.loading import Budget, Limits, SourceFile, check_size
from reconciler.sources import Delta, Entry, Listing

SUFFIXES = (".yaml", ".yml")


def read(paths: Sequence[str], limits: Limits) -> tuple[list[SourceFile], list[Diagnostic]]:
    """Files under ``paths`` (files or folders) and the problems met on the way."""
    files: list[SourceFile] = []
    found: list[Diagnostic] = []
    budget = Budget(limits)
    for name, refused in _walk(paths):
        if refused is not None:
            found.append(refused)
            continue
        data, unreadable = _read_capped(name, limits)
        if unreadable is not None:
            found.append(unreadable)
            continue
        assert data is not None
        over = budget.admit(name, len(data))
        if over is not None:
            found.append(over)
            break
        files.append(SourceFile(name, data))
    return files, found


def _walk(paths: Sequence[str]) -> Iterator[tuple[str, Diagnostic | None]]:
    for given in paths:
        name = _display(given)
        try:
            info = os.lstat(given)
        except FileNotFoundError:
            yield name, diagnostics.error(name, 1, "F007", "no such file or folder")
            continue
        except OSError as exc:
            yield name, diagnostics.error(name, 1, "F006", f"cannot read: {exc.strerror}")
            continue
        if stat.S_ISDIR(info.st_mode):
            yield from _walk_folder(given)
        else:
            problem = _refuse(name, info.st_mode)
            yield name, problem


def _walk_folder(root: str) -> Iterator[tuple[str, Diagnostic | None]]:
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            yield (
                _display(folder),
                diagnostics.error(
                    _display(folder), 1, "F006", f"cannot list folder: {exc.strerror}"
                ),
            )
            continue
        subfolders: list[str] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = _display(entry.path)
            if entry.is_symlink():
                yield name, _link_error(name)
            elif entry.is_dir(follow_symlinks=False):
                if (Path(entry.path) / ".git").exists() or (Path(entry.path) / ".git").is_symlink():
                    yield (
                        name,
                        diagnostics.error(
                            name,
                            1,
                            "F009",
                            "a git submodule or nested repository is not read; "
                            "commit the manifests themselves",
                        ),
                    )
                    continue
                subfolders.append(entry.path)
            elif entry.name.endswith(SUFFIXES):
                try:
                    mode = entry.stat(follow_symlinks=False).st_mode
                except OSError as exc:
                    yield name, diagnostics.error(name, 1, "F006", f"cannot read: {exc.strerror}")
                    continue
                yield name, _refuse(name, mode)
        pending.extend(reversed(subfolders))


def _refuse(name: str, mode: int) -> Diagnostic | None:
    if stat.S_ISLNK(mode):
        return _link_error(name)
    if not stat.S_ISREG(mode):
        return diagnostics.error(name, 1, "F008", "not a regular file (device, FIFO or socket)")
    return None


def _link_error(name: str) -> Diagnostic:
    return diagnostics.error(
        name, 1, "F003", "symbolic links are not followed; commit the file itself"
    )


def _read_capped(name: str, limits: Limits) -> tuple[bytes | None, Diagnostic | None]:
    """Read at most one byte more than the cap, so a huge file costs nothing."""
    try:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(name, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a link between listing and opening
            return None, _link_error(name)
        return None, diagnostics.error(name, 1, "F006", f"cannot read: {exc.strerror}")
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None, _refuse(name, info.st_mode)
        too_big = check_size(name, info.st_size, limits)
        if too_big is not None:
            return None, too_big
        data = handle.read(limits.max_file_bytes + 1)
    too_big = check_size(name, len(data), limits)
    if too_big is not None:
        return None, too_big
    return data, None


def _display(path: str) -> str:
    return Path(path).as_posix()


class FolderSource:
    """A plain folder without git, for local experiments.

    Its revision is a hash of the files' names and contents, so an unchanged
    folder is an unchanged revision. It has no history: force-push protection
    does not apply.
    """

    def __init__(self, root: str, limits: Limits) -> None:
        self.root = Path(root).resolve()
        self.limits = limits
        self._data: dict[str, bytes] = {}

    @property
    def description(self) -> str:
        return f"folder {self.root.as_posix()}"

    def fetch(self) -> None:
        return None

    def _scan(self, path: str) -> tuple[list[Entry], list[Diagnostic]]:
        base = self.root / path
        files, problems = read([str(base)], self.limits)
        entries = []
        self._data = {}
        for file in files:
            relative = Path(file.name).relative_to(self.root).as_posix()
            blob = hashlib.sha1(file.data, usedforsecurity=False).hexdigest()
            self._data[blob] = file.data
            entries.append(Entry(relative, blob, len(file.data)))
        return entries, problems

    def resolve(self, ref: str) -> str:
        del ref  # a folder has one state: now
        entries, _ = self._scan("")
        digest = hashlib.sha256()
        for entry in entries:
            digest.update(f"{entry.path}\0{entry.blob}\n".encode())
        return "folder-" + digest.hexdigest()[:40]

    def tree(self, revision: str, path: str) -> str | None:
        return self.list(revision, path).tree

    def list(self, revision: str, path: str) -> Listing:
        entries, problems = self._scan(path)
        digest = hashlib.sha256("".join(f"{e.path}\0{e.blob}\n" for e in entries).encode())
        return Listing(revision, digest.hexdigest()[:40], tuple(entries), tuple(problems))

    def read(self, entry: Entry) -> bytes:
        return self._data[entry.blob]

    def delta(self, old_tree: str, new_tree: str, path: str) -> Delta | None:
        return None  # a folder keeps no old trees: the reconciler lists it whole

    def is_ancestor(self, old: str, new: str) -> bool | None:
        return None

    def shares_history(self, old: str, new: str) -> bool | None:
        return None

    def close(self) -> None:
        return None
