"""Issue 13: ``grove db check``, and every command against a damaged or unreachable
registry: one line saying what is wrong and how to recover, never "internal error",
never the database's host, port, user, password or name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.conftest import free_port
from tests.conftest import GroveRunner, Registry, postgres_database
from tests.reconciling.conftest import small_fleet

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
# Commands that read or write the registry, each as an operator would type it.
COMMANDS = (
    ["status"],
    ["plan"],
    ["apply"],
    ["reconcile"],
    ["protect", "alpha"],
    ["reconcile", "--now"],
    ["token", "create", "--role", "viewer", "--name", "late"],
    ["db", "upgrade"],
)


def _file(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _one_line_with_recovery(err: str) -> None:
    assert err.count("\n") == 1, err
    assert "internal error" not in err
    assert "Traceback" not in err
    assert "grove db check" in err or "restore" in err, err


def test_a_healthy_registry_passes_on_each_backend(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    result = registry.run("db", "check")
    assert result.code == 0, result.err
    assert result.out.rstrip().endswith("healthy")
    assert "FAIL" not in result.out
    report = json.loads(registry.run("db", "check", "-o", "json").out)
    assert report["healthy"] is True
    assert report["recovery"] == ""
    names = [c["name"] for c in report["checks"]]
    if registry.url.startswith("sqlite"):
        assert names == ["file", "integrity", "foreign keys", "schema", "state"]
    else:
        assert names == ["connection", "schema", "state"]
    assert all(c["ok"] for c in report["checks"])
    assert "serial 1" in report["checks"][-1]["detail"]


def test_a_missing_file_is_reported_and_never_created(grove: GroveRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "registry.db"
    result = grove("db", "check", "--db", f"sqlite:///{missing}")
    assert result.code == 1
    assert f"no database file at {missing}" in result.out
    assert "grove db upgrade" in result.err
    assert not missing.exists()
    assert not missing.parent.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["plan"],
        ["route", "--capability", "reasoning"],
        ["protect", "alpha"],
        ["token", "create", "--role", "viewer", "--name", "late"],
    ],
)
def test_a_mistyped_registry_is_named_and_never_created(
    grove: GroveRunner, tmp_path: Path, command: list[str]
) -> None:
    """DESIGN section 5: read-only commands never create a database (they left an empty
    file behind); commands that need the schema say which file is missing and what to run."""
    missing = tmp_path / "nowhere" / "registy.db"
    result = grove(*command, "--db", f"sqlite:///{missing}")
    assert result.code == 1
    assert result.err == (
        f"grove: there is no registry database at {missing}: point --db / GROVE_DB_URL at "
        "the right file, or run `grove db upgrade` to create it (`grove up` makes its own)\n"
    )
    assert not missing.parent.exists()


@SQLITE_ONLY
def test_an_overwritten_header_fails_the_check_and_every_command(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    _overwrite(_file(registry.url), 0, b"this is not sqlite" * 200)
    result = registry.run("db", "check", "-o", "json")
    assert result.code == 1
    report = json.loads(result.out)
    assert report["healthy"] is False
    assert report["checks"][-1] == {
        "name": "integrity",
        "ok": False,
        "detail": "the registry database (SQLite) is unreadable: the file is not a database",
    }
    assert "restore the file from a backup" in report["recovery"]
    _one_line_with_recovery(result.err)
    for command in COMMANDS:
        answer = registry.run(*command)
        assert answer.code == 1, command
        assert "is unreadable: the file is not a database" in answer.err, (command, answer.err)
        _one_line_with_recovery(answer.err)


@SQLITE_ONLY
def test_damaged_pages_fail_the_integrity_check(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    assert registry.run("db", "check").code == 0
    path = _file(registry.url)
    for page in range(2, path.stat().st_size // 4096):  # every page but the header's
        _overwrite(path, page * 4096, b"\xa5" * 4096)
    result = registry.run("db", "check")
    assert result.code == 1
    assert "FAIL  integrity" in result.out
    assert "malformed" in result.out
    _one_line_with_recovery(result.err)
    for command in (["status"], ["plan"]):
        answer = registry.run(*command)
        assert answer.code == 1
        _one_line_with_recovery(answer.err)


@SQLITE_ONLY
def test_a_registry_emptied_in_place_says_so(registry: Registry) -> None:
    """Truncated to nothing, the file is a valid, empty SQLite database: no schema."""
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    _file(registry.url).write_bytes(b"")
    result = registry.run("db", "check")
    assert result.code == 1
    assert "FAIL  schema        no Grove schema" in result.out
    for command in (["status"], ["plan"]):
        answer = registry.run(*command)
        assert answer.code == 1
        assert answer.err.endswith("has no Grove schema; run `grove db upgrade`\n")


SECRETS = ("s3cret-pw", "grove_owner", "fleet_registry_db")


def test_an_unreachable_postgresql_is_named_by_reason_only(grove: GroveRunner) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://grove_owner:s3cret-pw@127.0.0.1:{port}/fleet_registry_db"
    result = grove("db", "check", "--db", url, "-o", "json")
    assert result.code == 1
    report = json.loads(result.out)
    assert report["location"] == "PostgreSQL"
    assert report["checks"] == [
        {
            "name": "connection",
            "ok": False,
            "detail": "the registry database (PostgreSQL) cannot be reached: connection refused",
        }
    ]
    said = [result.out + result.err]
    for command in COMMANDS:
        answer = grove(*command, "--db", url)
        assert answer.code == 1, command
        assert "cannot be reached: connection refused" in answer.err, (command, answer.err)
        said.append(answer.out + answer.err)
    for text in said:
        assert "internal error" not in text
        for secret in (*SECRETS, "127.0.0.1", str(port)):
            assert secret not in text, (secret, text)


@pytest.mark.slow  # about two seconds: a PostgreSQL database of its own, migrated by the CLI
def test_an_unmigrated_postgresql_database_says_to_upgrade(
    grove: GroveRunner, postgres_admin: str
) -> None:
    with postgres_database(postgres_admin) as url:
        result = grove("db", "check", "--db", url)
        assert result.code == 1
        assert "ok    connection    connected (PostgreSQL" in result.out
        assert "FAIL  schema        no Grove schema" in result.out
        assert result.err == "grove: schema: no Grove schema; to recover: run `grove db upgrade`\n"
        assert grove("db", "upgrade", "--db", url).code == 0
        assert grove("db", "check", "--db", url).code == 0


def test_a_registry_file_that_cannot_be_created_is_one_line(
    grove: GroveRunner, tmp_path: Path
) -> None:
    (tmp_path / "plain-file").write_text("not a folder")
    url = f"sqlite:///{tmp_path}/plain-file/registry.db"
    result = grove("db", "upgrade", "--db", url)  # status would not create it: no such file
    assert result.code == 1
    assert result.err.startswith("grove: the registry database (SQLite) file cannot be created: ")
    assert result.err.endswith(
        "; check that this user may write its folder (GROVE_DATA_DIR, GROVE_DB_URL)\n"
    )
    assert result.err.count("\n") == 1


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://grove:pw-1@db/grove", "postgresql+psycopg://grove:***@db/grove"),
        (
            "postgresql://db/grove?password=pw-1&sslmode=require",
            "postgresql://db/grove?password=***&sslmode=require",
        ),
        (
            "postgresql://u@db/g?sslmode=require&PassWord=pw-1#x",
            "postgresql://u@db/g?sslmode=require&PassWord=***#x",
        ),
        ("postgresql://u:pw-1@db/g?sslpassword=pw-1", "postgresql://u:***@db/g?sslpassword=***"),
        ("sqlite:///.grove/registry.db", "sqlite:///.grove/registry.db"),
        ("postgresql://alice:p@ss@h/d?options=a@b", "postgresql://alice:***@h/d?options=a@b"),
    ],
)
def test_a_database_password_is_masked_in_the_user_part_and_the_query(url: str, shown: str) -> None:
    from reconciler.store.engine import redact

    assert redact(url) == shown
