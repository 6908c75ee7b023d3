"""A registry restored from an older backup: the snapshot follows it back (it is what the
registry holds) and says so, since a state serial otherwise only grows."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from reconciler.routing import snapshots
from reconciler.store.engine import Database
from tests.conftest import Registry, model_yaml
from tests.reconciling.conftest import small_fleet


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # a backup is a SQLite file
def test_a_registry_restored_from_an_older_backup_is_followed_and_logged(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    path = Path(registry.url.removeprefix("sqlite:///"))
    backup = tmp_path / "backup.db"
    with sqlite3.connect(path) as source, sqlite3.connect(backup) as target:
        source.backup(target)
    registry.fleet.commit("delta", {"models/delta.yaml": model_yaml("delta")})
    assert registry.run("reconcile").code == 0
    db = Database(registry.url)
    try:
        follower = snapshots.Snapshots(db, allow_local_endpoints=False)
        assert follower.refresh()
        newer = follower.current.serial
        assert "delta" in follower.current.models
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        backup.replace(path)
        with caplog.at_level(logging.WARNING, logger="grove"):
            assert follower.refresh()
    finally:
        db.dispose()
    assert follower.current.serial < newer
    assert "delta" not in follower.current.models
    went_back = [r for r in caplog.records if r.getMessage() == "registry-went-back"]
    assert [r.fields for r in went_back] == [  # type: ignore[attr-defined]
        {"serial": follower.current.serial, "was": newer}
    ]
