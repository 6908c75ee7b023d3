"""GitOps flows end to end, drift, pull-request previews, saved plans, sources, schema."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from reconciler.base import errors, settings
from reconciler.gitops import applying, reconciling
from tests.conftest import FleetRepo, GroveRunner, model_yaml, rule_yaml
from tests.reconciling.conftest import Registry, small_fleet

# the same flows on PostgreSQL: in CI, not in the inner loop (`pytest -m "not slow"`)
pytestmark = pytest.mark.slow_on_pg

# The git source, not the database, is what these test: SQLite suffices.
GIT_SOURCE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_commit_version_bump_then_revert_rolls_back(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    registry.fleet.commit("new model", {"models/delta.yaml": model_yaml("delta")})
    assert registry.run("reconcile").code == 0
    assert "AIModel/delta" in registry.live()
    bump = registry.fleet.commit(
        "delta v2", {"models/delta.yaml": model_yaml("delta", priority="99").replace('"1"', '"2"')}
    )
    assert registry.run("reconcile").code == 0
    assert registry.live()["AIModel/delta"]["version"] == "2"
    registry.fleet.git("revert", "--no-edit", bump)
    result = registry.run("reconcile")
    assert result.code == 0, result.err
    live = registry.live()["AIModel/delta"]
    assert live["version"] == "1"
    assert live["payload"]["priority"] == 100
    assert registry.events()[-1] == ("model_versioned", "delta")


def test_deleting_an_enabled_model_is_refused_then_retire_and_delete_works(
    registry: Registry,
) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    registry.fleet.delete("models/gamma.yaml")
    registry.fleet.commit("delete gamma")
    refused = registry.run("reconcile")
    assert refused.code == 1
    assert "retire before remove" in refused.out
    assert "AIModel/gamma" in registry.live()
    registry.fleet.git("revert", "--no-edit", "HEAD")
    registry.fleet.commit(
        "retire", {"models/gamma.yaml": model_yaml("gamma", priority="10", state="retired")}
    )
    assert registry.run("reconcile").code == 0
    registry.fleet.delete("models/gamma.yaml")
    registry.fleet.commit("delete retired gamma")
    assert registry.run("reconcile").code == 0
    assert "AIModel/gamma" not in registry.live()


def test_drift_is_reported_then_corrected(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    _drift(registry, "beta", priority=999)
    status = json.loads(registry.run("status", "--json").out)
    drifted = next(c for c in status["conditions"] if c["type"] == "Drifted")
    assert drifted["status"] == "True"
    assert status["drifted"] == ["AIModel/beta"]
    assert status["health"] == "Degraded"
    assert status["sync"] == "OutOfSync"
    planned = registry.run("plan")
    assert "restore git's content" in planned.out
    assert "payload.priority: 999 -> 50" in planned.out
    assert registry.run("reconcile").code == 0
    assert registry.live()["AIModel/beta"]["payload"]["priority"] == 50
    assert registry.events()[-1] == ("drift_corrected", "beta")
    status = json.loads(registry.run("status", "--json").out)
    assert status["drifted"] == []
    assert status["health"] == "Healthy"


def _drift(registry: Registry, ident: str, **changes: object) -> None:
    payload = registry.live()[f"AIModel/{ident}"]["payload"]
    payload.update(changes)
    cast = "CAST(:p AS jsonb)" if registry.url.startswith("postgresql") else ":p"
    registry.sql(
        f"UPDATE model_registry SET payload = {cast} WHERE object_id = :i",  # noqa: S608
        p=json.dumps(payload),
        i=ident,
    )


def test_a_change_over_a_drifted_object_also_records_the_correction(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    _drift(registry, "gamma", priority=1)
    registry.fleet.commit(
        "off", {"models/gamma.yaml": model_yaml("gamma", priority="10", state="disabled")}
    )
    planned = registry.run("plan")
    assert "disable (enabled -> disabled)  [corrects drift]" in planned.out
    assert registry.run("reconcile").code == 0
    assert registry.events()[-2:] == [("model_disabled", "gamma"), ("drift_corrected", "gamma")]
    assert registry.live()["AIModel/gamma"]["payload"]["priority"] == 10


def test_an_edited_version_column_is_drift_too(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    registry.sql("UPDATE model_registry SET version = '7' WHERE object_id = 'gamma'")
    status = json.loads(registry.run("status", "--json").out)
    assert status["drifted"] == ["AIModel/gamma"]
    assert registry.run("reconcile").code == 0
    assert registry.live()["AIModel/gamma"]["version"] == "1"
    assert json.loads(registry.run("status", "--json").out)["drifted"] == []


def test_diff_between_branches_is_a_pull_request_preview(
    fleet: FleetRepo, grove: GroveRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fleet.commit(
        "fleet",
        {
            "models/only.yaml": model_yaml("only"),
            "models/other.yaml": model_yaml("other", capabilities="{speed: 0.9}"),
            "rules/think.yaml": rule_yaml("think"),
        },
    )
    fleet.git("checkout", "-q", "-b", "feature")
    fleet.commit("retire only", {"models/only.yaml": model_yaml("only", state="retired")})
    monkeypatch.chdir(fleet.root)
    result = grove("diff", "main", "feature")
    assert result.code == 1
    assert "P004 last-server: rule think" in result.out
    markdown = grove("diff", "main", "feature", "--format", "markdown")
    assert markdown.out.startswith("### Grove plan: refused")
    assert "| `~` | `AIModel/only` | retire (enabled -> retired) |" in markdown.out
    assert "**P004 last-server**" in markdown.out
    fleet.git("checkout", "-q", "main")
    fleet.git("checkout", "-q", "-b", "fine")
    fleet.commit("add", {"models/fresh.yaml": model_yaml("fresh")})
    ok = grove("diff", "main", "fine", "--format", "json")
    assert ok.code == 2
    assert [c["kind"] for c in json.loads(ok.out)["changes"]] == ["create"]
    assert grove("diff", "main", "main").code == 0
    assert not (tmp_path / "registry.db").exists()


def test_a_saved_plan_applies_unless_the_registry_moved(registry: Registry, tmp_path: Path) -> None:
    registry.fleet.commit("fleet", small_fleet())
    plan_file = tmp_path / "plan.json"
    assert registry.run("plan", "--out", str(plan_file)).code == 2
    assert registry.run("apply", "--plan", str(plan_file)).code == 0
    assert len(registry.live()) == 4
    again = registry.run("apply", "--plan", str(plan_file))
    assert again.code == 0
    assert "already applied" in again.out
    registry.fleet.commit("d", {"models/delta.yaml": model_yaml("delta")})
    stale_file = tmp_path / "stale.json"
    assert registry.run("plan", "--out", str(stale_file)).code == 2
    registry.fleet.commit("e", {"models/epsilon.yaml": model_yaml("epsilon")})
    assert registry.run("reconcile").code == 0
    stale = registry.run("apply", "--plan", str(stale_file))
    assert stale.code == 1
    assert "the registry moved since the plan was saved" in stale.err


def test_a_plan_that_disagrees_with_the_rows_applies_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    """A row the plan creates appears between the plan and the apply (written out of band,
    so the serial is unchanged): the apply stops as stale and leaves everything as it was."""
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    registry.fleet.commit("d", {"models/delta.yaml": model_yaml("delta")})
    config = settings.load(
        repo=str(registry.fleet.root), db_url=registry.url, data_dir=str(tmp_path / "data")
    )
    db = reconciling.open_database(config)
    try:
        outcome = reconciling.Reconciler(config, reconciling.open_source(config), db).plan()
        assert outcome.plan is not None
        registry.sql(
            "INSERT INTO model_registry (id, object_id, version, meta, payload, applied_hash,"
            " source_path, source_blob, created_at, updated_at) SELECT :id, 'delta', version,"
            " meta, payload, applied_hash, source_path, source_blob, created_at, updated_at"
            " FROM model_registry WHERE object_id = 'alpha'",
            id=uuid.uuid4().hex,
        )
        before = registry.revisions()
        with pytest.raises(errors.StalePlan, match="do not match this plan"):
            applying.apply(db, outcome.plan, actor="test")
    finally:
        db.dispose()
    assert registry.revisions() == before
    rows = registry.sql("SELECT object_id, applied_hash FROM model_registry ORDER BY object_id")
    hashes = dict(rows)
    assert hashes["delta"] == hashes["alpha"]  # the out-of-band row, untouched
    assert len(rows) == 4  # alpha, beta, gamma and that row: nothing of the plan was written


def test_a_tampered_plan_file_is_refused(registry: Registry, tmp_path: Path) -> None:
    registry.fleet.commit("fleet", small_fleet())
    plan_file = tmp_path / "plan.json"
    registry.run("plan", "--out", str(plan_file))
    plan = json.loads(plan_file.read_text())
    plan["changes"][0]["document"]["payload"]["priority"] = 1
    plan_file.write_text(json.dumps(plan))
    result = registry.run("apply", "--plan", str(plan_file))
    assert result.code == 1
    assert "no longer matches" in result.err
    plan_file.write_text("{}")
    assert "not a Grove plan file" in registry.run("apply", "--plan", str(plan_file)).err
    # not a plan's shape: one line naming where, never the values found in the file
    for text in ("[1]", "null", '"plan"', "[" * 100_000 + "]" * 100_000):
        plan_file.write_text(text)
        said = registry.run("apply", "--plan", str(plan_file))
        assert said.code == 1 and "not a Grove plan file" in said.err, said.err
    plan["stateSerial"] = "sk-ant-api03-secret"
    plan["changes"][0]["objectKind"] = {"key": "sk-ant-api03-secret"}
    plan_file.write_text(json.dumps(plan))
    said = registry.run("apply", "--plan", str(plan_file))
    assert said.code == 1 and "not a Grove plan file (stateSerial: " in said.err, said.err
    assert "sk-ant" not in said.err and len(said.err.strip().splitlines()) == 1
    assert registry.live() == {}


def test_commands_refuse_an_unmigrated_or_newer_database(
    fleet: FleetRepo,
    grove: GroveRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
) -> None:
    fleet.commit("fleet", small_fleet())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GROVE_REPO", str(fleet.root))
    if db_url.startswith("sqlite:///"):  # an empty file (no file at all is another message)
        Path(db_url.removeprefix("sqlite:///")).touch()
    for command in (["plan"], ["apply"], ["status"], ["reconcile"], ["protect", "x"]):
        result = grove(*command, "--db", db_url)
        assert result.code == 1
        assert result.err.endswith("has no Grove schema; run `grove db upgrade`\n"), result.err
        assert result.err.count("\n") == 1
    assert grove("db", "upgrade", "--db", db_url).out == "database migrated from empty to 0007\n"
    assert grove("db", "upgrade", "--db", db_url).out == "database already at schema 0007\n"
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    result = grove("plan", "--db", db_url)
    assert "is at schema 9999, newer than this grove knows (head 0007); upgrade grove" in result.err
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0007'"))
    engine.dispose()
    assert grove("db", "downgrade", "base", "--db", db_url).code == 0
    assert "has no Grove schema" in grove("plan", "--db", db_url).err


@GIT_SOURCE
def test_a_remote_file_url_is_mirrored_and_fetched(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.fleet.commit("fleet", small_fleet())
    monkeypatch.setenv("GROVE_REPO", f"file://{registry.fleet.root}")
    assert registry.run("reconcile").code == 0
    assert len(registry.live()) == 4
    assert list((tmp_path / "data" / "sources").iterdir())
    registry.fleet.commit("more", {"models/delta.yaml": model_yaml("delta")})
    assert registry.run("reconcile").code == 0
    assert "AIModel/delta" in registry.live()
    monkeypatch.setenv("GROVE_REPO", f"file://{tmp_path}/nowhere")
    result = registry.run("reconcile")
    assert result.code == 1
    assert result.err.startswith("grove: git clone failed for file://")


@pytest.mark.parametrize(
    "url", ["ext::sh -c touch% /tmp/pwned", "git://example.com/repo", "http://example.com/r.git"]
)
@GIT_SOURCE
def test_other_transports_are_refused(
    registry: Registry, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROVE_REPO", url)
    result = registry.run("reconcile")
    assert result.code == 1
    assert "only file://, https:// and ssh:// remotes are allowed" in result.err
    assert not Path("/tmp/pwned").exists()


@GIT_SOURCE
def test_credentials_in_a_remote_url_never_reach_messages(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROVE_REPO", "https://deploy:hunter2-secret@127.0.0.1:9/fleet.git")
    result = registry.run("reconcile")
    assert result.code == 1
    assert "hunter2" not in result.out + result.err
    assert "https://***@127.0.0.1:9/fleet.git" in result.err


@GIT_SOURCE
def test_symlinks_and_submodules_in_the_tree_are_errors(registry: Registry, tmp_path: Path) -> None:
    registry.fleet.commit("fleet", small_fleet())
    (registry.fleet.root / "manifests" / "models" / "link.yaml").symlink_to("/etc/passwd")
    registry.fleet.commit("link")
    result = registry.run("plan")
    assert result.code == 1
    assert "manifests/models/link.yaml:1: F003 symbolic links are not followed" in result.err
    registry.fleet.git("rm", "-q", "manifests/models/link.yaml")
    other = FleetRepo(tmp_path / "other")
    other.commit("x", {"m.yaml": model_yaml("x")})
    registry.fleet.git(
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        str(other.root),
        "manifests/vendored",
    )
    registry.fleet.commit("submodule")
    result = registry.run("plan")
    assert result.code == 1
    assert "manifests/vendored:1: F009 submodules are not read" in result.err


def test_a_plain_folder_works_without_git(
    grove: GroveRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    folder = tmp_path / "plain"
    shutil.copytree(Path(__file__).resolve().parents[2] / "manifests", folder / "manifests")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GROVE_DB_URL", db_url)
    assert grove("db", "upgrade").code == 0
    first = grove("reconcile", "--repo", str(folder))
    assert first.code == 0, first.err
    assert "Applied 10 change(s) at revision folder-" in first.out
    assert "In sync" in grove("reconcile", "--repo", str(folder)).out


@GIT_SOURCE
def test_a_ref_that_does_not_exist(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    result = registry.run("plan", "--ref", "no-such-branch")
    assert result.code == 1
    assert result.err.startswith("grove: ref 'no-such-branch' not found in ")


def test_a_missing_manifests_folder_counts_as_empty(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    result = registry.run("plan", "--path", "elsewhere")
    assert result.code == 1
    assert "P008" in result.out


@pytest.mark.slow
@GIT_SOURCE
def test_a_remote_that_never_answers_times_out(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loopback port that accepts connections and then says nothing: bounded by the setting."""
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    monkeypatch.setenv("GROVE_REPO", f"https://127.0.0.1:{port}/fleet.git")
    monkeypatch.setenv("GROVE_FETCH_TIMEOUT_S", "1")
    started = time.monotonic()
    try:
        result = registry.run("reconcile")
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        server.close()
    elapsed = time.monotonic() - started
    assert result.code == 1
    assert f"git clone failed for https://127.0.0.1:{port}/fleet.git" in result.err
    assert elapsed < 30  # bounded by the 1 s setting, not by git's defaults
    status = json.loads(registry.run("status", "--json").out)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
