"""The reconcile loop: ``grove reconcile --watch``, for months, next to other replicas.

Called by the CLI (and later by ``grove serve``). Each loop:

- wakes on a timer (remote sources are fetched every interval, with jitter),
  on a change of the local repository's refs (watchfiles), on a manual trigger
  (``grove reconcile --now``: a counter in the database, plus NOTIFY), or on a
  NOTIFY of a new state serial;
- runs cycles only while it holds the leader lease (a fencing epoch checked
  inside the apply transaction), so replicas stay idle instead of racing; the
  apply lock and compare-and-set would make racing harmless anyway;
- follows Argo CD's guards: a revision whose apply was refused or invalid is
  not retried until a new revision or a trigger arrives (Stalled); temporary
  errors (database, git, lock) back off exponentially with jitter, 1 s to 5 min;
  ``grove suspend`` stops applying while status keeps being reported;
- never dies: any other exception in a tick or a cycle (a bug, an input no
  check caught) is logged with its traceback, counted
  (``grove_reconcile_loop_errors_total``), recorded as ``Stalled`` with reason
  ``UnexpectedError`` and a ``reconcile_failed`` event when it happened in a
  cycle, and backed off like a temporary error, capped at the interval: the
  same revision is retried (the cause may be transient), and a new commit of
  a local repository is tried at once. A database that cannot be read or is
  not migrated is waited for like one that is down;
- plans a change from the files it touched (see `reconciling`), and once every
  ``full_check_s`` (an hour) plans a cycle from every file and live object
  instead (``reconcile(full=True)``), so nothing a shortcut missed can hide;
- keeps a snapshot of reconciled state fresh through NOTIFY and polling;
- stops on SIGTERM/SIGINT after the current cycle, so a transaction commits
  or rolls back and the lease is released.

Each cycle logs one structured line: revision, plan size, duration, outcome.

Every deadline (the next fetch, the backoff, the lease's renewal, the full check)
is read from ``clock``, ``time.monotonic`` unless the caller gives another: a test
drives ticks with a fake clock and advances it past a backoff instead of waiting
it out (``tests/unit/test_clocks.py``). Only ``run`` waits in real time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchfiles import watch

from reconciler.base import errors, logs, telemetry
from reconciler.base.settings import Settings
from reconciler.gitops import reconciling, rollouts
from reconciler.routing import snapshots
from reconciler.sources.git import GitSource
from reconciler.store import coordination, failpoints, migrating, notifications, registry
from reconciler.store.engine import Database

log = logging.getLogger("grove.watch")

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 300.0


def identity() -> str:
    """A holder name unique to this process, readable in status and logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    interval_s: float = 30.0
    poll_s: float = 2.0
    lease_ttl_s: float = 15.0
    jitter: float = 0.1
    full_check_s: float = 3600.0  # how often a cycle re-reads and re-checks everything


class Watcher:
    def __init__(
        self,
        settings: Settings,
        options: Options,
        *,
        stop: threading.Event | None = None,
        holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_routing: Callable[[], object] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock  # seconds, monotonic: every deadline, backoff and interval
        self.options = options
        self.stop = stop or threading.Event()
        self.holder = holder or identity()
        self.wake = threading.Event()
        self.repo_changed = threading.Event()
        # The schema is checked on the first tick, so a loop started while the
        # database is down waits for it instead of exiting.
        self.db: Database = reconciling.open_database(settings, require_schema=False)
        self.source = reconciling.open_source(settings)
        self.reconciler = reconciling.Reconciler(settings, self.source, self.db, holder=self.holder)
        self.snapshots = snapshots.Snapshots(
            self.db, allow_local_endpoints=settings.allow_local_endpoints
        )
        self.analyst = rollouts.Analyst(
            settings, self.db, holder=self.holder, on_routing=on_routing
        )
        self.next_analysis = 0.0  # due at once
        self.lease: coordination.Lease | None = None
        self.lease_renew_at = 0.0
        self.next_fetch = 0.0  # due at once
        self.backoff_s = 0.0
        self.backoff_until = 0.0
        self.failed_revision: str | None = None
        self.failed_unexpectedly = False  # the last cycle raised something unplanned
        self.last_trigger: int | None = None
        self.suspended = False
        self.database_down = False
        self.schema_checked = False
        self.cycles = 0
        # The first cycle checks the whole fleet anyway (nothing is kept yet in this process).
        self.last_full = self.clock()
        self._threads: list[threading.Thread] = []
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> int:
        self._start_helpers()
        logs.event(
            log,
            "watch-started",
            holder=self.holder,
            source=self.source.description,
            interval_s=self.options.interval_s,
        )
        try:
            while not self.stop.is_set():
                self.tick()
                self.wake.wait(timeout=self._sleep_s())
                self.wake.clear()
        finally:
            self._shutdown()
        return 0

    def _start_helpers(self) -> None:
        follower = notifications.follow(
            self.db,
            [registry.NOTIFY_CHANNEL, coordination.TRIGGER_CHANNEL],
            self.wake.set,
            self.stop,
            listen=self.settings.pg_listen,
        )
        if follower is not None:
            self._threads.append(follower)
        refs = self._local_refs()
        if refs is not None:
            self._spawn("grove-refs", self._watch_refs, refs)

    def _spawn(self, name: str, target: Any, argument: Path) -> None:
        thread = threading.Thread(target=target, args=(argument,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _shutdown(self) -> None:
        if self.lease is not None:
            try:
                with self.db.transaction(write=True) as connection:
                    coordination.release(connection, self.holder)
            except errors.GroveError:
                pass  # it expires on its own
            self.lease = None
            telemetry.LEADER.set(0)
        logs.event(log, "watch-stopped", holder=self.holder, cycles=self.cycles)
        self.db.dispose()

    def _local_refs(self) -> Path | None:
        if not isinstance(self.source, GitSource) or self.source.remote:
            return None
        try:
            git_dir = Path(self.source.repo().git_dir)
        except errors.GroveError:
            return None
        return git_dir

    def _watch_refs(self, git_dir: Path) -> None:
        try:
            self._follow_refs(git_dir)
        except Exception as exc:  # the loop goes on; it fetches every interval anyway
            log.warning("stopped watching %s for new commits", git_dir, exc_info=True)
            logs.event(
                log, "refs-watch-stopped", level=logging.WARNING, reason=reconciling.describe(exc)
            )

    def _follow_refs(self, git_dir: Path) -> None:
        def relevant(_change: object, path: str) -> bool:
            relative = Path(path).relative_to(git_dir).as_posix()
            return relative in ("HEAD", "packed-refs") or relative.startswith("refs/")

        for _ in watch(
            git_dir,
            watch_filter=relevant,
            stop_event=self.stop,
            debounce=200,
            step=20,
            rust_timeout=1000,
            yield_on_timeout=False,
        ):
            self.repo_changed.set()
            self.wake.set()

    def _sleep_s(self) -> float:
        now = self.clock()
        if self.database_down:  # nothing to do until the backoff ends (or a wake-up)
            return max(0.05, self.backoff_until - now)
        deadlines = [now + self.options.poll_s]
        if self.lease is not None:
            deadlines.append(self.lease_renew_at)
            if not self.suspended:  # only a leader fetches and applies
                deadlines.append(max(self.next_fetch, self.backoff_until))
            deadlines.append(self.next_analysis)  # ... and judges rollouts
        return max(0.05, min(deadlines) - now)

    # ---------------------------------------------------------------- one tick

    def tick(self) -> None:
        """Poll, keep the lease, keep the snapshot, and run a cycle when one is due.

        Never raises: whatever goes wrong becomes a log line, a metric and a backoff.
        """
        now = self.clock()
        if self.database_down and now < self.backoff_until:
            return
        try:
            if not self.schema_checked:
                migrating.require_current(self.db)
                self.schema_checked = True
            with self.db.transaction() as connection:
                signals = coordination.poll(connection)
            failpoints.hit("tick")
            self._keep_lease(now)
            self._refresh_snapshot(signals.state_serial)
        except errors.GroveError as exc:  # down, unreadable, or not migrated: wait and see
            self.database_down = True
            self._back_off(f"database: {exc}")
            return
        except Exception as exc:
            self.database_down = True  # the same wait: nothing is known until the poll works
            self._unexpected("tick", exc)
            return
        if self.database_down:  # it answers again: forget the backoff, check at once
            self.database_down = False
            self.backoff_s = 0.0
            self.backoff_until = 0.0
            self.next_fetch = now
            logs.event(log, "database-back", holder=self.holder)
        triggered = self.last_trigger is not None and signals.trigger_counter != self.last_trigger
        self.last_trigger = signals.trigger_counter
        if signals.suspended != self.suspended:
            self.suspended = signals.suspended
            telemetry.SUSPENDED.set(int(self.suspended))
            logs.event(log, "suspended" if self.suspended else "resumed", holder=self.holder)
        if now >= self.next_analysis:
            self.next_analysis = now + self.settings.analysis_interval_s
            self._analyse()
        if self.lease is None or self.suspended:
            return
        changed = self.repo_changed.is_set()
        due = triggered or changed or now >= self.next_fetch
        # A new commit may fix what failed unexpectedly: it does not wait out the backoff.
        waits = now < self.backoff_until and not (changed and self.failed_unexpectedly)
        if not due or (waits and not triggered):
            return
        self.repo_changed.clear()
        try:
            self._cycle(triggered)
        except Exception as exc:  # a bug in the bookkeeping itself: the loop still lives
            self._unexpected("cycle", exc)

    def _analyse(self) -> None:
        """The leader judges the open rollouts (a change freeze does not stop that: a
        failing canary is taken out of traffic all the same); every replica keeps the
        rollout series of its /metrics."""
        try:
            if self.lease is not None:
                self.analyst.tick()
            else:
                self.analyst.gauges()
        except errors.GroveError as exc:
            logs.event(log, "analysis-skipped", level=logging.WARNING, reason=str(exc)[:300])
        except Exception as exc:  # a bug in the analysis must not stop, nor slow, the loop
            self._unexpected("analysis", exc, back_off=False)

    def _keep_lease(self, now: float) -> None:
        if self.lease is not None and now < self.lease_renew_at:
            return
        ttl_ms = int(self.options.lease_ttl_s * 1000)
        with self.db.transaction(write=True) as connection:
            lease = coordination.acquire(connection, self.holder, ttl_ms)
        previous = self.lease
        if lease is not None and (previous is None or lease.epoch != previous.epoch):
            logs.event(log, "leader-elected", holder=self.holder, epoch=lease.epoch)
            self.next_fetch = now  # a new leader checks at once
        elif lease is None and previous is not None:
            logs.event(log, "leader-lost", level=logging.WARNING, holder=self.holder)
        self.lease = lease
        telemetry.LEADER.set(int(lease is not None))
        self.lease_renew_at = now + self.options.lease_ttl_s / 3

    def _refresh_snapshot(self, serial: int) -> None:
        if serial == self.snapshots.current.serial:
            return
        if self.snapshots.refresh():
            current = self.snapshots.current
            logs.event(
                log,
                "snapshot",
                serial=current.serial,
                revision=_short(current.revision),
                models=len(current.models),
                rules=len(current.rules),
            )

    def _cycle(self, triggered: bool) -> None:
        started = time.monotonic()  # how long it took: real time, whatever the clock
        self.cycles += 1
        revision: str | None = None
        in_reconcile = False  # reconcile() records its own unexpected errors
        actor = f"loop:{self.holder}"
        fields: dict[str, Any] = {"holder": self.holder, "triggered": triggered}
        self.failed_unexpectedly = False
        try:
            revision = self.reconciler.resolve()
            fields["revision"] = _short(revision)
            if revision == self.failed_revision and not triggered:
                outcome_name = "skipped"
                fields["reason"] = "this revision failed before; waiting for a new one"
            else:
                in_reconcile = True
                full = self.clock() - self.last_full >= self.options.full_check_s
                outcome = self.reconciler.reconcile(
                    actor=actor, revision=revision, fence=self.lease, full=full
                )
                in_reconcile = False
                if full:
                    self.last_full = self.clock()
                    fields["full"] = True
                outcome_name = outcome.state
                if outcome.plan is not None:
                    fields["changes"] = len(outcome.plan.changes)
                    fields["serial"] = outcome.plan.state_serial
                if outcome.applied is not None:
                    fields["serial"] = outcome.applied.state_serial
                if not outcome.state.live:  # refused or invalid
                    self.failed_revision = revision
                    fields["reason"] = _reason(outcome)
                else:
                    self.failed_revision = None
            self.backoff_s = 0.0
            self.backoff_until = 0.0
            telemetry.BACKOFF.set(0)
        except errors.LeaseLost as exc:
            outcome_name = "lease-lost"
            fields["reason"] = str(exc)
            self.lease = None
            telemetry.LEADER.set(0)
        except errors.StalePlan as exc:  # someone else applied meanwhile: just look again
            outcome_name = "stale"
            fields["reason"] = str(exc)
        except errors.TemporaryError as exc:
            if revision is None:  # failed before reconcile() could record it: git is down
                self.reconciler.record_temporary(None, exc)
            outcome_name = "error"
            fields["reason"] = str(exc)
            # An unreachable source is retried at least once per interval, so the loop
            # converges within two intervals of its return; other errors back off to 5 min.
            cap = self.options.interval_s if isinstance(exc, errors.SourceUnavailable) else None
            self._back_off(str(exc), cap=cap)
        except errors.DatabaseNotReady as exc:  # unreadable or not migrated: fixed outside
            outcome_name = "error"  # Grove, then the same revision must apply: wait, retry
            fields["reason"] = str(exc)
            self._back_off(str(exc), cap=self.options.interval_s)
        except errors.PermanentError as exc:
            outcome_name = "stalled"
            fields["reason"] = str(exc)
            self.failed_revision = revision
        except Exception as exc:  # a bug, or an input no check caught: Stalled, retried
            outcome_name = "failed"
            fields["reason"] = reconciling.describe(exc)
            if not in_reconcile:
                self.reconciler.record_unexpected(revision, exc, actor=actor)
            self.failed_revision = None  # not skipped: the cause may be transient
            self.failed_unexpectedly = True
            self._unexpected("cycle", exc, revision=revision)
        self.next_fetch = self.clock() + self._jittered(self.options.interval_s)
        if outcome_name in ("error", "failed"):
            self.next_fetch = self.backoff_until  # retry after the backoff, not the interval
        elif outcome_name == "stale":
            self.next_fetch = self.clock()
        duration = time.monotonic() - started
        telemetry.RECONCILE_CYCLES.labels(outcome=outcome_name).inc()
        telemetry.RECONCILE_DURATION.observe(duration)
        logs.event(
            log, "reconcile", outcome=outcome_name, duration_ms=round(duration * 1000, 1), **fields
        )

    def _unexpected(
        self,
        stage: str,
        exc: Exception,
        *,
        revision: str | None = None,
        back_off: bool = True,
    ) -> None:
        """Log an unexpected error with its traceback, count it, and back off (at most an
        interval, so the loop tries again at least as often as it would fetch); not for
        the analysis, which must not delay the reconciles."""
        telemetry.LOOP_ERRORS.labels(stage=stage).inc()
        reason = reconciling.describe(exc)
        fields = {"stage": stage, "holder": self.holder, "revision": _short(revision)}
        # logs.event's shape, plus the traceback (the JSON line's "traceback" field)
        log.error("unexpected-error", exc_info=exc, extra={"fields": {**fields, "reason": reason}})
        if back_off:
            self._back_off(reason, cap=self.options.interval_s)

    def _back_off(self, reason: str, *, cap: float | None = None) -> None:
        self.backoff_s = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, self.backoff_s * 2))
        delay = min(self._jittered(self.backoff_s), BACKOFF_MAX_S, cap or BACKOFF_MAX_S)
        self.backoff_until = self.clock() + delay
        telemetry.BACKOFF.set(delay)
        logs.event(log, "backoff", level=logging.WARNING, seconds=round(delay, 2), reason=reason)

    def _jittered(self, seconds: float) -> float:
        spread = seconds * self.options.jitter
        return max(0.0, seconds + self._rng.uniform(-spread, spread))


def _short(revision: str | None) -> str | None:
    return revision[:12] if revision else None


def _reason(outcome: reconciling.CycleOutcome) -> str:
    if outcome.plan is not None and outcome.plan.refused:
        return "refused: " + ", ".join(sorted({v.code for v in outcome.plan.violations}))
    errors_ = [d for d in outcome.planned.diagnostics if d.is_error]
    return f"invalid: {len(errors_)} manifest error(s)"
