"""Is the registry database usable? A cheap probe, and the full check of `grove db check`.

:func:`probe` is for the API's ``/readyz`` and health: a few rows through the
engine's pool (whose SQLite connections are dropped when their file changed,
see `engine`), under a short statement timeout. :func:`check` is ``grove db
check``: on SQLite, the file, ``PRAGMA integrity_check`` and
``PRAGMA foreign_key_check`` through a read-only connection of its own; on
PostgreSQL, the connection; on both, the schema against the migration head and
the state row. Each finding says what is wrong and the report says how to
recover.

Never writes, never creates a database file, and never returns the database's
URL, host, port, user or name (a SQLite file's path is shown: it is where the
operator restores the backup to).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, computed_field
from sqlalchemy import Connection, select, text

from reconciler.base import errors, serial
from reconciler.planning.status import ConditionStatus
from reconciler.store import engine, migrating, tables
from reconciler.store.engine import Database

PROBE_TIMEOUT_MS = 2_000
INTEGRITY_ERRORS_SHOWN = 20

RECOVER_FILE = (
    "stop the Grove processes using it, restore the file from a backup (or move it aside "
    "and rebuild the live state from git with `grove db upgrade` and `grove reconcile`; "
    "API tokens, history and routing logs are then lost), then run `grove db check` again"
)
RECOVER_SERVER = (
    "check that the server runs and that GROVE_DB_URL names the right host, user, password "
    "and database; Grove processes retry by themselves"
)
RECOVER_UPGRADE = "run `grove db upgrade`"
RECOVER_GROVE = "upgrade grove to a version that knows this schema"


# ---------------------------------------------------------------- the probe


@dataclasses.dataclass(frozen=True, slots=True)
class Probe:
    """What one cheap read of the registry found; ``reason`` says why it is not usable."""

    readable: bool
    reason: str = ""
    state_serial: int | None = None
    stalled: dict[str, Any] | None = None  # the stored Stalled condition, when it is True


def probe(db: Database) -> Probe:
    """Read the schema revision and the state row; never raises for a database fault."""
    try:
        with db.transaction() as connection:
            if not db.is_sqlite:
                connection.execute(text(f"SET LOCAL statement_timeout = {PROBE_TIMEOUT_MS}"))
            migrating.require_current_on(connection)
            row = connection.execute(
                select(
                    tables.reconciler_state.c.state_serial, tables.reconciler_state.c.conditions
                ).where(tables.reconciler_state.c.id == 1)
            ).first()
    except errors.GroveError as exc:
        return Probe(False, str(exc))
    if row is None:
        return Probe(False, f"the registry database has no state row; {RECOVER_UPGRADE}")
    stalled = (row.conditions or {}).get("Stalled")
    if not (isinstance(stalled, dict) and stalled.get("status") == ConditionStatus.TRUE):
        stalled = None
    return Probe(True, state_serial=int(row.state_serial), stalled=stalled)


# ---------------------------------------------------------------- the full check


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, object]:
        return serial.dump(self)


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    _json_order = serial.key_order("healthy", "backend", "location", "checks", "recovery")

    backend: str  # sqlite | postgresql
    location: str  # the SQLite file; "PostgreSQL" (never its host or name)
    findings: Annotated[tuple[Finding, ...], Field(alias="checks")]
    recovery: str  # "" when healthy

    @computed_field  # type: ignore[prop-decorator]
    @property
    def healthy(self) -> bool:
        return all(f.ok for f in self.findings)

    @property
    def problem(self) -> str:
        """The first thing wrong, for a one-line summary."""
        return next((f"{f.name}: {f.detail}" for f in self.findings if not f.ok), "")

    def to_json(self) -> dict[str, object]:
        return serial.dump(self)


class _Failed(Exception):
    """A check that stops the others; carries its finding and the way to recover.

    Private control flow, outside the error tree on purpose: raised and caught inside
    :func:`check`, which turns it into the report, so no caller ever sees it."""

    def __init__(self, finding: Finding, recovery: str) -> None:
        super().__init__(finding.detail)
        self.finding = finding
        self.recovery = recovery


def check(url: str) -> Report:
    """Check the registry at ``url`` without writing to it or creating it."""
    db = Database(url, create=False)
    try:
        if db.is_sqlite:
            return _check_sqlite(db)
        return _check_postgres(db)
    finally:
        db.dispose()


def _report(backend: str, location: str, steps: list[Any]) -> Report:
    """Run ``steps`` (each returns findings and the recovery, "" when ok) until one fails."""
    findings: list[Finding] = []
    for step in steps:
        try:
            found, recovery = step()
        except _Failed as failed:
            found, recovery = [failed.finding], failed.recovery
        findings.extend(found)
        if recovery:
            return Report(backend, location, tuple(findings), recovery)
    return Report(backend, location, tuple(findings), "")


def _check_sqlite(db: Database) -> Report:
    path = db.sqlite_file()
    if path is None:
        raise errors.UsageError("`grove db check` needs a SQLite file or PostgreSQL, not :memory:")
    holder: dict[str, sqlite3.Connection] = {}

    def file() -> tuple[list[Finding], str]:
        if not path.is_file():
            detail = f"no database file at {path}"
            return [Finding("file", False, detail)], (
                "check --db or GROVE_DB_URL; `grove db upgrade` creates a new registry"
            )
        holder["connection"] = _read_only(path)
        size = path.stat().st_size
        return [Finding("file", True, f"{path}, {size} bytes")], ""

    def integrity() -> tuple[list[Finding], str]:
        rows = _sqlite_rows(
            holder["connection"], "integrity", f"PRAGMA integrity_check({INTEGRITY_ERRORS_SHOWN})"
        )
        said = [str(row[0]) for row in rows]
        if said == ["ok"]:
            return [Finding("integrity", True, "PRAGMA integrity_check: ok")], ""
        detail = "PRAGMA integrity_check: " + "; ".join(said[:INTEGRITY_ERRORS_SHOWN])
        return [Finding("integrity", False, detail)], RECOVER_FILE

    def foreign_keys() -> tuple[list[Finding], str]:
        rows = _sqlite_rows(holder["connection"], "foreign keys", "PRAGMA foreign_key_check")
        if not rows:
            return [Finding("foreign keys", True, "PRAGMA foreign_key_check: no violation")], ""
        where = sorted({str(row[0]) for row in rows})
        detail = f"{len(rows)} row(s) break foreign keys, in {', '.join(where)}"
        return [Finding("foreign keys", False, detail)], RECOVER_FILE

    def schema() -> tuple[list[Finding], str]:
        rows = _sqlite_rows(
            holder["connection"],
            "schema",
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'",
        )
        found = None
        if rows:
            versions = _sqlite_rows(
                holder["connection"], "schema", "SELECT version_num FROM alembic_version"
            )
            found = str(versions[0][0]) if versions else None
        return _schema_finding(found)

    def state() -> tuple[list[Finding], str]:
        rows = _sqlite_rows(
            holder["connection"],
            "state",
            "SELECT state_serial, applied_revision FROM reconciler_state WHERE id = 1",
        )
        return _state_finding(rows[0] if rows else None)

    try:
        return _report("sqlite", str(path), [file, integrity, foreign_keys, schema, state])
    finally:
        if "connection" in holder:
            holder["connection"].close()


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that can neither write nor create the file."""
    uri = f"file:{engine.uri_path(str(path))}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise _Failed(Finding("file", False, _sqlite_reason(exc)), RECOVER_FILE) from exc
    return connection


def _sqlite_rows(connection: sqlite3.Connection, name: str, statement: str) -> list[Any]:
    """The rows of ``statement``; a SQLite error is the failed finding ``name``."""
    try:
        return list(connection.execute(statement).fetchall())
    except sqlite3.Error as exc:
        raise _Failed(Finding(name, False, _sqlite_reason(exc)), RECOVER_FILE) from exc


def _sqlite_reason(exc: sqlite3.Error) -> str:
    translated = engine.sqlite_error(exc)
    return _what(translated) if translated is not None else f"SQLite said: {exc}"


def _what(exc: errors.GroveError) -> str:
    """What is wrong, without the way to recover: the store's database errors read
    "what; how to recover", and the report has its own, longer recovery."""
    return str(exc).split("; ", 1)[0]


def _check_postgres(db: Database) -> Report:
    holder: dict[str, Any] = {}

    def connect() -> tuple[list[Finding], str]:
        try:
            with db.transaction() as connection:
                connection.execute(text("SET TRANSACTION READ ONLY"))
                version = connection.execute(text("SHOW server_version")).scalar()
                holder["schema"] = migrating.current_on(connection)
                holder["state"] = _state_row(connection) if holder["schema"] else None
        except errors.GroveError as exc:
            return [Finding("connection", False, _what(exc))], RECOVER_SERVER
        return [Finding("connection", True, f"connected (PostgreSQL {version})")], ""

    def schema() -> tuple[list[Finding], str]:
        return _schema_finding(holder["schema"])

    def state() -> tuple[list[Finding], str]:
        return _state_finding(holder["state"])

    return _report("postgresql", "PostgreSQL", [connect, schema, state])


def _state_row(connection: Connection) -> Any:
    state = tables.reconciler_state.c
    return connection.execute(
        select(state.state_serial, state.applied_revision).where(state.id == 1)
    ).first()


def _schema_finding(found: str | None) -> tuple[list[Finding], str]:
    wanted = migrating.head()
    if found == wanted:
        return [Finding("schema", True, f"at {found} (the head)")], ""
    if found is None:
        return [Finding("schema", False, "no Grove schema")], RECOVER_UPGRADE
    if found not in migrating.known_revisions():
        detail = f"at {found}, newer than this grove knows (head {wanted})"
        return [Finding("schema", False, detail)], RECOVER_GROVE
    return [Finding("schema", False, f"at {found}, this grove needs {wanted}")], RECOVER_UPGRADE


def _state_finding(row: Any) -> tuple[list[Finding], str]:
    if row is None:
        return [Finding("state", False, "the reconciler_state row is missing")], RECOVER_FILE
    applied = f"revision {str(row[1])[:12]} applied" if row[1] else "nothing applied yet"
    return [Finding("state", True, f"serial {int(row[0])}, {applied}")], ""
