"""``grove rollback``: a model goes back to an earlier version through a commit, the
replaced version is quarantined, and the registry follows on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FleetRepo, Registry, model_yaml, rule_yaml


def model(ident: str, version: str, **payload: str) -> str:
    return model_yaml(ident, **payload).replace('version: "1"', f'version: "{version}"')


@pytest.fixture
def bare(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fleet as a bare repository (what Grove pushes to), GROVE_REPO pointing at it."""
    fleet = registry.fleet
    fleet.commit(
        "fleet",
        {
            "models/alpha.yaml": model("alpha", "1", priority="90"),
            "models/beta.yaml": model("beta", "1", priority="50"),
            "rules/think.yaml": rule_yaml("think"),
        },
    )
    path = tmp_path / "fleet.git"
    fleet.git("clone", "-q", "--bare", str(fleet.root), str(path))
    monkeypatch.setenv("GROVE_REPO", str(path))
    assert registry.run("reconcile").code == 0
    return path


def land(registry: Registry, bare: Path, message: str, files: dict[str, str]) -> None:
    """Commit in the operator's clone, push to the fleet, reconcile."""
    registry.fleet.push_to(bare, message, dict(files))
    result = registry.run("reconcile")
    assert result.code == 0, result.err


def last_commit(bare: Path) -> tuple[str, str]:
    out = FleetRepo.__new__(FleetRepo)
    out.root = bare
    author, subject = out.git("log", "-1", "--format=%an|%s").split("|", 1)
    return author, subject


def test_a_bad_version_is_rolled_back_and_quarantined(
    registry: Registry, bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    land(registry, bare, "alpha 2", {"models/alpha.yaml": model("alpha", "2", priority="95")})
    assert registry.live()["AIModel/alpha"]["version"] == "2"
    monkeypatch.setenv("GIT_AUTHOR_NAME", "whoever-runs-the-process")  # the caller still authors

    result = registry.run("rollback", "alpha")
    assert result.code == 0, result.err
    assert "version 2 -> 1" in result.out and "applied" in result.out
    live = registry.live()["AIModel/alpha"]
    assert live["version"] == "1" and live["payload"]["priority"] == 90
    author, subject = last_commit(bare)
    assert (
        author.startswith("cli-")
        and subject == "grove: rollback AIModel alpha to version 1 (from 2)"
    )
    assert registry.sql("SELECT version FROM quarantined_versions WHERE object_id = 'alpha'") == [
        ("2",)
    ]

    # Rolling back the rollback means going to version 2 again: refused, nothing committed.
    refused = registry.run("rollback", "alpha")
    assert refused.code == 1
    assert "Rollback: " in refused.err and " -> rollback " in refused.err
    assert "P003 version-quarantined" in refused.err and "nothing was committed" in refused.err
    assert last_commit(bare)[1] == subject

    # Reverting the rollback would bring the quarantined version back: refused (P003).
    fleet = registry.fleet
    fleet.git("pull", "-q", "--ff-only", str(bare), "main")
    fleet.git("revert", "--no-edit", "HEAD")
    fleet.git("push", "-q", str(bare), "HEAD:main")
    again = registry.run("reconcile")
    assert again.code == 1 and "P003" in again.out + again.err
    assert registry.live()["AIModel/alpha"]["version"] == "1"


def test_the_state_stays_and_other_objects_of_the_commit_are_left_alone(
    registry: Registry, bare: Path
) -> None:
    land(
        registry,
        bare,
        "alpha 2 and beta 2 together",
        {
            "models/alpha.yaml": model("alpha", "2", priority="95"),
            "models/beta.yaml": model("beta", "2", priority="55"),
        },
    )
    land(
        registry,
        bare,
        "disable alpha",
        {"models/alpha.yaml": model("alpha", "2", priority="95", state="disabled")},
    )
    result = registry.run("rollback", "alpha")
    assert result.code == 0, result.err
    live = registry.live()
    assert live["AIModel/alpha"]["version"] == "1"
    assert live["AIModel/alpha"]["state"] == "disabled"  # operational state kept
    assert live["AIModel/beta"]["version"] == "2"  # same commit, another object: untouched


def test_to_a_named_version(registry: Registry, bare: Path) -> None:
    land(registry, bare, "alpha 2", {"models/alpha.yaml": model("alpha", "2", priority="91")})
    land(registry, bare, "alpha 3", {"models/alpha.yaml": model("alpha", "3", priority="92")})
    result = registry.run("rollback", "alpha", "--to", "1")
    assert result.code == 0, result.err
    assert registry.live()["AIModel/alpha"]["version"] == "1"
    quarantined = registry.sql("SELECT version FROM quarantined_versions ORDER BY version")
    assert quarantined == [("3",)]  # only the version that was replaced


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("beta",), "nothing to roll back to"),
        (("alpha", "--to", "7"), "never had version 7"),
        (("alpha", "--to", "2"), "at version 2 already"),
        (("nobody",), "no manifest defines AIModel nobody"),
    ],
)
def test_impossible_rollbacks_change_nothing(
    registry: Registry, bare: Path, args: tuple[str, ...], message: str
) -> None:
    land(registry, bare, "alpha 2", {"models/alpha.yaml": model("alpha", "2", priority="95")})
    before = last_commit(bare), registry.content_hash()
    result = registry.run("rollback", *args)
    assert result.code == 1
    assert message in result.err
    assert "Traceback" not in result.err
    assert (last_commit(bare), registry.content_hash()) == before
    assert registry.sql("SELECT COUNT(*) FROM quarantined_versions") == [(0,)]


def test_a_working_tree_is_not_pushed_to(
    registry: Registry, bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    land(registry, bare, "alpha 2", {"models/alpha.yaml": model("alpha", "2", priority="95")})
    registry.fleet.git("pull", "-q", "--ff-only", str(bare), "main")
    monkeypatch.setenv("GROVE_REPO", str(registry.fleet.root))
    result = registry.run("rollback", "alpha")
    assert result.code == 1
    assert "bare repository" in result.err and "branch is currently checked out" in result.err
    assert registry.live()["AIModel/alpha"]["version"] == "2"


def test_a_rule_is_rolled_back_too(registry: Registry, bare: Path) -> None:
    rule_v2 = rule_yaml("think", minScore="0.7", enabled="false").replace(
        'version: "1"', 'version: "2"'
    )
    land(registry, bare, "think 2, disabled", {"rules/think.yaml": rule_v2})
    result = registry.run("rollback", "think", "--type", "RoutingRule")
    assert result.code == 0, result.err
    live = registry.live()["RoutingRule/think"]
    assert live["version"] == "1" and live["payload"]["minScore"] == 0.0  # the default again
    assert live["payload"]["enabled"] is False  # its on/off switch stays as it is now


def test_a_commit_where_the_file_did_not_parse_is_passed_over(
    registry: Registry, bare: Path
) -> None:
    """The file's history may hold a commit whose YAML is broken (fixed by the next one):
    the rollback looks further back instead of stopping there."""
    registry.fleet.push_to(bare, "alpha broken", {"models/alpha.yaml": "meta: [unclosed\n"})
    land(registry, bare, "alpha 2", {"models/alpha.yaml": model("alpha", "2", priority="93")})
    result = registry.run("rollback", "alpha", "--to", "1")
    assert result.code == 0, result.err
    assert registry.live()["AIModel/alpha"]["version"] == "1"
