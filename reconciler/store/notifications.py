"""Wake other processes when the registry changes: PostgreSQL LISTEN/NOTIFY, and
for SQLite, which has no NOTIFY, a watch on its files.

An apply sends ``NOTIFY grove_registry, '<state serial>'`` inside its
transaction, so the message is delivered when (and only if) it commits;
``grove reconcile --now`` sends ``grove_trigger``. A :class:`Listener` thread
holds one connection, reconnects with backoff when it drops, and calls back
with each payload. Notifications are a fast path only: every consumer also
polls, so a dropped connection costs at most one poll interval.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url
from watchfiles import watch

from reconciler.store.engine import Database

# How often the listener looks at its stop event between notifications: a server stops
# within this (it was 1 s, a second of every PostgreSQL server's stop, then 0.25 s; an idle
# wake-up is one poll of one socket, ten a second).
STOP_CHECK_S = 0.1
log = logging.getLogger("grove.notify")

APPLICATION_NAME = f"grove-listen:{os.getpid()}"


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener(threading.Thread):
    """Listens on ``channels`` until ``stop`` is set; ``on_notify(channel, payload)``."""

    def __init__(
        self,
        url: str,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        stop: threading.Event,
        *,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name="grove-listener", daemon=True)
        self.url = libpq_url(url)
        self.channels = tuple(channels)
        self.on_notify = on_notify
        self.on_connect = on_connect
        self.stop = stop
        self.connections = 0

    def run(self) -> None:
        delay = 0.5
        while not self.stop.is_set():
            try:
                with psycopg.connect(
                    self.url, autocommit=True, application_name=APPLICATION_NAME, connect_timeout=5
                ) as connection:
                    for channel in self.channels:
                        connection.execute(f'LISTEN "{channel}"')
                    self.connections += 1
                    delay = 0.5
                    if self.on_connect is not None:
                        self.on_connect()
                    while not self.stop.is_set():
                        for note in connection.notifies(timeout=STOP_CHECK_S):
                            self.on_notify(note.channel, note.payload)
            except psycopg.Error as exc:
                log.warning("listener connection lost (%s); reconnecting", type(exc).__name__)
                self.stop.wait(delay)
                delay = min(delay * 2, 10.0)


class FileWatcher(threading.Thread):
    """SQLite's stand-in for a listener: calls ``on_change()`` (at most every 100 ms)
    while files of ``database`` (the file, its WAL, its shared memory) change, which
    they do when any process commits, until ``stop`` is set. Like notifications, a
    fast path only: consumers poll as well."""

    def __init__(self, database: Path, on_change: Callable[[], None], stop: threading.Event):
        super().__init__(name="grove-sqlite-watch", daemon=True)
        self.database = database
        self.on_change = on_change
        self.stop = stop

    def run(self) -> None:
        name = self.database.name

        def relevant(_change: object, path: str) -> bool:
            return Path(path).name.startswith(name)

        for _ in watch(
            self.database.parent,
            watch_filter=relevant,
            stop_event=self.stop,
            debounce=100,
            step=10,
            rust_timeout=1000,
            yield_on_timeout=False,
            recursive=False,
        ):
            self.on_change()


def follow(
    db: Database,
    channels: Sequence[str],
    on_change: Callable[[], None],
    stop: threading.Event,
    *,
    listen: bool,
) -> Listener | FileWatcher | None:
    """Start the thread that calls ``on_change()`` when another process changes the
    registry: a watch on the files of a SQLite database, a listener on ``channels``
    on PostgreSQL (also once it connects, for what it missed while away), or none
    when ``listen`` is off (behind PgBouncer). It runs until ``stop`` is set."""
    thread: Listener | FileWatcher
    database = db.sqlite_file()
    if database is not None:
        thread = FileWatcher(database, on_change, stop)
    elif not db.is_sqlite and listen:
        thread = Listener(db.url, channels, lambda _c, _p: on_change(), stop, on_connect=on_change)
    else:
        return None
    thread.start()
    return thread
