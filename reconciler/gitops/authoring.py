"""Write-back through git: register, update, enable, disable and remove become commits.

The service behind the API's writes and the Python API's ``MultiModelRegistry``.
Every write edits manifest files in Grove's own clone of the fleet repository
(`sources.git.WorkTree`, never a user's working tree), checks the result the
way the reconciler will (validation, plan, safety) *before* committing, so a
refused change commits nothing, then commits with the caller as author, pushes,
and reconciles. Writes are serialized (a thread lock plus a file lock across
processes), so history stays linear and none is lost; a push rejected because
the remote moved is redone on the new head.

With review branches on (``Settings.review_branches``, ``grove serve
--review-branches``), a write passes the same checks but its commit goes to a
branch of its own, ``grove/review/<kind>-<id>-<sha>``, made from the fleet
branch's head and pushed for someone to review and merge; the fleet branch and
the registry stay as they were. A rollback is the exception: it exists to undo a
bad version now, so it always commits on the fleet branch and applies.
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
import textwrap
import threading
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, computed_field

from reconciler.base import errors, logs, serial
from reconciler.base.diagnostics import Diagnostic, printable
from reconciler.base.settings import Settings
from reconciler.gitops import reconciling
from reconciler.manifests import documents, loading, yamlsafe
from reconciler.manifests import kinds as manifests
from reconciler.planning import rollbacks
from reconciler.planning.plans import Plan
from reconciler.sources.folder import FolderSource
from reconciler.sources.git import WorkTree
from reconciler.store import registry, tokens
from reconciler.store.engine import Database

log = logging.getLogger("grove.authoring")

PUSH_ATTEMPTS = 8
HISTORY_LIMIT = 200  # commits of a file a rollback reads back through
REVIEW_PREFIX = "grove/review/"  # branches of writes pushed for review
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
class Preview:
    """What a write would commit and apply (a dry run): the commit message, the diff of
    the fleet repository, and the plan of applying it to the registry."""

    message: str
    diff: str
    plan: Plan


class WriteChange(StrEnum):
    """What a write changed: the ``change`` of every write's answer."""

    CREATED = "created"
    UPDATED = "updated"
    ENABLED = "enabled"
    DISABLED = "disabled"
    RETIRED = "retired"
    REMOVED = "removed"
    UNCHANGED = "unchanged"
    ROLLED_BACK = "rolled-back"  # a rollback's commit
    PENDING = "pending"  # git held a rollback already: only reconciled


class RollbackMethod(StrEnum):
    """How a rollback commits: a ``git revert`` of the commit it undoes, or a commit
    restoring the previous document."""

    REVERT = "revert"
    RESTORE = "restore"


class RollbackChange(StrEnum):
    """What a rollback did (see :class:`Rollback`): its answer's ``change``."""

    ROLLED_BACK = "rolled-back"
    DRY_RUN = "dry-run"
    NOTHING = "nothing"
    PENDING = "pending"
    COMMITTED = "committed"
    UNCHANGED = "unchanged"


@dataclasses.dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did. ``revision`` is its commit (or the head, when nothing changed);
    ``branch`` names the branch it was pushed to for review, None when it was committed
    on the fleet branch (review branches off, or a rollback)."""

    revision: str
    object: manifests.GroveObject | None
    change: WriteChange
    applied: bool
    detail: str
    preview: Preview | None = None
    branch: str | None = None


class Invalid(errors.PermanentError):
    """The change would leave invalid manifests; ``diagnostics`` say where."""

    def __init__(self, diagnostics: tuple[Diagnostic, ...], *, at_head: bool = False) -> None:
        errors_ = [d for d in diagnostics if d.is_error]
        super().__init__(
            f"the fleet repository's head has {len(errors_)} manifest error(s) already, not "
            "this change's: fix them first (nothing can be applied until then); nothing "
            "was committed"
            if at_head
            else f"the change would leave {len(errors_)} manifest error(s)"
        )
        self.diagnostics = tuple(errors_)
        self.at_head = at_head


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
    """What a rollback did or, dry, would do. ``change`` is ``rolled-back`` (committed and
    applied), ``dry-run``, ``nothing`` (the version to return to is live already:
    ``detail`` says since when), ``pending`` (git holds it already, not applied: a revert
    by hand), ``committed`` (not applied yet: nothing quarantined) or ``unchanged``.
    ``method`` is ``revert`` (a ``git revert`` of ``undoes``) or ``restore`` (a commit
    restoring the previous document, naming ``undoes`` when it is known)."""

    __pydantic_config__ = serial.CAMEL
    _json_order = serial.key_order(
        "kind",
        "id",
        "change",
        "fromVersion",
        "toVersion",
        "method",
        "undoes",
        "detail",
        "revision",
        "applied",
        "quarantined",
        "refused",
        "message",
        "diff",
        "plan",
        "liveSince",
        "revertedIn",
    )

    kind: str
    ident: Annotated[str, Field(alias="id")]
    change: RollbackChange
    from_version: str
    to_version: str
    method: RollbackMethod | None
    undoes: str | None
    detail: str
    result: Annotated[WriteResult | None, Field(exclude=True)] = None
    preview: Annotated[Preview | None, Field(exclude=True)] = None
    live_since: str | None = None  # nothing to roll back: the apply that made it live
    reverted_in: str | None = None  # ... and the commit that brought it back

    @computed_field  # type: ignore[prop-decorator]
    @property
    def revision(self) -> str | None:
        """The commit that rolled back, if one was made."""
        return self.result.revision if self.result else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def applied(self) -> bool:
        return self.result.applied if self.result else False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def quarantined(self) -> list[str]:
        """The version a committed and applied rollback quarantined."""
        return [self.from_version] if self.change is RollbackChange.ROLLED_BACK else []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def refused(self) -> bool:
        return bool(self.preview and self.preview.plan.violations)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def message(self) -> str | None:
        """The commit message the preview shows."""
        return self.preview.message if self.preview else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def diff(self) -> str | None:
        return self.preview.diff if self.preview else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def plan(self) -> Plan | None:
        return self.preview.plan if self.preview else None

    def to_json(self) -> dict[str, Any]:
        return serial.dump(self)


class _NothingToRollBack(Exception):
    """Private control flow, outside the error tree on purpose: a rollback found the
    version to return to live already; :meth:`Authoring.rollback` catches it and answers
    the :class:`Rollback` it carries (a success, not an error)."""

    def __init__(self, rollback: Rollback) -> None:
        super().__init__(rollback.detail)
        self.rollback = rollback


Mutation = Callable[[Path, documents.Index], tuple[str, WriteChange, str, str]]


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
    """The one way the API and the console change the fleet: a checked commit to git.

    Every write takes ``dry_run``: it makes the same change in the work tree, checks it
    and answers its `Preview` (the commit message, the diff, the plan with the
    violations it would add), then discards it. The console shows that preview before
    an action, and commits the same call without ``dry_run``."""

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
        self,
        document: dict[str, Any],
        author: Author,
        *,
        force: bool = False,
        dry_run: bool = False,
    ) -> WriteResult:
        kind, ident = document["meta"]["type"], document["meta"]["id"]

        def mutate(root: Path, index: documents.Index) -> tuple[str, WriteChange, str, str]:
            if (kind, ident) in index:
                raise Conflict(f"{kind} {ident} already exists in {index[(kind, ident)].file.name}")
            target = root / self.settings.path / documents.FOLDERS[kind] / f"{ident}.yaml"
            if target.exists():
                raise Conflict(f"{target.name} already exists in the fleet repository")
            documents.write(target, [document], kind)
            version = document["meta"]["version"]
            return (
                f"grove: register {kind} {ident} (version {version})",
                WriteChange.CREATED,
                kind,
                ident,
            )

        return self._edit(mutate, author, force=force, dry_run=dry_run)

    def update(
        self,
        kind: str,
        ident: str,
        changes: dict[str, Any],
        author: Author,
        *,
        force: bool = False,
        dry_run: bool = False,
    ) -> WriteResult:
        """Merge ``changes`` (``payload`` fields, ``meta.labels``/``meta.version``) and bump
        the version when the content changed and no version was given."""

        def mutate(root: Path, index: documents.Index) -> tuple[str, WriteChange, str, str]:
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
                return "", WriteChange.UNCHANGED, kind, ident
            documents.replace(found, after, kind)
            version = after["meta"]["version"]
            return (
                f"grove: update {kind} {ident} (version {version})",
                WriteChange.UPDATED,
                kind,
                ident,
            )

        return self._edit(mutate, author, force=force, dry_run=dry_run, needs=(kind, ident))

    def set_state(
        self,
        ident: str,
        state: str,
        author: Author,
        *,
        kind: str | None = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> WriteResult:
        """enable / disable / retire a model, or enable / disable a rule (``state`` names it);
        ``kind`` limits it to one object type."""

        def mutate(root: Path, index: documents.Index) -> tuple[str, WriteChange, str, str]:
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
                return "", WriteChange.UNCHANGED, object_kind, ident
            documents.replace(found, after, object_kind)
            verb = {"enabled": "enable", "disabled": "disable", "retired": "retire"}[state]
            return f"grove: {verb} {object_kind} {ident}", WriteChange(state), object_kind, ident

        return self._edit(mutate, author, force=force, dry_run=dry_run, needs=(kind, ident))

    def remove(
        self, kind: str, ident: str, author: Author, *, force: bool = False, dry_run: bool = False
    ) -> WriteResult:
        def mutate(root: Path, index: documents.Index) -> tuple[str, WriteChange, str, str]:
            found = _find(index, kind, ident)
            documents.replace(found, None, kind)
            return f"grove: remove {kind} {ident}", WriteChange.REMOVED, kind, ident

        return self._edit(mutate, author, force=force, dry_run=dry_run, needs=(kind, ident))

    def rollback(
        self,
        ident: str,
        author: Author,
        *,
        kind: str = manifests.KIND_MODEL,
        to_version: str | None = None,
        force: bool = False,
        dry_run: bool = False,
        evidence: str | None = None,
    ) -> Rollback:
        """Return an object to the version live before the current one, as the registry
        applied them (`rollbacks.choose`), or to ``to_version``; then quarantine the
        version it returned from, and only that one.

        A rollback always commits on the fleet branch and is reconciled at once, review
        branches or not (``Settings.review_branches``): it is there to take a bad
        version out of service now, not after a review.

        When the commit that introduced the current version touched only this object
        (one file, no other document in it) and reverts cleanly to the version to return
        to with the state as it is now, the commit is a real ``git revert`` of it.
        Otherwise it is a commit restoring the object's document as it was live at that
        version, its state as it is now, naming the commit it undoes. Checked, committed,
        pushed and reconciled like every other write; ``dry_run`` stops before the commit,
        changes nothing and answers the message, the diff and the plan. ``evidence``
        (why, as an analysis found it) goes into the message as it is, after the body.
        """
        name = f"{kind} {ident}"
        chosen: list[tuple[str, str, RollbackMethod, str | None]] = []

        def mutate(root: Path, index: documents.Index) -> tuple[str, WriteChange, str, str]:
            found = _find(index, kind, ident)
            relative = found.file.relative_to(root).as_posix()
            with self.db.transaction() as connection:
                current = registry.live_version(connection, kind, ident)
                if current is None:
                    raise NotFound(f"{name} is not live in the registry; nothing to roll back")
                stretches = registry.live_versions(connection, kind, ident)
                applied = {
                    row["version"]: row for row in registry.version_history(connection, kind, ident)
                }
                quarantined = registry.quarantined_of(connection, kind, ident)
            decision = rollbacks.choose(
                stretches,
                current,
                to_version=to_version,
                applied=set(applied),
                quarantined=quarantined,
                name=name,
            )
            in_git = str(found.document["meta"]["version"])
            history = self._history(relative, kind, ident, until=lambda v: v not in (in_git, ""))
            leading = list(itertools.takewhile(lambda entry: entry[1] == in_git, history))
            # the commit that brought git's version: known when the file's history shows
            # the version before it (not a move, not a commit that did not parse)
            came = (
                leading[-1][0]
                if leading and len(history) > len(leading) and history[len(leading)][1]
                else None
            )
            introduced = came if in_git == current else None
            if isinstance(decision, rollbacks.Nothing):
                raise _NothingToRollBack(self._nothing(kind, ident, decision, introduced))
            good, bad = decision.to_version, decision.from_version
            target = applied[good]
            wanted = manifests.version_hash(
                documents.normal({"meta": target["meta"], "payload": target["payload"]})
            )
            if in_git == good and manifests.version_hash(documents.normal(found.document)) == (
                wanted
            ):  # reverted in git already (by hand), not applied yet
                raise _NothingToRollBack(
                    Rollback(
                        kind,
                        ident,
                        RollbackChange.PENDING,
                        bad,
                        good,
                        None,
                        None,
                        _held(good, name, came) + f"; version {bad} is still live",
                        reverted_in=came,
                    )
                )
            method = RollbackMethod.REVERT
            if introduced is None or not self._revertible(
                introduced, relative, kind, ident, history[len(leading) :], wanted
            ):
                method = RollbackMethod.RESTORE
            elif not self.tree.revert(introduced) or _version_in(
                self.tree.path / relative, kind, ident, self.settings.max_depth
            ) != (good, wanted, manifests.state_of(documents.normal(found.document))):
                self.tree.discard()
                method = RollbackMethod.RESTORE
            if method is RollbackMethod.RESTORE:
                restored = self._document_at(relative, kind, ident, good, wanted) or {
                    "meta": copy.deepcopy(target["meta"]),
                    "payload": copy.deepcopy(target["payload"]),
                }
                field = manifests.STATE_FIELDS[kind]
                if field in found.document["payload"]:  # the state stays as it is now
                    restored["payload"][field] = found.document["payload"][field]
                else:
                    restored["payload"].pop(field, None)
                documents.replace(found, restored, kind)
            chosen[:] = [(bad, good, method, introduced)]
            pending = in_git if in_git not in (current, good) else None
            return (
                _rollback_message(
                    kind,
                    ident,
                    bad,
                    good,
                    method,
                    introduced,
                    printable(self._subject(introduced)),
                    pending=pending,
                    evidence=evidence,
                ),
                WriteChange.ROLLED_BACK,
                kind,
                ident,
            )

        try:
            result = self._write(mutate, author, force=force, dry_run=dry_run, strict=True)
        except _NothingToRollBack as nothing:
            if nothing.rollback.change is RollbackChange.PENDING and not dry_run:
                return self._apply_pending(nothing.rollback, author, force=force)
            return nothing.rollback
        ((bad, good, method, introduced),) = chosen
        if dry_run:
            with self.db.transaction() as connection:
                frozen = registry.suspension(connection).suspended
            return Rollback(
                kind,
                ident,
                RollbackChange.DRY_RUN,
                bad,
                good,
                method,
                introduced,
                "dry run: nothing was committed, applied or quarantined"
                + ("; a change freeze holds: the rollback itself needs force" if frozen else ""),
                preview=result.preview,
            )
        if result.change is not WriteChange.ROLLED_BACK or not result.applied:
            # nothing committed, or committed and not applied: the version rolled back
            # from is still live, so it is not quarantined (nor is an event recorded)
            said = (
                f"committed in {result.revision[:12]}, not applied yet ({result.detail}); "
                f"version {bad} is still live and not quarantined"
                if result.change is WriteChange.ROLLED_BACK
                else "nothing to commit: the fleet repository holds that already"
            )
            change = (
                RollbackChange.COMMITTED
                if result.change is WriteChange.ROLLED_BACK
                else RollbackChange(result.change)  # unchanged
            )
            return Rollback(kind, ident, change, bad, good, method, introduced, said, result)
        with self.db.transaction(write=True) as connection:
            registry.quarantine(
                connection, kind, ident, bad, f"rolled back to {good} by {author.name}"
            )
            registry.record_event(
                connection,
                f"{_EVENT_PREFIX[kind]}_rolled_back",
                kind,
                ident,
                version_from=bad,
                version_to=good,
                revision=result.revision,
                actor=author.name,
                details={"method": method, "undoes": introduced, "quarantined": bad},
            )
        logs.event(log, "rolled-back", kind=kind, id=ident, version=good, quarantined=bad)
        return Rollback(
            kind,
            ident,
            RollbackChange.ROLLED_BACK,
            bad,
            good,
            method,
            introduced,
            result.detail,
            result,
        )

    def _apply_pending(self, pending: Rollback, author: Author, *, force: bool) -> Rollback:
        """Git already holds the version to return to (a revert by hand, not applied yet):
        nothing to commit; reconcile, so that the version in git is live."""
        live, reason = self._reconciled(pending.kind, pending.ident, author, force=force)
        if live is not None and live.meta.version == pending.to_version:
            held = _held(pending.to_version, f"{pending.kind} {pending.ident}", pending.reverted_in)
            detail = f"{held}; version {pending.from_version} was live; applied now"
            return dataclasses.replace(pending, change=RollbackChange.NOTHING, detail=detail)
        why = reason or f"version {pending.to_version} is not live"
        detail = f"{pending.detail}; not applied: {why}; run `grove status`"
        return dataclasses.replace(pending, detail=detail)

    def _nothing(
        self, kind: str, ident: str, decision: rollbacks.Nothing, introduced: str | None
    ) -> Rollback:
        since = f" since {decision.revision[:12]}" if decision.revision else ""
        how = ""
        if decision.returned and introduced is not None:
            how = f" (reverted in {introduced[:12]})"
        elif decision.returned:
            how = " (returned to by an earlier change)"
        detail = f"nothing to roll back: version {decision.version} is live{since}{how}"
        return Rollback(
            kind,
            ident,
            RollbackChange.NOTHING,
            decision.version,
            decision.version,
            None,
            None,
            detail,
            live_since=decision.revision,
            reverted_in=introduced if decision.returned else None,
        )

    def _subject(self, commit: str | None) -> str:
        return self.tree.subject(commit) if commit else ""

    def _revertible(
        self,
        commit: str,
        relative: str,
        kind: str,
        ident: str,
        before: list[tuple[str, str, dict[str, Any]]],
        wanted: str,
    ) -> bool:
        """Whether reverting ``commit`` is exactly the rollback: it has one parent, changed
        only ``relative``, and in it only this object, which it had at the version to
        return to (``before`` is the file's history before ``commit``)."""
        if len(self.tree.parents(commit)) != 1 or self.tree.changed_files(commit) != [relative]:
            return False
        if not before or manifests.version_hash(documents.normal(before[0][2])) != wanted:
            return False
        return _others(self.tree.file_at(commit, relative), kind, ident, self.settings) == (
            _others(self.tree.file_at(before[0][0], relative), kind, ident, self.settings)
        )

    def _document_at(
        self, relative: str, kind: str, ident: str, version: str, wanted: str
    ) -> dict[str, Any] | None:
        """The object's document as git last held it with the content live at ``version``
        (the author's own fields, not the registry's filled-in ones), or None."""
        history = self._history(relative, kind, ident, until=lambda v: v == version)
        for _, found, document in history:
            if found == version and manifests.version_hash(documents.normal(document)) == wanted:
                return copy.deepcopy(document)
        return None

    def _history(
        self, relative: str, kind: str, ident: str, *, until: Callable[[str], bool]
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """(commit, version, document) of the object in ``relative``, newest first, for as
        long as that file holds it, ending with the first version ``until`` accepts; a
        commit where the file did not parse is an entry with version ``""``."""
        found: list[tuple[str, str, dict[str, Any]]] = []
        # one `git show` a commit, under the write lock: a file with thousands of commits
        # of one version is not walked to its start (the registry holds every version)
        for commit in self.tree.file_history(relative, limit=HISTORY_LIMIT):
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
            except yamlsafe.YamlRefused:  # a broken commit of the file: look further back,
                found.append((commit, "", {}))  # noted: it may be where a version came in
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

    def _edit(
        self,
        mutate: Mutation,
        author: Author,
        *,
        force: bool,
        dry_run: bool,
        needs: tuple[str | None, str] | None = None,
    ) -> WriteResult:
        """An operator's edit (register, update, set_state, remove): :meth:`_write`, to a
        review branch when the settings ask for one."""
        review = self.settings.review_branches
        return self._write(mutate, author, force=force, dry_run=dry_run, review=review, needs=needs)

    def _write(
        self,
        mutate: Mutation,
        author: Author,
        *,
        force: bool = False,
        dry_run: bool = False,
        strict: bool = False,
        review: bool = False,
        needs: tuple[str | None, str] | None = None,
    ) -> WriteResult:
        """Make the change ``mutate`` makes in a fresh work tree, check it, commit, push and
        reconcile; ``dry_run`` stops after the check (a change freeze does not stop it),
        discards the change and answers its `Preview`. A write is refused for the
        violations it adds to the head's; a ``strict`` one (a rollback, which must be
        applied at once to be worth anything) for every violation of the revision it
        would make, the head's included, since the reconcile after it applies all.
        ``review`` pushes the checked commit to a branch of its own instead
        (`_push_for_review`), and reconciles nothing. ``needs`` names the object
        (kind, or None for a model or a rule, and id) the change is to: unknown at the
        head, it is `NotFound` before the head is planned (``mutate`` would say the same)."""
        with self._serialized():
            overridden = None if dry_run else self._freeze(force=force)
            for _ in range(PUSH_ATTEMPTS):
                self.tree.prepare()
                index = None
                if needs is not None:
                    index = documents.index(
                        self.tree.path / self.settings.path, max_depth=self.settings.max_depth
                    )
                    _require(index, *needs)
                head = self._checker().plan()
                if head.plan is None and strict:  # refused before any work: never applied
                    raise Invalid(head.diagnostics, at_head=True)
                baseline = (
                    None
                    if head.plan is None
                    else frozenset()
                    if strict
                    else frozenset((v.code, v.message) for v in head.plan.violations)
                )
                if index is None:
                    index = documents.index(
                        self.tree.path / self.settings.path, max_depth=self.settings.max_depth
                    )
                message, change, kind, ident = mutate(self.tree.path, index)
                if change is WriteChange.UNCHANGED:
                    self.tree.discard()
                    return WriteResult(
                        self.tree.head(),
                        documents.current(index, kind, ident),
                        change,
                        True,
                        "nothing to change",
                    )
                if dry_run:
                    preview = Preview(message, self.tree.staged_diff(), self._checked(baseline))
                    self.tree.discard()
                    return WriteResult(
                        self.tree.head(), None, change, False, "dry run", preview=preview
                    )
                self._check(force=force, baseline=baseline)
                if overridden is not None:
                    message += _override_note(message, overridden, author)
                sha = self.tree.commit(message, author=author.name, email=author.email)
                if sha is None:
                    return WriteResult(
                        self.tree.head(), None, WriteChange.UNCHANGED, True, "nothing to change"
                    )
                if review:
                    return self._push_for_review(sha, kind, ident, change, author)
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

    def _push_for_review(
        self, sha: str, kind: str, ident: str, change: WriteChange, author: Author
    ) -> WriteResult:
        """Push the commit ``sha`` (made on the fleet branch's head in the work tree) to a
        branch of its own; the fleet branch and the registry are left as they are. One
        attempt: a new branch does not race the fleet branch, and its name holds the
        commit, so no two writes share one. The object answered is the one live now."""
        branch = review_branch(kind, ident, sha)
        self.tree.push_branch(branch)
        logs.event(
            log,
            "pushed-for-review",
            revision=sha[:12],
            branch=branch,
            change=change,
            kind=kind,
            id=ident,
            author=author.name,
        )
        target = self.tree.branch or "the fleet branch"
        detail = (
            f"pushed branch {branch} for review; not applied: it applies once the branch "
            f"is merged into {target}"
        )
        return WriteResult(sha, self._live(kind, ident), change, False, detail, branch=branch)

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

    def _checked(self, baseline: frozenset[tuple[str, str]] | None) -> Plan:
        """The plan of the edited work tree against the registry, its violations only those
        this change adds to what the head is already refused for (``baseline``; None when
        the head's manifests are invalid); `Invalid` (the work tree discarded) when the
        edit leaves invalid manifests, saying whose errors they are."""
        outcome = self._checker().plan()
        if outcome.plan is None:
            self.tree.discard()
            raise Invalid(outcome.diagnostics, at_head=baseline is None)
        plan = outcome.plan
        added = tuple(v for v in plan.violations if (v.code, v.message) not in (baseline or ()))
        return dataclasses.replace(plan, violations=added)

    def _check(self, *, force: bool, baseline: frozenset[tuple[str, str]] | None) -> None:
        """Refuse what this change would add to the violations the head already has,
        unless forced; the work tree is discarded when refused."""
        plan = self._checked(baseline)
        if plan.violations and not force:
            self.tree.discard()
            raise Refused(plan)

    def _reconcile(
        self, sha: str, kind: str, ident: str, change: WriteChange, author: Author, *, force: bool
    ) -> WriteResult:
        obj, reason = self._reconciled(kind, ident, author, force=force)
        if reason is None:
            return WriteResult(sha, obj, change, True, "applied")
        return WriteResult(sha, obj, change, False, f"committed; {reason}")

    def _reconciled(
        self, kind: str, ident: str, author: Author, *, force: bool
    ) -> tuple[manifests.GroveObject | None, str | None]:
        """Reconcile now: the object as live afterwards, and why git is not live (None:
        it is)."""
        source = reconciling.open_source(self.settings)
        reconciler = reconciling.Reconciler(self.settings, source, self.db)
        try:
            outcome = reconciler.reconcile(actor=f"api:{author.name}", force=force)
        except errors.GroveError as exc:
            return None, f"not applied yet: {exc}"
        obj = self._live(kind, ident)
        return obj, None if outcome.state.live else f"the reconciler said {outcome.state}"

    def _live(self, kind: str, ident: str) -> manifests.GroveObject | None:
        """The object as the registry holds it now, or None."""
        with self.db.transaction() as connection:
            live = registry.load_object(connection, kind, ident)
        if live is None:
            return None
        return manifests.parse_document(
            live.document, allow_local_endpoints=self.settings.allow_local_endpoints
        )


def _held(version: str, name: str, reverted_in: str | None) -> str:
    """A rollback with nothing to commit: git already holds the version to return to."""
    came = f" (reverted in {reverted_in[:12]})" if reverted_in else ""
    return f"nothing to commit: git already holds version {version} of {name}{came}"


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


def _require(index: documents.Index, kind: str | None, ident: str) -> None:
    """`NotFound` unless the object is in ``index`` (a model or a rule when ``kind`` is
    None), in the words of `_find`."""
    if kind is None and (manifests.KIND_MODEL, ident) in index:
        return
    _find(index, kind or manifests.KIND_RULE, ident)


_EVENT_PREFIX = {manifests.KIND_MODEL: "model", manifests.KIND_RULE: "rule"}


def review_branch(kind: str, ident: str, sha: str) -> str:
    """The branch a write for review is pushed to: ``grove/review/model-alpha-1a2b3c4d``
    (``rule-...`` for a routing rule), the same for the same commit. An id is lower case
    letters, digits and hyphens, so the name is a valid git branch."""
    prefix = _EVENT_PREFIX.get(kind, kind.lower())
    return f"{REVIEW_PREFIX}{prefix}-{ident}-{sha[:8]}"


def _rollback_message(
    kind: str,
    ident: str,
    bad: str,
    good: str,
    method: RollbackMethod,
    undoes: str | None,
    subject: str,
    *,
    pending: str | None = None,
    evidence: str | None = None,
) -> str:
    """A rollback's commit message: a ``git revert``'s own "This reverts commit" line when
    it is one, else which document it restores and which commit it undoes; then the
    ``evidence``, unwrapped (its lines are figures)."""
    head = f"grove: rollback {kind} {ident} to version {good} (from {bad})"
    named = f'{undoes[:12]} ("{subject}")' if undoes else ""
    if method is RollbackMethod.REVERT and undoes:
        body = (
            f"This reverts commit {undoes}.\n\n{named} introduced version {bad} and "
            f"touched nothing else; version {bad} is quarantined."
        )
    else:
        undone = (
            f"It undoes {named}, which introduced version {bad}, for {ident} only"
            if undoes
            else f"The commit that introduced version {bad} is not known (the file's "
            "history does not show it: a move, or a commit that did not parse)"
        )
        replaced = (
            f" Git held version {pending}, never applied; it is replaced too." if pending else ""
        )
        body = (
            f"Restores {ident} as it was live at version {good}, its state as it is now. "
            f"{undone}; version {bad} is quarantined.{replaced}"
        )
    paragraphs = [textwrap.fill(part, width=72) for part in body.split("\n\n")]
    if evidence:
        paragraphs.append(evidence.strip())
    return "\n\n".join([head, *paragraphs])


def _others(text: str | None, kind: str, ident: str, settings: Settings) -> object:
    """Every other object document of a file's text, to tell whether a commit changed
    only one; a text that does not parse is unlike every other."""
    if text is None:
        return None
    try:
        found = documents.objects(text, max_depth=settings.max_depth)
    except yamlsafe.YamlRefused:
        return object()
    return [(key, value) for _, key, value in found if key != (kind, ident)]


def _version_in(path: Path, kind: str, ident: str, max_depth: int) -> tuple[str, str, str] | None:
    """(version, content hash, state) of the object in the file at ``path`` now, or None."""
    try:
        found = documents.objects(path.read_text(encoding="utf-8"), max_depth=max_depth)
    except (OSError, UnicodeDecodeError, yamlsafe.YamlRefused):
        return None
    for _, key, value in found:
        if key == (kind, ident):
            meta = value.get("meta") or {}
            normal = documents.normal(value)
            return (
                str(meta.get("version")),
                manifests.version_hash(normal),
                manifests.state_of(normal),
            )
    return None
