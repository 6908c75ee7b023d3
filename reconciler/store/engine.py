"""Opening the registry database: SQLite (the default) or PostgreSQL through psycopg 3.

SQLite is tuned for one writer and many readers: WAL journal, a busy timeout,
foreign keys on, and write transactions started with ``BEGIN IMMEDIATE`` so
the apply lock is taken at the start of the transaction rather than at the
first write (two appliers then queue instead of failing on upgrade).
PostgreSQL gets a pre-ping pool; its apply lock is ``pg_advisory_xact_lock``,
taken by the apply query itself.

Database errors are translated here, at the store's boundary, into Grove's tree:
"not reachable now" (PostgreSQL down, a SQLite file locked) is
:class:`errors.DatabaseUnavailable` (temporary), "cannot be read" (a damaged
SQLite file, not a database, no permission) is :class:`errors.DatabaseUnreadable`;
everything else stays what it is. The messages come from a fixed list of reasons
and never quote the driver, whose text names the host, port, user or database.
A pooled SQLite connection whose file was replaced (a restore, or an overwrite
by a new file) is dropped at checkout instead of reading the old file.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from reconciler.base import diagnostics, errors

SQLITE_BUSY_TIMEOUT_MS = 30_000
# user:password@ up to the last @ before the path: a password typed with a raw @ is
# masked whole (a host never holds one)
_CREDENTIALS = re.compile(r"(://[^:/@]*:)[^/?#]*@")
# libpq takes a password as a query parameter too (``?password=``, ``sslpassword=``).
_QUERY_SECRETS = re.compile(r"([?&][^=&#]*(?:pass|secret|token)[^=&#]*=)[^&#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL with any password replaced, in its user part or in its query: safe for
    logs and messages."""
    return _QUERY_SECRETS.sub(r"\1***", _CREDENTIALS.sub(r"\1***@", url))


class Database:
    """An engine plus the transaction discipline Grove relies on."""

    def __init__(self, url: str, *, echo: bool = False, create: bool = True) -> None:
        """``create=False`` never makes a SQLite file (read-only commands, `grove db check`):
        a missing file is then :class:`errors.DatabaseUnreadable` at the first use."""
        self.url = url
        self.create = create
        try:
            parsed = make_url(url)
        except (sa_exc.ArgumentError, ValueError) as exc:  # ValueError: a bad port
            raise errors.ConfigError(
                "the database URL (GROVE_DB_URL or --db) is not a URL: use sqlite:///PATH "
                "or postgresql+psycopg://USER@HOST/NAME"
            ) from exc
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise errors.ConfigError(
                f"unsupported database {self.dialect!r}: use sqlite:/// or postgresql+psycopg://"
            )
        if self.dialect == "postgresql" and parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self._file = FileWatch(self.sqlite_file())
        self.engine: Engine = self._create(parsed, echo)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def shared(self) -> bool:
        """Whether another process can open this database (not SQLite in memory)."""
        return not self.is_sqlite or self.sqlite_file() is not None

    def require_file(self) -> None:
        """For a command run by hand: a SQLite file that does not exist is named, with
        how to make it (a mistyped ``--db``, or ``grove db upgrade`` not run yet)."""
        missing = self.sqlite_file()
        if missing is not None and not missing.exists():
            shown = diagnostics.printable(str(missing))
            raise errors.DatabaseNotReady(
                f"there is no registry database at {shown}: point --db / GROVE_DB_URL at "
                "the right file, or run `grove db upgrade` to create it (`grove up` makes its own)"
            )

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
        on_disk = bool(database) and database != ":memory:"
        if on_disk and self.create:
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
                # Tokens' hashes and the fleet live here: readable by the owner only.
                Path(database).touch(mode=0o600, exist_ok=True)
            except OSError as exc:
                raise errors.DatabaseUnreadable(
                    f"the registry database (SQLite) file cannot be created: {exc.strerror}; "
                    "check that this user may write its folder (GROVE_DATA_DIR, GROVE_DB_URL)"
                ) from exc
        connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        if on_disk:
            # Never create the file on connect: a registry deleted (or not yet made)
            # is an error, not a new empty database.
            parsed = parsed.set(
                database=f"file:{uri_path(database)}", query={"mode": "rw", "uri": "true"}
            )
        engine = create_engine(parsed, echo=echo, connect_args=connect_args)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, record: Any) -> None:
            record.info["file"] = self._file.identity()
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "checkout")
        def _on_checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
            # The file was replaced, removed or overwritten since this connection opened
            # it: its reads would be of the old file, or of its pages cached in memory.
            if record.info.get("file") != self._file.identity() or not self._file.readable():
                raise sa_exc.DisconnectionError("the SQLite file changed")

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
        except sa_exc.DBAPIError as exc:
            translated = translate(exc, self.dialect)
            if translated is None:
                raise
            raise translated from exc
        except sa_exc.NoResultFound as exc:  # the one row every registry has (reconciler_state)
            raise errors.DatabaseNotReady(
                "the registry database has lost rows of its Grove schema (emptied or replaced?); "
                + RECOVER_SQLITE
            ) from exc
        except sa_exc.TimeoutError as exc:  # the pool: every connection busy for 30 s
            raise errors.DatabaseUnavailable(
                "every connection to the registry database of this process is busy; retry"
            ) from exc

    def dispose(self) -> None:
        self.engine.dispose()


def uri_path(database: str) -> str:
    """A file path as the path of a SQLite URI (``?`` and ``#`` escaped)."""
    return str(Path(database).resolve()).replace("%", "%25").replace("?", "%3f").replace("#", "%23")


class FileWatch:
    """Whether a pooled SQLite connection still reads the file at the database's path.

    A connection opened on another file (a restored backup moved into place), on
    this file before it was emptied, or on a file since overwritten must not be
    used: SQLite in WAL mode trusts its cached pages while the shared-memory index
    says nothing changed, and would answer from them (a registry overwritten in
    place looked healthy and answered from memory). :meth:`identity` is one
    ``stat`` (device, inode, empty); :meth:`readable` opens a fresh read-only
    connection, at most every ``every_s``, and reads the header. Never a plain
    ``open()`` and ``close()`` of the file: closing any descriptor of a file drops
    every POSIX lock the process holds on it, SQLite's included.
    """

    def __init__(self, path: Path | None, every_s: float = 1.0) -> None:
        self.path = path
        self.every_s = every_s
        self._lock = threading.Lock()
        self._checked_at = -float("inf")
        self._readable = True

    def identity(self) -> tuple[int, int, bool] | None:
        if self.path is None:
            return None
        try:
            found = self.path.stat()
        except OSError:
            return None
        return (found.st_dev, found.st_ino, found.st_size == 0)

    def readable(self) -> bool:
        if self.path is None:
            return True
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at < self.every_s:
                return self._readable
            self._checked_at = now
            self._readable = _header_reads(self.path)
            return self._readable


def _header_reads(path: Path) -> bool:
    """Whether a fresh connection reads the database header (a locked file counts as
    readable: it is in use, not damaged)."""
    connection: sqlite3.Connection | None = None
    try:
        connection = sqlite3.connect(f"file:{uri_path(str(path))}?mode=ro", uri=True, timeout=1)
        connection.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as exc:
        return not isinstance(sqlite_error(exc), errors.DatabaseUnreadable)
    finally:
        if connection is not None:
            connection.close()
    return True


# ---------------------------------------------------------------- translating errors

RECOVER_SQLITE = "restore it from a backup, or run `grove db check` for details"
RECOVER_POSTGRES = (
    "Grove retries by itself; check that the server runs and accepts this client "
    "(`grove db check` tests the connection)"
)

# SQLite's primary result codes (https://sqlite.org/rescode.html), and what to say.
_SQLITE_UNREADABLE = {
    3: "permission denied",  # SQLITE_PERM
    8: "the file is read-only for this user",  # SQLITE_READONLY
    10: "a disk I/O error",  # SQLITE_IOERR
    11: "the database disk image is malformed",  # SQLITE_CORRUPT
    14: "the file cannot be opened (missing, or no permission on it or its folder)",  # CANTOPEN
    23: "access denied",  # SQLITE_AUTH
    26: "the file is not a database",  # SQLITE_NOTADB
}
_SQLITE_BUSY = {
    5: "it is locked by another process (waited 30 s)",  # SQLITE_BUSY
    6: "a table is locked",  # SQLITE_LOCKED
    13: "the disk is full",  # SQLITE_FULL
}

# Reasons a PostgreSQL connection fails, found in the driver's text; the text itself
# (host, port, user, database name) is never shown.
_POSTGRES_REASONS = (
    (
        ("password authentication failed", "no password supplied", "authentication"),
        "authentication failed (check the user and password of GROVE_DB_URL)",
    ),
    (('role "', "role does not exist"), "the user of GROVE_DB_URL does not exist"),
    (("does not exist",), "the database named in GROVE_DB_URL does not exist"),
    (("connection refused",), "connection refused"),
    (("timeout expired", "timed out", "timeout"), "the connection timed out"),
    (
        (
            "could not translate host name",
            "name or service not known",
            "temporary failure in name resolution",
            "nodename nor servname",
        ),
        "the host name does not resolve",
    ),
    (("no route to host", "network is unreachable"), "no route to the server"),
    (
        ("starting up", "shutting down", "terminating connection", "administrator command"),
        "the server is shutting down or starting up",
    ),
    (
        ("too many connections", "remaining connection slots"),
        "the server has no connection slot left",
    ),
    (
        (
            "server closed the connection",
            "consuming input failed",
            "connection is lost",
            "the connection is closed",
            "connection already closed",
            "ssl syscall",
            "eof detected",
        ),
        "the connection was lost",
    ),
    (("ssl",), "the TLS handshake failed"),
    (("canceling statement", "statement timeout"), "a query took too long and was cancelled"),
)


def translate(exc: sa_exc.DBAPIError, dialect: str) -> errors.GroveError | None:
    """Grove's error for a driver error that means the database cannot be used now,
    or None for any other (a constraint, a bug: the caller re-raises it as it is)."""
    original = exc.orig
    if _missing_table(original):
        return errors.DatabaseNotReady(
            "the registry database has lost tables of its Grove schema (emptied or replaced?); "
            "restore it from a backup, or run `grove db check` for details"
        )
    if isinstance(original, sqlite3.Error):
        return sqlite_error(original)
    if dialect != "postgresql":
        return None
    if isinstance(exc, sa_exc.InterfaceError) or (
        isinstance(exc, sa_exc.OperationalError) and _postgres_connection(exc)
    ):
        reason = _postgres_reason(str(original or exc).lower(), exc.connection_invalidated)
        return errors.DatabaseUnavailable(
            f"the registry database (PostgreSQL) cannot be reached: {reason}; {RECOVER_POSTGRES}"
        )
    return None


def _missing_table(original: BaseException | None) -> bool:
    """A table the schema has is gone (SQLite "no such table", PostgreSQL 42P01)."""
    if isinstance(original, sqlite3.OperationalError):
        return str(original).startswith("no such table")
    return getattr(original, "sqlstate", None) == "42P01"


def sqlite_error(original: sqlite3.Error) -> errors.GroveError | None:
    code = getattr(original, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _SQLITE_UNREADABLE:
        return errors.DatabaseUnreadable(
            f"the registry database (SQLite) is unreadable: {_SQLITE_UNREADABLE[primary]}; "
            + RECOVER_SQLITE
        )
    if primary in _SQLITE_BUSY:
        return errors.DatabaseUnavailable(
            f"the registry database (SQLite) is unavailable: {_SQLITE_BUSY[primary]}; retry"
        )
    return None


def _postgres_connection(exc: sa_exc.OperationalError) -> bool:
    """An OperationalError about the connection (not, say, a division by zero)."""
    state = getattr(exc.orig, "sqlstate", None)
    if exc.connection_invalidated or state is None:  # libpq's own, before any server answer
        return True
    return str(state)[:2] in ("08", "28", "3D", "53") or state in (
        "57P01",
        "57P02",
        "57P03",
        "57014",
    )


def _postgres_reason(text: str, invalidated: bool) -> str:
    for signs, reason in _POSTGRES_REASONS:
        if any(sign in text for sign in signs):
            return reason
    return "the connection was lost" if invalidated else "the connection failed"
