"""Opening the registry database: SQLite (the default) or PostgreSQL through psycopg 3.

SQLite is tuned for one writer and many readers: WAL journal, a busy timeout,
foreign keys on, and write transactions started with ``BEGIN IMMEDIATE`` so
the apply lock is taken at the start of the transaction rather than at the
first write (two appliers then queue instead of failing on upgrade).
PostgreSQL gets a pre-ping pool; its apply lock is ``pg_advisory_xact_lock``,
taken by the apply query itself.

Database errors that mean "not reachable now" are wrapped as
:class:`errors.DatabaseUnavailable` (temporary); everything else stays what it is.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from reconciler import errors

SQLITE_BUSY_TIMEOUT_MS = 30_000
_CREDENTIALS = re.compile(r"(://[^:/@]*:)[^@]*@")


def redact(url: str) -> str:
    """The URL with any password replaced, safe for logs and messages."""
    return _CREDENTIALS.sub(r"\1***@", url)


class Database:
    """An engine plus the transaction discipline Grove relies on."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except sa_exc.ArgumentError as exc:
            raise errors.ConfigError(f"invalid database URL {redact(url)!r}") from exc
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise errors.ConfigError(
                f"unsupported database {self.dialect!r}: use sqlite:/// or postgresql+psycopg://"
            )
        if self.dialect == "postgresql" and parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.engine: Engine = self._create(parsed, echo)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def shared(self) -> bool:
        """Whether another process can open this database (not SQLite in memory)."""
        return not self.is_sqlite or self.sqlite_file() is not None

    def sqlite_file(self) -> Path | None:
        """The database file of a file-backed SQLite database, else None."""
        if not self.is_sqlite:
            return None
        database = make_url(self.url).database
        if not database or database == ":memory:":
            return None
        return Path(database).resolve()

    def _create(self, parsed: Any, echo: bool) -> Engine:
        if self.dialect == "postgresql":
            return create_engine(
                parsed,
                echo=echo,
                pool_pre_ping=True,
                pool_size=5,
                max_overflow=5,
                connect_args={"connect_timeout": 10, "application_name": f"grove:{os.getpid()}"},
            )
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            # Tokens' hashes and the fleet live here: readable by the owner only.
            Path(database).touch(mode=0o600, exist_ok=True)
        engine = create_engine(
            parsed, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            immediate = connection.get_execution_options().get("grove_write", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    @contextlib.contextmanager
    def transaction(self, *, write: bool = False, snapshot: bool = False) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back on any error.

        ``snapshot`` makes every statement of a read see the same committed state
        (REPEATABLE READ on PostgreSQL; a SQLite read transaction already does).
        """
        try:
            with self.engine.connect() as plain:
                connection = plain.execution_options(grove_write=True) if write else plain
                if snapshot and not self.is_sqlite:
                    connection = connection.execution_options(isolation_level="REPEATABLE READ")
                with connection.begin():
                    yield connection
        except sa_exc.OperationalError as exc:
            if _unreachable(exc):
                raise errors.DatabaseUnavailable(
                    f"database {redact(self.url)} is unavailable: {_first_line(exc)}"
                ) from exc
            raise
        except sa_exc.InterfaceError as exc:
            raise errors.DatabaseUnavailable(
                f"database {redact(self.url)} connection failed: {_first_line(exc)}"
            ) from exc

    def dispose(self) -> None:
        self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)


def _unreachable(exc: sa_exc.OperationalError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    signs = (
        "connection",
        "could not connect",
        "server closed",
        "terminating connection",
        "database is locked",
        "unable to open database",
        "timeout",
    )
    return exc.connection_invalidated or any(sign in text for sign in signs)
