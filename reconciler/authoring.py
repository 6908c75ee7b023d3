"""Write-back through git: register, update, enable, disable and remove become commits.

The service behind the API's writes and the Python API's ``MultiModelRegistry``.
Every write edits manifest files in Grove's own clone of the fleet repository
(`sources.git.WorkTree`, never a user's working tree), checks the result the
way the reconciler will (validation, plan, safety) *before* committing, so a
refused change commits nothing, then commits with the caller as author, pushes,
and reconciles. Writes are serialized (a thread lock plus a file lock across
processes), so history stays linear and none is lost; a push rejected because
the remote moved is redone on the new head.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import hashlib
import itertools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from reconciler import documents, errors, loading, logs, manifests, reconciling, yamlsafe
from reconciler.diagnostics import Diagnostic
from reconciler.plans import Plan
from reconciler.settings import Settings
from reconciler.sources.folder import FolderSource
from reconciler.sources.git import WorkTree
from reconciler.store import registry, tokens
from reconciler.store.engine import Database

log = logging.getLogger("grove.authoring")

PUSH_ATTEMPTS = 8
_INTEGER = re.compile(r"[0-9]+")


@dataclasses.dataclass(frozen=True, slots=True)
class Author:
    name: str
    email: str

    @classmethod
    def of(cls, name: str) -> Author:
        """The git identity of a token's holder or a command's user. A token name (they
        match ``tokens.NAME``) is used as it is. Anything else (``cli:user@host``, a token
        named before names were checked) is reduced to the same characters and marked
        with a hash of the whole name after a ``~``, which no token name has: two callers
        never share an author (``rt operator`` and ``rt-operator`` once did)."""
        if tokens.NAME.fullmatch(name):
            safe = name
        else:
            digest = hashlib.sha256(name.encode()).hexdigest()[:8]
            safe = f"{re.sub(r'[^A-Za-z0-9._-]', '-', name)[:55]}~{digest}"
        return cls(name=safe, email=f"{safe}@users.grove.invalid")


@dataclasses.dataclass(frozen=True, slots=True)
class WriteResult:
    revision: str
    object: manifests.GroveObject | None
    change: (
        str  # "created" | "updated" | "enabled" | "disabled" | "retired" | "removed" | "unchanged"
    )
    applied: bool
    detail: str


class Invalid(errors.PermanentError):
    """The change would leave invalid manifests; ``diagnostics`` say where."""

    def __init__(self, diagnostics: tuple[Diagnostic, ...]) -> None:
        errors_ = [d for d in diagnostics if d.is_error]
        super().__init__(f"the change would leave {len(errors_)} manifest error(s)")
        self.diagnostics = tuple(errors_)


class Refused(errors.PermanentError):
    """Safety checks refused the change; nothing was committed."""

    def __init__(self, plan: Plan) -> None:
        codes = ", ".join(sorted({v.code for v in plan.violations}))
        super().__init__(f"safety checks refused the change ({codes}); nothing was committed")
        self.plan = plan


class Conflict(errors.PermanentError):
    """The object already exists (register) or the request contradicts the repository."""


class NotFound(errors.PermanentError):
    """No manifest defines that object."""


class Suspended(errors.PermanentError):
    """A change freeze (``grove suspend``) holds: nothing is committed until
    ``grove resume``, unless an admin forces the write."""

    def __init__(self, freeze: registry.Suspension) -> None:
        since = f" since {freeze.since}" if freeze.since else ""
        by = f" (by {freeze.by})" if freeze.by else ""
        super().__init__(
            f"a change freeze holds: the registry is suspended{since}{by}; nothing was "
            "committed. Lift it with `grove resume`, or force this one change (an "
            "admin's ?force=true over the API, --force on the command line)"
        )
        self.freeze = freeze


@dataclasses.dataclass(frozen=True, slots=True)
class Rollback:
    result: WriteResult
    from_version: str
    to_version: str


def _rollback_target(
    history: list[tuple[str, str, dict[str, Any]]],
    current: str,
    to_version: str | None,
    kind: str,
    ident: str,
    relative: str,
) -> tuple[str, str, dict[str, Any]]:
    """The newest history entry with the version to go back to."""
    if to_version == current:
        raise Conflict(f"{kind} {ident} is at version {current} already")
    older = [entry for entry in history if entry[1] != current]
    if to_version is None:
        if not older:
            raise NotFound(
                f"{kind} {ident} has had no other version than {current} in {relative}; "
                "nothing to roll back to"
            )
        return older[0]
    for entry in older:
        if entry[1] == to_version:
            return entry
    seen = ", ".join(dict.fromkeys(v for _, v, _ in history))
    raise NotFound(f"{kind} {ident} never had version {to_version} in {relative} (seen: {seen})")


Mutation = Callable[[Path, documents.Index], tuple[str, str, str, str]]


def _is_branch(ref: str) -> bool:
    return ref != "HEAD" and not re.fullmatch(r"[0-9a-f]{7,40}", ref) and "~" not in ref


def bump(version: str, used: Iterable[str] = ()) -> str:
    """The next version, never one of ``used`` (every version the object ever had applied
    or quarantined). An integer goes above every integer used: ``4`` -> ``5``, or ``3``
    after a revert from ``3`` to ``1``. Anything else steps until unused: ``1.10`` ->
    ``1.11``, ``beta`` -> ``beta-2`` -> ``beta-3``."""
    taken = set(used) | {version}
    if _INTEGER.fullmatch(version):
        return str(max(int(v) for v in taken if _INTEGER.fullmatch(v)) + 1)
    candidate = version
    while candidate in taken:
        match = re.match(r"^(.*?)(\d+)$", candidate)
        candidate = f"{match.group(1)}{int(match.group(2)) + 1}" if match else f"{candidate}-2"
    return candidate


class Authoring:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        digest = hashlib.sha256(settings.repo.encode()).hexdigest()[:12]
        self.tree = WorkTree(
            settings.repo,
            Path(settings.data_dir) / "authoring" / digest,
            timeout_s=settings.fetch_timeout_s,
        )
        if _is_branch(settings.ref):  # write where the reconciler reads
            self.tree.branch = settings.ref.removeprefix("refs/heads/")
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- operations

    def register(
        self, document: dict[str, Any], author: Author, *, force: bool = False
    ) -> WriteResult:
        kind, ident = document["meta"]["type"], document["meta"]["id"]

        def mutate(root: Path, index: documents.Index) -> tuple[str, str, str, str]:
            if (kind, ident) in index:
                raise Conflict(f"{kind} {ident} already exists in {index[(kind, ident)].file.name}")
            target = root / self.settings.path / documents.FOLDERS[kind] / f"{ident}.yaml"
            if target.exists():
                raise Conflict(f"{target.name} already exists in the fleet repository")
            documents.write(target, [document], kind)
            version = document["meta"]["version"]
            return f"grove: register {kind} {ident} (version {version})", "created", kind, ident

        return self._write(mutate, author, force=force)

    def update(
        self, kind: str, ident: str, changes: dict[str, Any], author: Author, *, force: bool = False
    ) -> WriteResult:
        """Merge ``changes`` (``payload`` fields, ``meta.labels``/``meta.version``) and bump
        the version when the content changed and no version was given."""

        def mutate(root: Path, index: documents.Index) -> tuple[str, str, str, str]:
            found = _find(index, kind, ident)
            before = copy.deepcopy(found.document)
            after = copy.deepcopy(found.document)
            meta_changes = dict(changes.get("meta") or {})
            documents.merge(after["payload"], changes.get("payload") or {})
            if "labels" in meta_changes:
                after["meta"]["labels"] = meta_changes["labels"]
            explicit = meta_changes.get("version")
            if explicit is not None:
                after["meta"]["version"] = explicit
            elif manifests.version_hash(documents.normal(after)) != manifests.version_hash(
                documents.normal(before)
            ):
                with self.db.transaction() as connection:
                    used = registry.versions_ever_used(connection, kind, ident)
                after["meta"]["version"] = bump(str(before["meta"]["version"]), used)
            if after == before:
                return "", "unchanged", kind, ident
            documents.replace(found, after, kind)
            version = after["meta"]["version"]
            return f"grove: update {kind} {ident} (version {version})", "updated", kind, ident

        return self._write(mutate, author, force=force)

    def set_state(
        self,
        ident: str,
        state: str,
        author: Author,
        *,
        kind: str | None = None,
        force: bool = False,
    ) -> WriteResult:
        """enable / disable / retire a model, or enable / disable a rule (``state`` names it);
        ``kind`` limits it to one object type."""

        def mutate(root: Path, index: documents.Index) -> tuple[str, str, str, str]:
            if kind is not None:
                found = _find(index, kind, ident)
                model = found if kind == manifests.KIND_MODEL else None
            else:
                model = index.get((manifests.KIND_MODEL, ident))
                found = model or _find(index, manifests.KIND_RULE, ident)
            object_kind = manifests.KIND_MODEL if model else manifests.KIND_RULE
            after = copy.deepcopy(found.document)
            if object_kind == manifests.KIND_MODEL:
                after["payload"]["state"] = state
            elif state == "retired":
                raise Conflict("routing rules are enabled or disabled, not retired")
            else:
                after["payload"]["enabled"] = state == "enabled"
            if (
                after == found.document
                or manifests.state_of(documents.normal(found.document)) == state
            ):
                return "", "unchanged", object_kind, ident
            documents.replace(found, after, object_kind)
            verb = {"enabled": "enable", "disabled": "disable", "retired": "retire"}[state]
            return f"grove: {verb} {object_kind} {ident}", state, object_kind, ident

        return self._write(mutate, author, force=force)

    def remove(self, kind: str, ident: str, author: Author, *, force: bool = False) -> WriteResult:
        def mutate(root: Path, index: documents.Index) -> tuple[str, str, str, str]:
            found = _find(index, kind, ident)
            documents.replace(found, None, kind)
            return f"grove: remove {kind} {ident}", "removed", kind, ident

        return self._write(mutate, author, force=force)

    def rollback(
        self,
        ident: str,
        author: Author,
        *,
        kind: str = manifests.KIND_MODEL,
        to_version: str | None = None,
        force: bool = False,
    ) -> Rollback:
        """Put an object back to an earlier version: by default the one before the version
        in git now, or ``to_version``; then quarantine the version it replaced.

        The object's document is restored as it was in the newest commit that had the
        target version, so this is the revert of the commits that introduced the later
        versions, limited to this object (other objects those commits changed are left
        alone). ``payload.state`` (``enabled`` for a rule) stays as it is now: state is
        operational, not part of a version. Written, checked, committed, pushed and
        reconciled like every other write.
        """
        found_versions: list[str] = []

        def mutate(root: Path, index: documents.Index) -> tuple[str, str, str, str]:
            found = _find(index, kind, ident)
            current = str(found.document["meta"]["version"])
            relative = found.file.relative_to(root).as_posix()
            history = self._history(
                relative,
                kind,
                ident,
                # walk back only as far as needed: to the version asked for, or to the
                # first version other than the current one
                until=(lambda v: v == to_version)
                if to_version is not None
                else (lambda v: v != current),
            )
            target = _rollback_target(history, current, to_version, kind, ident, relative)
            commit, version, document = target
            leading = list(itertools.takewhile(lambda entry: entry[1] == current, history))
            introduced = leading[-1][0][:12] if leading else "an earlier commit"
            restored = copy.deepcopy(document)
            field = manifests.STATE_FIELDS[kind]
            if field in found.document["payload"]:  # the state stays as it is now
                restored["payload"][field] = found.document["payload"][field]
            else:
                restored["payload"].pop(field, None)
            documents.replace(found, restored, kind)
            found_versions[:] = [current, version]
            message = (
                f"grove: rollback {kind} {ident} to version {version} (from {current})\n\n"
                f"Restores {ident} as it was in {commit[:12]}; version {current} came in "
                f"with {introduced} and is quarantined."
            )
            return message, "rolled-back", kind, ident

        result = self._write(mutate, author, force=force)
        bad, good = found_versions
        if result.change == "rolled-back":  # committed and pushed, applied or not yet
            with self.db.transaction(write=True) as connection:
                registry.quarantine(
                    connection, kind, ident, bad, f"rolled back to {good} by {author.name}"
                )
            logs.event(log, "rolled-back", kind=kind, id=ident, version=good, quarantined=bad)
        return Rollback(result, from_version=bad, to_version=good)

    def _history(
        self, relative: str, kind: str, ident: str, *, until: Callable[[str], bool]
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """(commit, version, document) of the object in ``relative``, newest first, for as
        long as that file holds it, ending with the first version ``until`` accepts."""
        found: list[tuple[str, str, dict[str, Any]]] = []
        for commit in self.tree.file_history(relative):
            text = self.tree.file_at(commit, relative)
            if text is None:
                break
            try:
                match = next(
                    (
                        value
                        for _, key, value in documents.objects(
                            text, max_depth=self.settings.max_depth
                        )
                        if key == (kind, ident)
                    ),
                    None,
                )
            except yamlsafe.YamlRefused:  # a broken commit of the file: look further back
                continue
            if match is None:
                break
            version = str(match["meta"].get("version"))
            found.append((commit, version, match))
            if until(version):
                break
        return found

    # ---------------------------------------------------------------- the write path

    @contextlib.contextmanager
    def _serialized(self) -> Iterator[None]:
        lock_path = self.tree.path.parent / f"{self.tree.path.name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write(self, mutate: Mutation, author: Author, *, force: bool = False) -> WriteResult:
        with self._serialized():
            overridden = self._freeze(force=force)
            for _ in range(PUSH_ATTEMPTS):
                self.tree.prepare()
                baseline = self._violations_at_head()
                index = documents.index(
                    self.tree.path / self.settings.path, max_depth=self.settings.max_depth
                )
                message, change, kind, ident = mutate(self.tree.path, index)
                if change == "unchanged":
                    self.tree.discard()
                    return WriteResult(
                        self.tree.head(),
                        documents.current(index, kind, ident),
                        change,
                        True,
                        "nothing to change",
                    )
                self._check(force=force, baseline=baseline)
                if overridden is not None:
                    message += _override_note(message, overridden, author)
                sha = self.tree.commit(message, author=author.name, email=author.email)
                if sha is None:
                    return WriteResult(
                        self.tree.head(), None, "unchanged", True, "nothing to change"
                    )
                if self.tree.push():
                    logs.event(
                        log,
                        "committed",
                        revision=sha[:12],
                        change=change,
                        kind=kind,
                        id=ident,
                        author=author.name,
                    )
                    if overridden is not None:
                        logs.event(
                            log,
                            "freeze-overridden",
                            level=logging.WARNING,
                            revision=sha[:12],
                            kind=kind,
                            id=ident,
                            author=author.name,
                            since=overridden.since,
                        )
                    return self._reconcile(sha, kind, ident, change, author, force=force)
                logs.event(log, "push-rejected", revision=sha[:12], reason="the remote moved")
            raise errors.SourceUnavailable(
                f"could not push after {PUSH_ATTEMPTS} attempts: the remote keeps moving"
            )

    def _freeze(self, *, force: bool) -> registry.Suspension | None:
        """Refuse the write while a change freeze holds (`Suspended`), unless forced;
        the freeze a forced write overrides, or None when there is none."""
        with self.db.transaction() as connection:
            freeze = registry.suspension(connection)
        if not freeze.suspended:
            return None
        if not force:
            raise Suspended(freeze)
        return freeze

    def _checker(self) -> reconciling.Reconciler:
        return reconciling.Reconciler(
            self.settings,
            FolderSource(str(self.tree.path), loading.Limits.of(self.settings)),
            self.db,
        )

    def _violations_at_head(self) -> frozenset[tuple[str, str]]:
        """What the fleet repository's head is already refused for (not this change's fault)."""
        outcome = self._checker().plan()
        if outcome.plan is None:
            return frozenset()
        return frozenset((v.code, v.message) for v in outcome.plan.violations)

    def _check(self, *, force: bool, baseline: frozenset[tuple[str, str]]) -> None:
        """Validate and plan the edited work tree against the registry; refuse what this
        change would add to the violations the head already has, unless forced."""
        outcome = self._checker().plan()
        if outcome.plan is None:
            self.tree.discard()
            raise Invalid(outcome.diagnostics)
        plan = outcome.plan
        added = tuple(v for v in plan.violations if (v.code, v.message) not in baseline)
        if added and not force:
            self.tree.discard()
            raise Refused(dataclasses.replace(plan, violations=added))

    def _reconcile(
        self, sha: str, kind: str, ident: str, change: str, author: Author, *, force: bool
    ) -> WriteResult:
        source = reconciling.open_source(self.settings)
        reconciler = reconciling.Reconciler(self.settings, source, self.db)
        try:
            outcome = reconciler.reconcile(actor=f"api:{author.name}", force=force)
        except errors.GroveError as exc:
            return WriteResult(sha, None, change, False, f"committed; not applied yet: {exc}")
        obj = None
        with self.db.transaction() as connection:
            live = registry.load_objects(connection).get((kind, ident))
        if live is not None:
            obj = manifests.parse_document(
                live.document, allow_local_endpoints=self.settings.allow_local_endpoints
            )
        applied = outcome.state in ("applied", "already-applied", "in-sync")
        detail = "applied" if applied else f"committed; the reconciler said {outcome.state}"
        return WriteResult(sha, obj, change, applied, detail)


def _override_note(message: str, freeze: registry.Suspension, author: Author) -> str:
    """What a forced commit during a change freeze says about it, in its message."""
    since = f" (suspended since {freeze.since})" if freeze.since else ""
    separator = "\n" if "\n\n" in message else "\n\n"
    return f"{separator}Change freeze overridden by {author.name} with force{since}."


def _find(index: documents.Index, kind: str, ident: str) -> documents.Located:
    found = index.get((kind, ident))
    if found is None:
        raise NotFound(f"no manifest defines {kind} {ident}")
    return found
