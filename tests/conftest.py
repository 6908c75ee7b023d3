"""Shared fixtures: run the real CLI in-process and write manifest trees."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import shutil
import ssl
import subprocess
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx._transports import default as httpx_transports
from sqlalchemy import create_engine, select, text

from reconciler import cli
from reconciler.manifests import kinds as manifests
from reconciler.store import migrating, tables
from reconciler.store.engine import Database

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


GroveRunner = Callable[..., Run]


# ---------------------------------------------------------------- the inner loop

# Fixtures that start a Grove server in the test process (tests/api/conftest.py). On
# PostgreSQL it takes a database of its own and a NOTIFY listener (which looks at its stop
# event every 0.1 s): the same test on SQLite stays in the inner loop.
SERVER_FIXTURES = frozenset({"server", "remote_server", "resolving_server", "shared_server"})


def on_postgresql(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "postgresql" in (
        callspec.params.get("db_url"),
        callspec.params.get("shared_server"),  # tests/api/conftest.py's, per module
    )


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``slow`` on the PostgreSQL variant of a test that runs a server or is marked
    ``slow_on_pg``: ``pytest -m "not slow"`` runs it on SQLite, CI on both."""
    for item in items:
        if not on_postgresql(item):
            continue
        serves = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if serves or item.get_closest_marker("slow_on_pg"):
            item.add_marker(pytest.mark.slow)


_CREATE_SSL_CONTEXT = httpx_transports.create_ssl_context


@functools.cache
def _default_tls(trust_env: bool, cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """httpx's context for ``verify=True``; the CA file and folder of the environment
    (SSL_CERT_FILE, SSL_CERT_DIR), which httpx reads when ``trust_env``, key the cache."""
    return _CREATE_SSL_CONTEXT(verify=True, cert=None, trust_env=trust_env)


def _shared_default_tls(
    verify: Any = True, cert: Any = None, trust_env: bool = True
) -> ssl.SSLContext:
    """httpx's TLS context for a client with the default TLS settings, made once per
    test process (for each CA file the environment names): httpx makes one, loading a
    CA bundle, for every client and every ``httpx.get``, about 25 ms each, although the
    tests speak plain HTTP on the loopback. Any other setting (``verify=False``, a
    context, a certificate) still gets a context of its own from httpx."""
    if verify is True and cert is None:
        environment = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
        return _default_tls(trust_env, *(environment if trust_env else (None, None)))
    return _CREATE_SSL_CONTEXT(verify=verify, cert=cert, trust_env=trust_env)


@pytest.fixture(scope="session", autouse=True)
def _one_default_tls_context() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(httpx_transports, "create_ssl_context", _shared_default_tls)
        yield


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests see Grove's defaults, not whatever GROVE_* the developer has exported."""
    for name in list(os.environ):
        if name.startswith("GROVE_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def grove(capsys: pytest.CaptureFixture[str]) -> GroveRunner:
    """Run ``grove ARGS...`` in this process; return its exit code, stdout and stderr."""

    def run(*args: str) -> Run:
        capsys.readouterr()
        code = cli.run(list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Create ``files`` (relative path -> content) under ``root``."""
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return root


def model_yaml(ident: str, **payload: str) -> str:
    """A minimal valid mock model; ``payload`` adds or replaces payload lines."""
    fields = {
        "name": ident.title(),
        "provider": "mock",
        "capabilities": "{reasoning: 0.9, speed: 0.8}",
    }
    fields.update(payload)
    body = "\n".join(f"  {key}: {value}" for key, value in fields.items())
    return f'meta: {{id: {ident}, type: AIModel, version: "1"}}\npayload:\n{body}\n'


def rule_yaml(ident: str, **payload: str) -> str:
    fields = {"taskType": ident, "requires": "[reasoning]"}
    fields.update(payload)
    body = "\n".join(f"  {key}: {value}" for key, value in fields.items())
    return f'meta: {{id: {ident}, type: RoutingRule, version: "1"}}\npayload:\n{body}\n'


# ---------------------------------------------------------------- databases

POSTGRES_ADMIN_URL = os.environ.get(
    "GROVE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _postgres_reason() -> str | None:
    """None when PostgreSQL is reachable; otherwise why the PostgreSQL tests skip."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {first}"


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    reason = _postgres_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires PostgreSQL: {reason}")
        pytest.skip(reason)
    return POSTGRES_ADMIN_URL


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new database with a random name, dropped afterwards."""
    import psycopg

    name = f"grove_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        # a test database need not survive a crash: commits do not wait for the WAL
        # to reach the disk (a setting of this database only, not of the server)
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PostgresPool:
    """Fresh databases for one test process, made ahead of the tests that take them.

    CREATE DATABASE copies a template and DROP DATABASE forces a checkpoint: about a
    second per test on a busy machine. A thread of this process makes each database as
    a copy of a template it migrated once (``CREATE DATABASE x TEMPLATE tpl``), keeps
    ``depth`` of them ready, and drops the ones tests gave back when that many are
    ready. Every test still gets a database of its own that no other test touched."""

    def __init__(self, admin_url: str, depth: int = 3) -> None:
        self.admin_url = admin_url
        self.depth = depth
        self.base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        self.template = f"grove_test_tpl_{uuid.uuid4().hex[:12]}"
        self._ready: deque[str] = deque()
        self._used: deque[str] = deque()
        self._failed: BaseException | None = None
        self._stopping = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="postgres-pool", daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def take(self) -> str:
        """A migrated database of its own; its URL."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._ready or self._failed, timeout=120):
                raise AssertionError("no PostgreSQL test database was made within 120 s")
            if self._failed is not None:
                raise AssertionError(f"making PostgreSQL test databases failed: {self._failed!r}")
            name = self._ready.popleft()
            self._changed.notify_all()
        return self.url(name)

    def give_back(self, url: str) -> None:
        with self._changed:
            self._used.append(url.rsplit("/", 1)[1])
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the postgres-pool thread is still making a database"
        # each DROP DATABASE waits for a checkpoint; drops at once share one
        names = [*self._used, *self._ready, self.template]
        with concurrent.futures.ThreadPoolExecutor(4) as dropping:
            list(dropping.map(self._drop, names))

    def _drop(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _work(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.admin_url, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self.template}"')
                template = Database(self.url(self.template))
                try:
                    migrating.upgrade(template)
                finally:
                    template.dispose()  # PostgreSQL copies no template with open connections
                while True:
                    with self._changed:
                        self._changed.wait_for(
                            lambda: self._stopping or self._used or len(self._ready) < self.depth
                        )
                        if self._stopping:
                            return
                        # a test waiting for a database comes before dropping used ones
                        wanted = len(self._ready) < self.depth
                        drop = None if wanted else self._used.popleft()
                    if drop is not None:
                        admin.execute(f'DROP DATABASE IF EXISTS "{drop}" WITH (FORCE)')
                        continue
                    name = f"grove_test_{uuid.uuid4().hex[:12]}"
                    with self._changed:  # named before it exists: close() drops it whatever happens
                        self._used.append(name)
                    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
                    # a test database need not survive a crash: commits do not wait for the
                    # WAL to reach the disk (a setting of this database only, not of the server)
                    admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
                    with self._changed:
                        self._used.remove(name)
                        self._ready.append(name)
                        self._changed.notify_all()
        except BaseException as exc:  # handed to the test that waits for a database
            with self._changed:
                self._failed = exc
                self._changed.notify_all()


@pytest.fixture(scope="session")
def postgres_pool(postgres_admin: str) -> Iterator[PostgresPool]:
    pool = PostgresPool(postgres_admin)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite registry, made once per test process: copying the file takes
    a millisecond, running the migrations a quarter of a second."""
    path = tmp_path_factory.mktemp("sqlite-template") / "registry.db"
    db = Database(f"sqlite:///{path}")
    try:
        migrating.upgrade(db)
    finally:
        db.dispose()
    assert not path.with_name("registry.db-wal").exists()
    return path


# Fixtures that migrate the database first thing: a test that uses one of them cannot
# tell a database migrated by it from one copied, already migrated, from a template.
MIGRATING_FIXTURES = frozenset({"registry", "database"})


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every registry test runs on SQLite and on PostgreSQL (its own database).

    Empty, unless the test migrates it through ``registry`` or ``database``: then it is a
    copy of a migrated template (the fixture's ``db upgrade`` finds it at head)."""
    migrated = bool(MIGRATING_FIXTURES & set(request.fixturenames))
    if request.param == "sqlite":
        path = tmp_path / "registry.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
            path.chmod(0o600)  # as Grove creates it
        yield f"sqlite:///{path}"
        return
    if migrated:
        pool: PostgresPool = request.getfixturevalue("postgres_pool")
        url = pool.take()
        try:
            yield url
        finally:
            pool.give_back(url)
        return
    admin = request.getfixturevalue("postgres_admin")
    with postgres_database(admin) as url:
        yield url


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A migrated, empty registry database on each backend."""
    db = Database(db_url)
    migrating.upgrade(db)
    yield db
    db.dispose()


def running(pid: int) -> bool:
    """Whether process ``pid`` runs; one that exited but is not reaped yet (a zombie,
    as an orphan stays under an init that does not reap) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# ---------------------------------------------------------------- git repositories

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Grove Test",
    "GIT_AUTHOR_EMAIL": "test@grove.invalid",
    "GIT_COMMITTER_NAME": "Grove Test",
    "GIT_COMMITTER_EMAIL": "test@grove.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    # no auto-gc: detached, it prunes object folders while the next commit writes into them,
    # and in the foreground it slows the tests that commit hundreds of files many times
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "gc.auto",
    "GIT_CONFIG_VALUE_0": "0",
}


class FleetRepo:
    """A real git repository in a temporary folder, holding a fleet under manifests/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=self.root,
            env={**os.environ, **GIT_ENV},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
        return done.stdout.strip()

    def write(self, files: dict[str, str | bytes]) -> None:
        write_tree(self.root / "manifests", files)

    def delete(self, *names: str) -> None:
        for name in names:
            (self.root / "manifests" / name).unlink()

    def commit(self, message: str, files: dict[str, str | bytes] | None = None) -> str:
        if files:
            self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def push_to(self, remote: Path, message: str, files: dict[str, str | bytes]) -> str:
        """As an operator would: pull ``remote``'s main, commit ``files``, push back."""
        self.git("pull", "-q", "--ff-only", str(remote), "main")
        revision = self.commit(message, files)
        self.git("push", "-q", str(remote), "HEAD:main")
        return revision


@pytest.fixture
def fleet(tmp_path: Path) -> FleetRepo:
    return FleetRepo(tmp_path / "fleet")


# ---------------------------------------------------------------- a registry wired to a fleet


@dataclasses.dataclass
class Registry:
    """The CLI, the fleet repository and direct SQL access to one registry database."""

    grove: GroveRunner
    fleet: FleetRepo
    url: str

    def run(self, *args: str) -> Run:
        return self.grove(*args)

    def sql(self, statement: str, **params: Any) -> list[Any]:
        engine = create_engine(self.url)
        try:
            with engine.begin() as connection:
                result = connection.execute(text(statement), params)
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()

    def live(self) -> dict[str, dict[str, Any]]:
        """object id -> {"version", "state", "payload"} for every live model and rule."""
        engine = create_engine(self.url)
        out: dict[str, dict[str, Any]] = {}
        try:
            with engine.connect() as connection:
                for kind, table in tables.LIVE_TABLES.items():
                    for row in connection.execute(select(table)):
                        document = {"meta": row.meta, "payload": row.payload}
                        out[f"{kind}/{row.object_id}"] = {
                            "version": row.version,
                            "state": manifests.state_of(document),
                            "payload": row.payload,
                        }
        finally:
            engine.dispose()
        return out

    def content_hash(self) -> str:
        """One hash over every live object's content: equal registries, equal hashes."""
        engine = create_engine(self.url)
        try:
            with engine.connect() as connection:
                parts = []
                for kind, table in sorted(tables.LIVE_TABLES.items()):
                    for row in connection.execute(select(table).order_by(table.c.object_id)):
                        document = {"meta": row.meta, "payload": row.payload}
                        parts.append(f"{kind}/{row.object_id}={manifests.content_hash(document)}")
        finally:
            engine.dispose()
        return manifests.content_hash({"meta": {"objects": parts}, "payload": {}})

    def events(self) -> list[tuple[str, str]]:
        rows = self.sql("SELECT event_type, object_id FROM lifecycle_events ORDER BY id")
        return [(row[0], row[1]) for row in rows]

    def revisions(self) -> list[str]:
        return [row[0] for row in self.sql("SELECT revision FROM revisions ORDER BY id")]


@pytest.fixture
def registry(
    fleet: FleetRepo,
    db_url: str,
    grove: GroveRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Registry:
    monkeypatch.setenv("GROVE_REPO", str(fleet.root))
    monkeypatch.setenv("GROVE_DB_URL", db_url)
    monkeypatch.setenv("GROVE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert grove("db", "upgrade").code == 0
    return Registry(grove, fleet, db_url)
