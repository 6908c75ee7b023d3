"""One reconcile cycle and its parts: fetch, desired state, plan, apply, status.

The service behind ``grove plan``, ``apply``, ``diff``, ``status`` and
``reconcile`` (and later the watch loop and the API). It wires a `sources`
adapter, the loader and checks, `diffing`, `safety`, `applying` and the store;
between calls it keeps only the last few valid fleets it checked (`Fleet`, by
tree) and the validated live objects (`livestate`).

A plan costs what the change costs, not what the fleet does:

- the revision, its tree and the registry as last applied: nothing is read;
- the registry untouched since it applied a tree this process keeps: git lists
  the files that differ between the two trees, only those are read, only their
  objects' live rows are loaded, and the cross-object checks look at what
  changed and what names it (`_plan_change`); anything unusual, any error
  found, plans the whole fleet instead, so the answer is always the whole
  fleet's;
- otherwise every file is listed and a file whose git blob is the one the live
  objects were applied from is not read or parsed again; its objects are taken
  from the registry (unless they drifted). When validation then finds an
  error, everything is re-read from git so the error can name its line.

``plan(full=True)`` and ``reconcile(full=True)`` take none of these shortcuts:
every file is read from git and checked against every live object (the watch
loop runs one periodically, so a wrong shortcut cannot hide for long).

An unexpected exception in a cycle (a bug, or an input no check caught) is
recorded like the planned failures: ``Stalled`` with reason ``UnexpectedError``
and the error's type and message (never a traceback: that goes to the log),
plus a ``reconcile_failed`` lifecycle event; then it is raised again for the
caller (the loop backs off and retries; a command reports it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from reconciler.base import diagnostics, errors
from reconciler.base.diagnostics import Diagnostic
from reconciler.base.settings import Settings
from reconciler.gitops import fleets
from reconciler.gitops.applying import apply as apply_plan
from reconciler.manifests import checking, loading, yamlsafe
from reconciler.manifests import kinds as manifests
from reconciler.planning import diffing, livestate, safety
from reconciler.planning import status as status_module
from reconciler.planning.livestate import Key, LiveObject, LiveState
from reconciler.planning.plans import Plan
from reconciler.sources import Delta, Entry, Listing, Source
from reconciler.sources.folder import FolderSource
from reconciler.sources.git import GitSource, is_remote
from reconciler.store import coordination, failpoints, migrating, registry, rollouts
from reconciler.store.engine import Database, redact

log = logging.getLogger("grove.reconcile")

UNEXPECTED = "UnexpectedError"  # the Stalled reason of a cycle that raised something unplanned
_MESSAGE_CAP = 300


def describe(exc: BaseException) -> str:
    """``Type: message`` on one short line, any URL password masked: what a condition, an
    event or a status line says of an unexpected error (the traceback goes to the log)."""
    text = diagnostics.printable(redact(" ".join(str(exc).split())))
    if len(text) > _MESSAGE_CAP:
        text = text[: _MESSAGE_CAP - 3] + "..."
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def open_source(settings: Settings) -> Source:
    """The git repository (local or remote) named by --repo, or a plain folder."""
    limits = loading.Limits.of(settings)
    location = settings.repo
    if is_remote(location):
        return GitSource(
            location, data_dir=settings.data_dir, limits=limits, timeout_s=settings.fetch_timeout_s
        )
    source = GitSource(location, data_dir=settings.data_dir, limits=limits)
    try:
        source.repo()
    except errors.SourceError:
        return FolderSource(location, limits)
    return source


def open_database(settings: Settings, *, require_schema: bool = True) -> Database:
    """The registry database. A command that needs its schema never creates its file (a
    mistyped ``--db`` must not leave an empty database behind: DESIGN section 5)."""
    db = Database(settings.db_url, create=not require_schema)
    if require_schema:
        try:
            db.require_file()
            migrating.require_current(db)
        except errors.GroveError:
            db.dispose()
            raise
    return db


@dataclasses.dataclass(frozen=True, slots=True)
class DesiredState:
    revision: str
    tree: str | None
    loaded: loading.LoadResult
    diagnostics: tuple[Diagnostic, ...]
    reused: dict[Key, LiveObject] = dataclasses.field(default_factory=dict)
    entries: tuple[Entry, ...] = ()  # the listing's files

    @property
    def objects(self) -> dict[Key, manifests.GroveObject]:
        return {(item.kind, item.id): item.obj for item in self.loaded.objects}

    def desired(self) -> dict[Key, diffing.Desired]:
        out: dict[Key, diffing.Desired] = {}
        for item in self.loaded.objects:
            key = (item.kind, item.id)
            live = self.reused.get(key)
            if live is not None:  # an unchanged file: its live content is git's content
                out[key] = diffing.Desired(
                    item.kind,
                    item.id,
                    live.version,
                    live.document,
                    item.file,
                    item.blob,
                    live.applied_hash,
                )
            else:
                out[key] = diffing.Desired.of(item.obj, item.file, item.blob)
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class PlanOutcome:
    """A plan, or the manifest errors that prevented one."""

    plan: Plan | None
    diagnostics: tuple[Diagnostic, ...]
    live: LiveState

    @property
    def invalid(self) -> bool:
        return self.plan is None


class Reconciler:
    """Plans and applies git at a ref onto one registry database."""

    def __init__(
        self,
        settings: Settings,
        source: Source,
        db: Database | None,
        *,
        today: dt.date | None = None,
        max_delete_ratio: float | None = None,
        holder: str | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.db = db
        # The reconcile loop's lease holder name; None for a one-off (a command, an API
        # call), which writes no status while a loop holds the lease: the loop's is shared.
        self.holder = holder
        self.today = today
        # the settings' (GROVE_MAX_DELETE_RATIO) unless a caller overrides it
        self.max_delete_ratio = (
            settings.max_delete_ratio if max_delete_ratio is None else max_delete_ratio
        )
        self.limits = loading.Limits.of(settings)

    # ---------------------------------------------------------------- desired

    def desired_state(self, revision: str, live: LiveState | None = None) -> DesiredState:
        listing = self.source.list(revision, self.settings.path)
        state = self._load(listing, live)
        if live is not None and any(d.is_error for d in state.diagnostics):
            state = self._load(listing, None)  # re-read everything so errors name lines
        return state

    def _load(
        self, listing: Listing, live: LiveState | None, reread: frozenset[str] = frozenset()
    ) -> DesiredState:
        """Read the listed files, but take from ``live`` those whose blob it was applied
        from (except the files in ``reread``)."""
        reusable = _reusable(listing, live) if live is not None else {}
        for path in reread:
            reusable.pop(path, None)
        files: list[loading.SourceFile] = []
        problems = list(listing.problems)
        for entry in listing.entries:
            if entry.path in reusable:
                continue
            if entry.size > self.limits.max_file_bytes:
                problem = loading.check_size(entry.path, entry.size, self.limits)
                assert problem is not None
                problems.append(problem)
                continue
            files.append(loading.SourceFile(entry.path, self.source.read(entry), entry.blob))
        loaded = loading.load(
            files, self.limits, allow_local_endpoints=self.settings.allow_local_endpoints
        )
        reused: dict[Key, LiveObject] = {}
        for entry, objects in reusable.values():
            for live_object in objects:
                try:
                    obj = livestate.parsed(
                        live_object, allow_local_endpoints=self.settings.allow_local_endpoints
                    )
                except ValidationError:
                    return self._load(listing, None)  # settings changed: validate from git
                document = yamlsafe.Document(0, 1, live_object.document, {}, {})
                loaded.objects.append(loading.Located(obj, entry.path, document, entry.blob))
                reused[live_object.key] = live_object
            loaded.files += 1
        if problems:
            loaded.complete = False
        loaded.objects.sort(key=lambda item: (item.file, item.document.index))
        found = [*problems, *loaded.diagnostics]
        return DesiredState(
            listing.revision, listing.tree, loaded, tuple(found), reused, listing.entries
        )

    # ---------------------------------------------------------------- plan

    def live(self) -> LiveState:
        assert self.db is not None
        # One snapshot for every table read: the state row and the objects must agree,
        # or a plan could pair the new applied revision with the old objects.
        with self.db.transaction(snapshot=True) as connection:
            return registry.load_live(connection)

    def resolve(self, ref: str | None = None) -> str:
        self.source.fetch()
        return self.source.resolve(ref or self.settings.ref)

    def plan(
        self, ref: str | None = None, *, revision: str | None = None, full: bool = False
    ) -> PlanOutcome:
        """The plan from the registry to ``revision``.

        Unless ``full``: nothing is read when the revision, its tree and the registry are
        those of the last apply; a change since a fleet this process has checked is
        planned from the files that changed (see :meth:`_plan_change`); otherwise
        unchanged files are taken from the registry. ``full`` reads and checks every file
        from git against every live object, whatever was kept.
        """
        revision = revision or self.resolve(ref)
        if not full:
            in_sync = self._unchanged_since_apply(revision)
            if in_sync is not None:
                return in_sync
            try:
                changed = self._plan_change(revision)
            except errors.GroveError:
                raise  # the database or git: the whole plan would meet the same
            except Exception:  # a shortcut's bug must not stop reconciling: plan it whole
                log.warning("the incremental plan failed; planning the whole fleet", exc_info=True)
                changed = None
            if changed is not None:
                return changed
        live = self.live()
        reuse = live if live.untouched and not full else None
        listing = self.source.list(revision, self.settings.path)
        desired = self._load(listing, reuse)
        if reuse is not None and any(d.is_error for d in desired.diagnostics):
            desired = self._load(listing, None)  # re-read everything so errors name lines
        descends = self._descends(live, revision)
        related = None
        if descends is False and live.applied_revision is not None:
            related = self.source.shares_history(live.applied_revision, revision)
        remember = self.db is not None
        outcome = self.plan_against(
            desired, live, descends=descends, related=related, remember=remember
        )
        # A finding at an object taken from the registry is read again from git, so that
        # it names its line as the whole fleet's plan would.
        taken = {
            item.file for item in desired.loaded.objects if (item.kind, item.id) in desired.reused
        }
        marked = frozenset(d.file for d in outcome.diagnostics) & taken
        if marked:
            desired = self._load(listing, reuse, reread=marked)
            outcome = self.plan_against(
                desired, live, descends=descends, related=related, remember=remember
            )
        return outcome

    def _today(self) -> dt.date:
        return self.today or dt.datetime.now(dt.UTC).date()

    def _fleet_key(self) -> tuple[object, ...]:
        """What, besides the tree, the desired state depends on."""
        return (self.settings.path.strip("/"), self.settings.allow_local_endpoints, self.limits)

    def _plan_change(self, revision: str) -> PlanOutcome | None:
        """The plan of a change since a fleet this process checked, in time that follows the
        change: None (plan the whole fleet) unless it gives what the whole would.

        It holds when the registry is untouched since it applied a tree this process
        kept as a `Fleet` (so every live object is that tree's, as applied) and the
        checks' date is the same. Then git lists the files that differ between the two
        trees; only they are read, only their objects' live rows are loaded (with the
        count of all), and the cross-object checks look at the objects that changed
        and at those that name a changed model; the rest keep their earlier findings.
        Anything else (an error found, a duplicate id or task type, a fallback cycle,
        caps exceeded, live rows that do not match the kept fleet, too large a change)
        returns None and the whole fleet is planned, so errors are reported as always.
        """
        assert self.db is not None
        today = self._today()
        with self.db.transaction(snapshot=True) as connection:
            state = registry.read_state(connection)
            if (
                state.applied_revision is None
                or state.applied_tree is None
                or not state.untouched_since_apply
            ):
                return None
            base = fleets.kept(self._fleet_key(), state.applied_tree)
            if base is None or base.today != today:
                return None
            tree = self.source.tree(revision, self.settings.path)
            if tree is None:
                return None
            delta = self.source.delta(base.tree, tree, self.settings.path)
            if delta is None or len(delta.paths) > _MAX_DELTA + len(base.files) // 4:
                return None
            patched = self._patch(base, tree, today, delta)
            if patched is None:
                return None
            fleet, keys = patched
            live = registry.load_keys(connection, keys)
        if not fleets.agrees(base, live, keys):
            log.warning("the registry does not hold the kept fleet; planning the whole fleet")
            return None
        desired = {
            key: diffing.Desired.of(item.obj, item.file, item.blob)
            for key in keys
            if (item := fleet.located.get(key)) is not None
        }
        changes = diffing.diff(desired, live)
        descends = self._descends(live, revision)
        related = None
        if descends is False and live.applied_revision is not None:
            related = self.source.shares_history(live.applied_revision, revision)
        context = safety.Context(
            desired=fleet.objects,
            live=live,
            changes=changes,
            max_delete_ratio=self.max_delete_ratio,
            descends=descends,
            related=related,
            revision=revision,
            source=self.source.description,
            model_specs=fleet.specs,
            rules=fleet.ordered_rules,
        )
        last = safety.last_servers(context)
        judged = last[1]
        affected = fleets.affected(fleet, delta, keys, judged)
        with_lines = self._with_lines(fleet, affected)
        if with_lines is None:
            return None
        removing = safety.removed_models(changes)
        checked = fleets.check_change(
            base, with_lines, delta, keys, affected, today, removing, judged
        )
        if checked is None:
            return None
        found, checked_fleet = checked
        plan = Plan(
            revision=revision,
            base_revision=live.applied_revision,
            state_serial=live.state_serial,
            changes=changes,
            violations=tuple(safety.check(context, last)),
            tree=tree,
        )
        if checked_fleet is not None:
            fleets.keep(self._fleet_key(), checked_fleet)
        return PlanOutcome(plan, found, live)

    def _with_lines(self, fleet: fleets.Fleet, paths: set[str]) -> fleets.Fleet | None:
        """``fleet`` with the objects of ``paths`` that were taken from the registry (a
        fleet kept from a plan that reused them has no line numbers for them) read
        from git again, so their findings name lines; None when one fails to load."""
        stale = sorted(
            path
            for path in paths
            if any(not item.document.lines for item in fleet.files[path].objects)
        )
        if not stale:
            return fleet
        files = []
        for path in stale:
            kept = fleet.files[path]
            data = self.source.read(Entry(path, kept.blob, kept.size))
            files.append(loading.SourceFile(path, data, kept.blob))
        loaded = loading.load(
            files, self.limits, allow_local_endpoints=self.settings.allow_local_endpoints
        )
        if loaded.diagnostics or not loaded.complete or loaded.broken_ids:
            return None
        patch = fleets.Patch(fleet, fleet.tree, fleet.today)
        for path in stale:
            patch.drop(path)
        by_file = fleets.by_file(loaded.objects)
        for file in files:
            if not patch.add(file.name, file.blob, len(file.data), by_file.get(file.name, ())):
                return None
        return patch.fleet(fleet.diagnostics)

    def _patch(
        self, base: fleets.Fleet, tree: str, today: dt.date, delta: Delta
    ) -> tuple[fleets.Fleet, set[Key]] | None:
        """``base`` with the files of ``delta`` read again, and the keys of the objects
        they held or hold; None when a file has any problem or a key is defined twice."""
        files: list[loading.SourceFile] = []
        for entry in delta.entries:
            data = self.source.read(entry)
            if len(data) > self.limits.max_file_bytes:
                return None
            files.append(loading.SourceFile(entry.path, data, entry.blob))
        loaded = loading.load(
            files, self.limits, allow_local_endpoints=self.settings.allow_local_endpoints
        )
        if loaded.diagnostics or not loaded.complete or loaded.broken_ids:
            return None
        patch = fleets.Patch(base, tree, today)
        keys = {(item.kind, item.id) for path in delta.paths for item in patch.drop(path)}
        by_file = fleets.by_file(loaded.objects)
        for file in files:
            if not patch.add(file.name, file.blob, len(file.data), by_file.get(file.name, ())):
                return None
        keys.update((item.kind, item.id) for item in loaded.objects)
        if len(patch.files) > self.limits.max_files or patch.size > self.limits.max_tree_bytes:
            return None
        return patch.fleet(base.diagnostics), keys

    def _unchanged_since_apply(self, revision: str) -> PlanOutcome | None:
        """The no-op fast path: same revision, same tree, no write since the apply.

        Reads one row and asks git for one tree id; no live object is loaded.
        """
        assert self.db is not None
        with self.db.transaction() as connection:
            state = registry.read_state(connection)
        if (
            revision != state.applied_revision
            or state.applied_tree is None
            or not state.untouched_since_apply
            or self.source.tree(revision, self.settings.path) != state.applied_tree
        ):
            return None
        live = dataclasses.replace(
            LiveState.empty(),
            applied_revision=state.applied_revision,
            applied_tree=state.applied_tree,
            state_serial=state.state_serial,
            partial=True,
        )
        plan = Plan(
            revision, state.applied_revision, state.state_serial, (), (), state.applied_tree
        )
        return PlanOutcome(plan, (), live)

    def _descends(self, live: LiveState, revision: str) -> bool | None:
        applied = live.applied_revision
        if applied is None or applied == revision:
            return None
        return self.source.is_ancestor(applied, revision)

    def plan_against(
        self,
        desired: DesiredState,
        live: LiveState,
        *,
        descends: bool | None,
        related: bool | None = None,
        remember: bool = False,
    ) -> PlanOutcome:
        """Diff, check and judge a desired state against a live one. With ``remember``,
        a valid fleet whose plan removes nothing and leaves no rule unserved is kept
        for the next plan's :meth:`_plan_change`."""
        changes = diffing.diff(desired.desired(), live)
        context = safety.Context(
            desired=desired.objects,
            live=live,
            changes=changes,
            max_delete_ratio=self.max_delete_ratio,
            descends=descends,
            related=related,
            revision=desired.revision,
            source=self.source.description,
        )
        last = safety.last_servers(context)
        judged = last[1]
        today = self._today()
        removing = safety.removed_models(changes)
        found = list(desired.diagnostics)
        found += checking.check(desired.loaded, today, removing=removing, judged_elsewhere=judged)
        ordered = tuple(sorted(set(found), key=Diagnostic.sort_key))
        if any(d.is_error for d in ordered):
            return PlanOutcome(None, ordered, live)
        if remember and not removing and not judged:
            fleet = fleets.fleet_of(desired.tree, desired.loaded, desired.entries, today, ordered)
            if fleet is not None:
                fleets.keep(self._fleet_key(), fleet)
        plan = Plan(
            revision=desired.revision,
            base_revision=live.applied_revision,
            state_serial=live.state_serial,
            changes=changes,
            violations=tuple(safety.check(context, last)),
            tree=desired.tree,
        )
        return PlanOutcome(plan, ordered, live)

    # ---------------------------------------------------------------- apply

    def apply(
        self,
        plan: Plan,
        *,
        actor: str,
        force: bool = False,
        fence: coordination.Lease | None = None,
    ) -> registry.Applied:
        assert self.db is not None
        applied = apply_plan(self.db, plan, actor=actor, force=force, fence=fence)
        self._record(plan.revision, None, "")
        return applied

    def apply_saved(self, saved: Plan, *, actor: str, force: bool = False) -> registry.Applied:
        """Apply a plan file: refused when the registry or the plan's revision moved."""
        live = self.live()
        if live.applied_revision != saved.base_revision or live.state_serial != saved.state_serial:
            if live.applied_revision == saved.revision:
                return registry.Applied(live.state_serial, already_applied=True)
            raise errors.StalePlan(
                "the registry moved since the plan was saved "
                f"(serial {saved.state_serial} -> {live.state_serial}); plan again"
            )
        fresh = self.plan(revision=saved.revision)
        if fresh.plan is None or not fresh.plan.same_changes(saved):
            raise errors.StalePlan(
                f"the saved plan no longer matches what revision {saved.revision[:12]} "
                "produces against the registry; plan again"
            )
        return self.apply(fresh.plan, actor=actor, force=force)

    def reconcile(
        self,
        *,
        actor: str,
        force: bool = False,
        revision: str | None = None,
        fence: coordination.Lease | None = None,
        full: bool = False,
    ) -> CycleOutcome:
        """One cycle: fetch, plan, apply unless refused, record the attempt and conditions.

        A loop passes the ``revision`` it resolved and its lease as ``fence``; ``full``
        plans from every file and every live object (see :meth:`plan`).
        """
        assert self.db is not None
        try:
            revision = revision or self.resolve()
            failpoints.hit("reconcile")
            outcome = self.plan(revision=revision, full=full)
            if outcome.plan is None:
                self._record(revision, "ManifestsInvalid", invalid_message(outcome.diagnostics))
                return CycleOutcome(CycleState.INVALID, revision, None, outcome, None)
            plan = outcome.plan
            if plan.refused and not force:
                codes = ", ".join(sorted({v.code for v in plan.violations}))
                self._record(revision, "PlanRefused", f"safety checks refused the plan: {codes}")
                return CycleOutcome(CycleState.REFUSED, revision, plan, outcome, None)
            if plan.empty and plan.revision == outcome.live.applied_revision:  # nothing new
                self._record(revision, None, "")
                return CycleOutcome(CycleState.IN_SYNC, revision, plan, outcome, None)
            applied = self.apply(plan, actor=actor, force=force, fence=fence)
            state = CycleState.ALREADY_APPLIED if applied.already_applied else CycleState.APPLIED
            return CycleOutcome(state, revision, plan, outcome, applied)
        except errors.LeaseLost:
            raise  # the new leader reports status; a stood-down loop must not overwrite it
        except errors.PermanentError as exc:
            self._record(revision, type(exc).__name__, str(exc))
            raise
        except errors.TemporaryError as exc:
            self._record_quietly(revision, type(exc).__name__, str(exc))
            raise
        except Exception as exc:  # a bug, or an input nothing checked: Stalled, then raise
            self.record_unexpected(revision, exc, actor=actor)
            raise

    def _record(
        self, revision: str | None, reason: str | None, message: str, *, stalled: bool = True
    ) -> None:
        """Record an attempt and its conditions; a condition keeps its time until it flips."""
        assert self.db is not None
        if reason is None:
            conditions = [
                status_module.condition("Ready", True, "ReconciliationSucceeded", message),
                status_module.condition("Stalled", False, "Succeeded"),
            ]
        else:
            conditions = [
                status_module.condition("Ready", False, reason, message),
                status_module.condition(
                    "Stalled", stalled, reason if stalled else "Retrying", message
                ),
            ]
        self._write_attempt(revision, reason, message, conditions)

    def record_unexpected(self, revision: str | None, exc: BaseException, *, actor: str) -> None:
        """Record a cycle's unexpected error: Stalled (reason ``UnexpectedError``), Ready
        False and a ``reconcile_failed`` event, in one transaction. Never raises: when even
        this fails (the database may be what broke), it logs and the caller backs off."""
        assert self.db is not None
        message = describe(exc)
        conditions = [
            status_module.condition("Ready", False, UNEXPECTED, message),
            status_module.condition("Stalled", True, UNEXPECTED, message),
        ]
        event = {"actor": actor, "error": type(exc).__name__, "message": message}
        try:
            self._write_attempt(revision, UNEXPECTED, message, conditions, failure=event)
        except Exception:  # the original error is what the caller handles
            log.warning("could not record the failed reconcile (%s)", message, exc_info=True)

    def _write_attempt(
        self,
        revision: str | None,
        reason: str | None,
        message: str,
        conditions: Sequence[status_module.Condition],
        *,
        failure: dict[str, str] | None = None,
    ) -> None:
        """One transaction: the attempt and its conditions, and a failure's event.

        A one-off (no ``holder``) leaves the attempt and the conditions alone while a
        reconcile loop holds the lease: they are the loop's, which ``grove status`` and
        ``/api/status`` show; a one-off reports its outcome to whoever ran it.
        """
        assert self.db is not None
        with self.db.transaction(write=True) as connection:
            loop = None if self.holder is not None else coordination.current(connection)
            if loop is None:
                previous = registry.read_state(connection).conditions
                registry.record_attempt(
                    connection,
                    revision=revision,
                    error=None if reason is None else f"{reason}: {message}",
                    conditions={c.type: _keep_time(c, previous).to_json() for c in conditions},
                )
            else:
                log.info(
                    "a reconcile loop (%s) holds the lease: this one-off's outcome (%s) is not "
                    "recorded in the shared status",
                    loop.holder,
                    reason or "succeeded",
                )
            if failure is not None:
                details = {"error": failure["error"], "message": failure["message"]}
                registry.record_failure(
                    connection, revision=revision, actor=failure["actor"], details=details
                )

    def record_temporary(self, revision: str | None, exc: errors.TemporaryError) -> None:
        """Record a temporary failure that happened outside :meth:`reconcile` (a loop's fetch)."""
        self._record_quietly(revision, type(exc).__name__, str(exc))

    def _record_quietly(self, revision: str | None, reason: str, message: str) -> None:
        """A temporary error: Ready=False, not Stalled (it is retried with backoff)."""
        try:
            self._record(revision, reason, message, stalled=False)
        except errors.GroveError:  # the database may be what failed
            log.warning("could not record the failed attempt: %s", message)

    # ---------------------------------------------------------------- status

    def status(self) -> status_module.Status:
        return self.overview()[0]

    def overview(self) -> tuple[status_module.Status, PlanOutcome | None]:
        """The status, and the plan of the desired revision it was judged on (None when
        the revision could not be planned: the status's Stalled condition says why). The
        console shows both, from one fetch and one plan."""
        live = self.live()
        desired_revision: str | None = None
        pending = 0
        sync = status_module.Sync.UNKNOWN
        problem = ""
        outcome: PlanOutcome | None = None
        try:
            desired_revision = self.resolve()
            outcome = self.plan(revision=desired_revision)
            if outcome.plan is not None:
                pending = len(outcome.plan.changes)
                sync = status_module.Sync.OUT_OF_SYNC if pending else status_module.Sync.SYNCED
            else:
                problem = "manifests at the desired revision are invalid"
        except errors.GroveError as exc:
            problem = str(exc)
        except Exception as exc:  # status must answer whatever the desired revision holds
            log.warning("status could not plan the desired revision", exc_info=True)
            problem = f"{UNEXPECTED}: {describe(exc)}"
        assert self.db is not None
        with self.db.transaction() as connection:
            open_rollouts = rollouts.open_rollouts(connection)
        summaries = tuple(rollouts.summary(r) for r in open_rollouts)
        return (
            build_status(live, desired_revision, sync, pending, problem, summaries),
            outcome,
        )


STALLED_ERRORS = 3  # errors a Stalled condition lists; `grove validate` shows them all


def invalid_message(found: Sequence[Diagnostic]) -> str:
    """``N manifest error(s); first: FILE:LINE: CODE message; FILE:LINE: ...``: what
    Stalled says, listing the first :data:`STALLED_ERRORS` in file and line order."""
    errors_ = sorted((d for d in found if d.is_error), key=Diagnostic.sort_key)
    if not errors_:
        return "0 manifest error(s)"
    listed = "; ".join(
        diagnostics.printable(f"{d.file}:{d.line}: {d.code} {d.message}")
        for d in errors_[:STALLED_ERRORS]
    )
    more = len(errors_) - STALLED_ERRORS
    rest = f"; and {more} more (grove validate lists them all)" if more > 0 else ""
    return f"{len(errors_)} manifest error(s); first: {listed}{rest}"


def _keep_time(
    condition: status_module.Condition, previous: dict[str, object]
) -> status_module.Condition:
    """Flux's rule: lastTransitionTime changes only when the status changes."""
    old = previous.get(condition.type)
    if isinstance(old, dict) and old.get("status") == condition.status:
        return dataclasses.replace(
            condition, time=str(old.get("lastTransitionTime", condition.time))
        )
    return condition


def build_status(
    live: LiveState,
    desired_revision: str | None,
    sync: status_module.Sync,
    pending: int,
    problem: str,
    open_rollouts: tuple[dict[str, Any], ...] = (),
) -> status_module.Status:
    drifted = tuple(f"{obj.kind}/{obj.id}" for obj in live.drifted())
    stuck = [r for r in open_rollouts if r.get("rollback") == "RollbackPending"]
    stored = {
        kind: status_module.Condition.from_json(value)
        for kind, value in live.conditions.items()
        if isinstance(value, dict)
    }
    stalled = stored.get("Stalled")
    is_stalled = stalled is not None and stalled.status == status_module.ConditionStatus.TRUE
    conditions = [
        status_module.condition(
            "Drifted",
            bool(drifted),
            "DriftDetected" if drifted else "NoDrift",
            ", ".join(drifted[:20]) if drifted else "",
        ),
        stalled or status_module.condition("Stalled", False, "NotStalled"),
        status_module.condition("Reconciling", False, "Idle"),
    ]
    if stuck:  # git names a version the routers no longer serve: the rollback is to make
        conditions.append(
            status_module.condition(
                "RollbackPending",
                True,
                "RollbackNotPushed",
                "; ".join(rollouts.pending_message(r) for r in stuck),
            )
        )
    if drifted or is_stalled or stuck:
        health = status_module.Health.DEGRADED
    elif live.applied_revision is None:
        health = status_module.Health.UNKNOWN
    elif sync is status_module.Sync.OUT_OF_SYNC:
        health = status_module.Health.PROGRESSING
    else:
        health = status_module.Health.HEALTHY
    ready = sync is status_module.Sync.SYNCED and health is status_module.Health.HEALTHY
    if ready:
        reason, message = "ReconciliationSucceeded", f"applied {live.applied_revision or ''}"
    elif problem:
        reason, message = "SourceOrManifestError", problem
    elif is_stalled and stalled is not None:
        reason, message = stalled.reason, stalled.message
    elif drifted:
        reason, message = "DriftDetected", "live objects differ from what was applied"
    elif stuck:
        reason, message = "RollbackPending", "a rollback could not be pushed (RollbackPending)"
    else:
        reason, message = "OutOfSync", f"{pending} change(s) pending"
    ready_condition = status_module.condition("Ready", ready, reason, message)
    conditions.insert(0, ready_condition)
    if live.suspended:
        conditions[3] = status_module.condition(
            "Reconciling", False, "Suspended", "applying is suspended (grove resume)"
        )
    # Flux's rule for every condition: its time moves only when its status does (Drifted
    # and Reconciling read "0 s ago" on every status before)
    conditions = [_keep_time(c, live.conditions) for c in conditions]
    return status_module.Status(
        sync=sync,
        health=health,
        conditions=tuple(conditions),
        desired_revision=desired_revision,
        last_applied_revision=live.applied_revision,
        last_attempted_revision=live.attempted_revision,
        state_serial=live.state_serial,
        objects=len(live.objects),
        pending_changes=pending,
        drifted=drifted,
        suspended=live.suspended,
        last_error=live.last_error,
        rollouts=open_rollouts,
    )


class CycleState(StrEnum):
    """How a reconcile cycle ended: the ``outcome`` of ``POST /api/reconcile``, the
    ``state`` of ``grove reconcile -o json`` and the loop's log."""

    APPLIED = "applied"
    ALREADY_APPLIED = "already-applied"  # the registry held that revision already
    IN_SYNC = "in-sync"  # nothing new: git at the applied revision, no change
    REFUSED = "refused"  # safety checks refused the plan
    INVALID = "invalid"  # the manifests are invalid: no plan

    @property
    def live(self) -> bool:
        """Whether git's revision is live after this cycle."""
        return self in (CycleState.APPLIED, CycleState.ALREADY_APPLIED, CycleState.IN_SYNC)


@dataclasses.dataclass(frozen=True, slots=True)
class CycleOutcome:
    state: CycleState
    revision: str | None
    plan: Plan | None
    planned: PlanOutcome
    applied: registry.Applied | None


def _reusable(
    listing: Listing, live: LiveState | None
) -> dict[str, tuple[Entry, list[LiveObject]]]:
    """Files whose blob is the one their live objects were applied from, none drifted."""
    if live is None:
        return {}
    by_source: dict[tuple[str, str], list[LiveObject]] = {}
    for obj in live.objects.values():
        if obj.source_blob:
            by_source.setdefault((obj.source_path, obj.source_blob), []).append(obj)
    out: dict[str, tuple[Entry, list[LiveObject]]] = {}
    for entry in listing.entries:
        objects = by_source.get((entry.path, entry.blob))
        if objects and not any(obj.drifted for obj in objects):
            out[entry.path] = (entry, objects)
    return out


_MAX_DELTA = 100  # files a change may touch, plus a quarter of the fleet, to be planned alone


# ---------------------------------------------------------------- diff (no database)


def diff_revisions(
    settings: Settings, base_ref: str, head_ref: str, *, today: dt.date | None = None
) -> tuple[PlanOutcome, Sequence[Diagnostic]]:
    """Plan between two revisions, as if ``base_ref`` were applied: the PR preview.

    Returns the outcome and the base revision's own errors (reported, not fatal).
    """
    source = open_source(settings)
    source.fetch()
    reconciler = Reconciler(settings, source, None, today=today)
    base_revision = source.resolve(base_ref)
    head_revision = source.resolve(head_ref)
    base = reconciler.desired_state(base_revision)
    objects = {}
    versions = {}
    for item in base.loaded.objects:
        document = manifests.to_document(item.obj)
        objects[(item.kind, item.id)] = LiveObject(
            kind=item.kind,
            id=item.id,
            version=item.obj.meta.version,
            meta=document["meta"],
            payload=document["payload"],
            applied_hash=manifests.content_hash(document),
        )
        versions[(item.kind, item.id, item.obj.meta.version)] = manifests.version_hash(document)
    live = LiveState(
        objects=objects,
        versions=versions,
        protections={},
        quarantined=frozenset(),
        applied_revision=base_revision,
        applied_tree=base.tree,
        state_serial=0,
    )
    head = reconciler.desired_state(head_revision)
    outcome = reconciler.plan_against(head, live, descends=None)
    return outcome, [d for d in base.diagnostics if d.is_error]
