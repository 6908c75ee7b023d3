"""A real Grove server for the console's browser tests and the Lighthouse step:
``python -m reconciler.api`` on a free loopback port, its reconcile loop on, over a fleet
repository in a temporary folder and a migrated SQLite registry, with one token per role.

Used by tests/browser/conftest.py (the ``grove_server`` and ``start_grove`` fixtures) and
by tests/lighthouse/run.py, which runs outside pytest: nothing here needs a fixture.
It never starts a browser and never sends traffic beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from reconciler.store import migrating, tokens
from reconciler.store.engine import Database
from tests.api.conftest import free_port
from tests.api.test_processes import _env, _wait_for
from tests.conftest import FleetRepo
from tests.reconciling.conftest import small_fleet

ROLES = ("admin", "operator", "viewer")


@dataclasses.dataclass
class GroveServer:
    """A running server and what a test needs to drive it.

    ``tokens`` maps a role to its token's value; the token's name (a commit's author) is
    the role itself. ``repo`` is the bare repository the server reads and commits to;
    ``worktree`` is a clone a test changes "upstream" through (``worktree.push_to(repo, ...)``).
    """

    url: str
    port: int
    tokens: dict[str, str]
    repo: Path
    worktree: FleetRepo
    db_url: str
    env: dict[str, str]
    process: subprocess.Popen[str]

    def token(self, role: str) -> str:
        return self.tokens[role]

    def git(self, *args: str) -> str:
        """``git ARGS`` in the repository the server commits to (``log``, ``show``)."""
        return subprocess.run(
            ["git", "--git-dir", str(self.repo), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()

    def api(self, role: str = "operator") -> httpx.Client:
        """A client of the JSON API with ``role``'s token (close it, or use ``with``)."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.tokens[role]}"},
            timeout=30,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, str]:
        """Send ``sig``; the exit code and what the server wrote on stderr."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            _, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err


def prepare(
    root: Path,
    fleet: Mapping[str, str | bytes] | None = None,
    *,
    template: Path | None = None,
    **extra_env: str,
) -> tuple[dict[str, str], dict[str, str], Path, FleetRepo, str]:
    """The fleet (``small_fleet()`` unless given; ``{}`` is an empty fleet) in a bare
    repository under ``root``, a migrated registry (SQLite, or ``GROVE_DB_URL`` when
    given: an empty database), a token per role and the server's environment:
    (env, tokens, bare repo, worktree, database URL). ``template``: a migrated SQLite
    registry (tests/conftest.py's ``sqlite_template``) copied instead of migrating a new
    one (a millisecond against a quarter of a second)."""
    worktree = FleetRepo(root / "fleet")
    worktree.commit("fleet", dict(small_fleet() if fleet is None else fleet))
    bare = root / "fleet.git"
    worktree.git("clone", "-q", "--bare", str(worktree.root), str(bare))
    # an empty database of the test's own (PostgreSQL), or a new SQLite file
    db_url = extra_env.pop("GROVE_DB_URL", "")
    if not db_url and template is not None:
        shutil.copyfile(template, root / "registry.db")
        (root / "registry.db").chmod(0o600)  # as Grove creates it
    db_url = db_url or f"sqlite:///{root / 'registry.db'}"
    db = Database(db_url)
    try:
        migrating.upgrade(db)  # at head already when copied: nothing to do
        with db.transaction(write=True) as connection:
            made = {
                role: tokens.create(connection, name=role, role=role, created_by="test")
                for role in ROLES
            }
    finally:
        db.dispose()
    env = _env(
        GROVE_REPO=str(bare),
        GROVE_DB_URL=db_url,
        GROVE_DATA_DIR=str(root / "data"),
        **extra_env,
    )
    return env, made, bare, worktree, db_url


@contextlib.contextmanager
def grove_server(
    root: Path,
    fleet: Mapping[str, str | bytes] | None = None,
    *args: str,
    interval: str = "30s",
    template: Path | None = None,
    **extra_env: str,
) -> Iterator[GroveServer]:
    """A server over a new fleet in ``root``, answering and reconciled once; stopped at
    the end. ``args`` go to ``python -m reconciler.api`` (``--no-loop``, ``--workers 2``);
    ``template`` as :func:`prepare` takes it."""
    root.mkdir(parents=True, exist_ok=True)
    env, made, bare, worktree, db_url = prepare(root, fleet, template=template, **extra_env)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler.api",
            "--port",
            str(port),
            "--interval",
            interval,
            *args,
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = GroveServer(
        f"http://127.0.0.1:{port}", port, made, bare, worktree, db_url, env, process
    )
    try:
        _wait_for(f"{server.url}/healthz", process)
        if "--no-loop" not in args:
            _wait_for_first_reconcile(server)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=30)


def _wait_for_first_reconcile(server: GroveServer, timeout: float = 60) -> None:
    """Until the loop has applied a revision, so that the first page shows the fleet."""
    deadline = time.monotonic() + timeout
    last: object = None
    with server.api("viewer") as client:
        while time.monotonic() < deadline:
            response = client.get("/api/status")
            if response.status_code == 200:
                last = response.json()
                if _applied(last):
                    return
            time.sleep(0.02)
    raise AssertionError(f"the first reconcile did not finish within {timeout}s: {last!r}")


def _applied(status: object) -> bool:
    if not isinstance(status, dict):
        return False
    return bool(status.get("lastAppliedRevision"))
