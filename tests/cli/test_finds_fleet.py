"""Issue 14: the CLI finds its fleet, and read-only commands create nothing.

- ``grove up`` records its fleet repository and registry in ``.grove/config.json``
  (never a password); every command in that folder or below takes them as defaults,
  flags and ``GROVE_*`` still winning;
- a revision with no history in common with the applied one is P011 ("a different
  repository"), not P010 (a force-push);
- a refused one-off command leaves the status of a running loop alone;
- ``grove status``, ``grove plan`` and ``grove route`` write no file.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.base import errors, settings
from reconciler.store import coordination
from reconciler.store.engine import Database
from tests.api.conftest import free_port
from tests.api.test_processes import _env
from tests.conftest import REPO_ROOT, FleetRepo, GroveRunner, Registry, model_yaml
from tests.reconciling.conftest import small_fleet

# ---------------------------------------------------------------- the fleet file


def test_a_command_below_a_grove_up_folder_takes_its_fleet_flags_and_env_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / ".grove"
    recorded = settings.load(
        discover=False, repo=str(data / "fleet.git"), db_url=f"sqlite:///{data}/registry.db"
    ).model_copy(update={"data_dir": str(data)})
    written = settings.write_fleet_file(recorded)
    assert written == data / "config.json"
    assert [p.name for p in data.iterdir()] == ["config.json"]  # no temporary file left
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)
    found = settings.load()
    assert (found.repo, found.db_url, found.data_dir) == (
        str(data / "fleet.git"),
        f"sqlite:///{data}/registry.db",
        str(data),
    )
    assert settings.load(repo="/elsewhere").repo == "/elsewhere"
    monkeypatch.setenv("GROVE_DB_URL", "sqlite:////from/env.db")
    assert settings.load().db_url == "sqlite:////from/env.db"
    monkeypatch.chdir(tmp_path.parent)  # not at or below the grove up folder
    assert settings.load().repo == "."


def test_the_fleet_file_never_holds_a_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://alice:p@ss-canary@db.example:5432/grove?sslpassword=canary2&a=1"
    recorded = settings.load(discover=False, db_url=url).model_copy(
        update={"data_dir": str(tmp_path)}
    )
    text = settings.write_fleet_file(recorded).read_text()
    assert "canary" not in text and "p@ss" not in text
    assert json.loads(text)["db_url"] == "postgresql+psycopg://alice@db.example:5432/grove?a=1"


def test_a_damaged_fleet_file_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grove: GroveRunner
) -> None:
    (tmp_path / ".grove").mkdir()
    (tmp_path / ".grove" / "config.json").write_text("{not json")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(errors.ConfigError, match=r"config\.json: not a fleet file"):
        settings.load()
    result = grove("status")
    assert result.code == 1
    assert "config.json: not a fleet file written by grove up" in result.err
    assert "Traceback" not in result.err


# ---------------------------------------------------------------- P011 and one-off commands


def _stalled(registry: Registry) -> object:
    conditions = registry.sql("SELECT conditions FROM reconciler_state")[0][0]
    conditions = conditions if isinstance(conditions, dict) else json.loads(conditions)
    return conditions.get("Stalled")


def test_another_repository_is_p011_not_a_force_push(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    applied = registry.fleet.head()
    other = FleetRepo(tmp_path / "other")
    revision = other.commit("another fleet", {"models/solo.yaml": model_yaml("solo")})
    monkeypatch.setenv("GROVE_REPO", str(other.root))
    before = registry.content_hash()
    planned = registry.run("plan", "--json")
    assert planned.code == 1, planned.err
    codes = [v["code"] for v in json.loads(planned.out)["violations"]]
    assert codes[0] == "P011"
    assert "P010" not in codes
    text = registry.run("plan")
    assert f"revision {revision[:12]} of {other.root} shares no history" in text.out
    assert f"applied revision {applied[:12]}" in text.out
    assert "--repo or GROVE_REPO" in text.out
    assert "a force-push" not in text.out
    assert registry.run("reconcile").code == 1
    assert registry.content_hash() == before


def test_a_refused_one_off_leaves_the_status_of_a_running_loop_alone(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    healthy = _stalled(registry)
    other = FleetRepo(tmp_path / "other")
    other.commit("another fleet", {"models/solo.yaml": model_yaml("solo")})
    monkeypatch.setenv("GROVE_REPO", str(other.root))
    database = Database(registry.url)
    try:
        with database.transaction(write=True) as connection:  # a loop holds the lease
            assert coordination.acquire(connection, "loop-elsewhere", 60_000) is not None
        for command in (["reconcile"], ["plan"], ["apply"]):
            assert registry.run(*command).code == 1, command
        registry.run("status")  # reads, writes nothing
        assert _stalled(registry) == healthy  # the loop's conditions, untouched
        state = registry.sql("SELECT attempted_revision, last_error FROM reconciler_state")
        assert tuple(state[0]) == (registry.fleet.head(), None)
        with database.transaction(write=True) as connection:  # no loop any more
            coordination.release(connection, "loop-elsewhere")
    finally:
        database.dispose()
    assert registry.run("reconcile").code == 1  # the only reconciler: it records its refusal
    stalled = _stalled(registry)
    assert isinstance(stalled, dict)
    assert (stalled["status"], stalled["reason"]) == ("True", "PlanRefused")


# ---------------------------------------------------------------- read-only commands


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_status_plan_and_route_create_no_file(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    monkeypatch.delenv("GROVE_DATA_DIR")  # the default, .grove/ here
    commands = [["status"], ["plan"], ["route", "--task", "think"], ["route", "--json"]]
    for command in commands:  # on the registry, from a folder that is not the fleet
        registry.run(*command)
    monkeypatch.delenv("GROVE_REPO")
    monkeypatch.delenv("GROVE_DB_URL")
    for command in commands:  # nothing configured at all: no registry here
        assert registry.run(*command).code == 1, command
        assert registry.run(*command, "--db", "sqlite:///x.db").code == 1, command
    assert _listing(empty) == []


# ---------------------------------------------------------------- next to a running grove up


@pytest.fixture
def grove_up(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A running ``grove up`` in ``tmp_path`` (seeded from the example fleet): its URL and
    admin token, once its reconcile loop holds the lease."""
    shutil.copytree(REPO_ROOT / "manifests", tmp_path / "manifests")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "up", "--port", str(port)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    try:
        assert process.stdout is not None
        out = b""
        while b"  try: " not in out:  # the announcement, printed once the server listens
            assert select.select([process.stdout], [], [], 120)[0], "grove up printed nothing"
            chunk = os.read(process.stdout.fileno(), 65536)
            assert chunk, process.stderr.read()  # type: ignore[union-attr]
            out += chunk
        token = re.search(r"\(shown once, keep it\): (grove_\S+)", out.decode())
        assert token is not None, out
        database = Database(f"sqlite:///{tmp_path}/.grove/registry.db", create=False)
        try:
            for _ in range(600):
                with database.transaction() as connection:
                    if coordination.current(connection) is not None:
                        break
                time.sleep(0.05)
            else:
                raise AssertionError("the reconcile loop of grove up took no lease")
        finally:
            database.dispose()
        yield f"http://127.0.0.1:{port}", token.group(1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


@pytest.mark.slow
def test_next_to_a_running_grove_up_bare_commands_talk_about_its_fleet(
    grove_up: tuple[str, str],
    tmp_path: Path,
    grove: GroveRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, token = grove_up
    head = subprocess.run(
        ["git", "-C", str(tmp_path / ".grove" / "fleet.git"), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    below = tmp_path / "manifests" / "models"
    monkeypatch.chdir(below)  # in the folder of grove up, or below it
    status = grove("status", "--json")
    assert status.code == 0, status.err
    shown = json.loads(status.out)
    assert (shown["sync"], shown["health"]) == ("Synced", "Healthy")
    assert shown["desiredRevision"] == shown["lastAppliedRevision"] == head
    assert grove("plan").code == 0
    done = grove("reconcile")
    assert done.code == 0, done.err
    assert f"In sync at revision {head[:12]}" in done.out
    # a stray one-off on another repository is refused, and the server stays Healthy
    other = FleetRepo(tmp_path / "other")
    other.commit("another fleet", {"models/solo.yaml": model_yaml("solo")})
    stray = grove("reconcile", "--repo", str(other.root))
    assert stray.code == 1
    assert "P011" in stray.out
    answer = httpx.get(
        f"{url}/api/status", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    assert (answer["sync"], answer["health"]) == ("Synced", "Healthy"), answer
    assert answer["lastAppliedRevision"] == head
    assert not (below / ".grove").exists()
