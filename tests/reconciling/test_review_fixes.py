"""Behaviours an operator relies on that a docs review found wanting (kept fixed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.base import settings
from reconciler.manifests import loading
from tests.conftest import FleetRepo, GroveRunner, model_yaml
from tests.reconciling.conftest import Registry, small_fleet

# the same flows on PostgreSQL: in CI, not in the inner loop (`pytest -m "not slow"`)
pytestmark = pytest.mark.slow_on_pg


def _start(registry: Registry) -> str:
    revision = registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    return revision


def _condition(registry: Registry, kind: str) -> dict[str, str]:
    status = json.loads(registry.run("status", "--json").out)
    found: dict[str, str] = next(c for c in status["conditions"] if c["type"] == kind)
    return found


def test_a_row_deleted_out_of_band_is_noticed_and_restored(registry: Registry) -> None:
    _start(registry)
    registry.sql("DELETE FROM model_registry WHERE object_id = 'gamma'")
    status = json.loads(registry.run("status", "--json").out)
    assert status["sync"] == "OutOfSync"
    assert registry.run("reconcile").code == 0
    assert "AIModel/gamma" in registry.live()


def test_a_deleted_object_of_a_multi_document_file_comes_back(registry: Registry) -> None:
    registry.fleet.commit(
        "pair", {"models/pair.yaml": model_yaml("left") + "---\n" + model_yaml("right")}
    )
    assert registry.run("reconcile").code == 0
    registry.sql("DELETE FROM model_registry WHERE object_id = 'right'")
    assert registry.run("reconcile").code == 0
    assert sorted(registry.live()) == ["AIModel/left", "AIModel/right"]


def test_a_forced_apply_updates_the_conditions_and_says_it_was_forced(registry: Registry) -> None:
    _start(registry)
    registry.fleet.delete("models/gamma.yaml")
    registry.fleet.commit("drop gamma")
    assert registry.run("reconcile").code == 1
    assert _condition(registry, "Stalled")["status"] == "True"
    forced = registry.run("apply", "--force")
    assert forced.code == 0
    assert "OVERRIDDEN by --force" in forced.out
    assert "nothing will be applied" not in forced.out
    assert _condition(registry, "Stalled")["status"] == "False"
    assert _condition(registry, "Ready")["status"] == "True"


def test_a_temporary_error_is_not_stalled(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _start(registry)
    monkeypatch.setenv("GROVE_REPO", "file:///nonexistent/fleet")
    assert registry.run("reconcile").code == 1
    monkeypatch.setenv("GROVE_REPO", str(registry.fleet.root))
    stalled = _condition(registry, "Stalled")
    assert stalled["status"] == "False"
    assert stalled["reason"] == "Retrying"
    assert registry.sql("SELECT attempted_revision FROM reconciler_state")[0][0] is not None


def test_last_transition_time_moves_only_when_the_status_flips(registry: Registry) -> None:
    _start(registry)
    first = _condition(registry, "Stalled")["lastTransitionTime"]
    registry.fleet.commit("more", {"models/delta.yaml": model_yaml("delta")})
    assert registry.run("reconcile").code == 0
    assert _condition(registry, "Stalled")["lastTransitionTime"] == first
    registry.fleet.delete("models/delta.yaml")
    registry.fleet.commit("drop delta")
    registry.run("reconcile")
    assert _condition(registry, "Stalled")["lastTransitionTime"] != first


def test_protection_reason_is_shown_and_protecting_is_an_event(registry: Registry) -> None:
    _start(registry)
    registry.run("protect", "think", "--reason", "billing depends on it")
    registry.fleet.delete("rules/think.yaml")
    registry.fleet.commit("drop think")
    plan = json.loads(registry.run("plan", "--json").out)
    violation = next(v for v in plan["violations"] if v["code"] == "P007")
    assert violation["message"] == "RoutingRule/think is protected (billing depends on it)"
    registry.run("unprotect", "think")
    assert registry.events()[-2:] == [
        ("object_protected", "think"),
        ("object_unprotected", "think"),
    ]


def test_a_revert_keeps_the_commit_that_introduced_each_version(registry: Registry) -> None:
    first = _start(registry)
    registry.fleet.commit(
        "beta v2", {"models/beta.yaml": model_yaml("beta", priority="60").replace('"1"', '"2"')}
    )
    assert registry.run("reconcile").code == 0
    registry.fleet.git("revert", "--no-edit", "HEAD")
    assert registry.run("reconcile").code == 0
    rows = registry.sql(
        "SELECT revision FROM object_versions WHERE object_id = 'beta' AND version = '1'"
    )
    assert rows[0][0] == first


def test_a_revision_without_changes_is_reported_as_recorded(registry: Registry) -> None:
    _start(registry)
    (registry.fleet.root / "NOTES.md").write_text("x\n")
    registry.fleet.commit("notes")
    result = registry.run("reconcile")
    assert result.out.startswith("Recorded revision ")
    assert "no changes to the registry" in result.out


def test_diff_uses_the_configured_delete_ratio_and_speaks_of_revisions(
    fleet: FleetRepo, grove: GroveRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.commit(
        "fleet",
        {f"models/m{i}.yaml": model_yaml(f"m{i}", state="retired") for i in range(4)}
        | {"models/keep.yaml": model_yaml("keep")},
    )
    fleet.git("checkout", "-q", "-b", "trim")
    fleet.delete("models/m0.yaml", "models/m1.yaml")
    fleet.commit("trim")
    monkeypatch.chdir(fleet.root)
    assert grove("diff", "main", "trim").code == 2
    monkeypatch.setenv("GROVE_MAX_DELETE_RATIO", "0.2")
    assert "P009" in grove("diff", "main", "trim").out
    same = grove("diff", "main", "main")
    assert "No changes between the two revisions." in same.out
    assert "registry serial" not in same.out


def test_the_default_database_lives_in_the_data_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # the defaults of a folder with no grove up above it
    assert settings.load().db_url == "sqlite:///.grove/registry.db"
    monkeypatch.setenv("GROVE_DATA_DIR", "/var/lib/grove")
    assert settings.load().db_url == "sqlite:////var/lib/grove/registry.db"
    monkeypatch.setenv("GROVE_DB_URL", "sqlite:///x.db")
    assert settings.load().db_url == "sqlite:///x.db"


def test_a_remote_works_with_the_default_relative_data_folder(
    fleet: FleetRepo, grove: GroveRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.commit("fleet", small_fleet())
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("GROVE_REPO", f"file://{fleet.root}")
    assert grove("db", "upgrade").code == 0
    result = grove("reconcile")
    assert result.code == 0, result.err
    assert (workdir / ".grove" / "registry.db").exists()
    assert list((workdir / ".grove" / "sources").iterdir())


def test_a_symlink_with_any_name_in_git_is_refused(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    (registry.fleet.root / "manifests" / "models" / "more").symlink_to("/etc")
    registry.fleet.commit("link to a folder")
    result = registry.run("plan")
    assert result.code == 1
    assert "manifests/models/more:1: F003" in result.err


def test_an_explicit_subfolder_is_not_resolved_to_the_enclosing_repository(
    registry: Registry, tmp_path: Path
) -> None:
    registry.fleet.commit("fleet", small_fleet())
    sub = registry.fleet.root / "manifests"
    result = registry.run("plan", "--repo", str(sub), "--path", "models")
    assert result.code == 2  # read from the folder on disk, as a plain folder source
    assert "folder-" in result.out


def test_every_reconciler_takes_the_delete_ratio_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`grove up` and the API's writes built their reconcilers without it, so they refused
    at the default 50% whatever GROVE_MAX_DELETE_RATIO said."""
    from reconciler.gitops import reconciling
    from reconciler.sources.folder import FolderSource

    monkeypatch.setenv("GROVE_MAX_DELETE_RATIO", "0.9")
    config = settings.load()
    source = FolderSource(str(tmp_path), loading.Limits.of(config))
    assert reconciling.Reconciler(config, source, None).max_delete_ratio == 0.9
    assert (
        reconciling.Reconciler(config, source, None, max_delete_ratio=0.1).max_delete_ratio == 0.1
    )
