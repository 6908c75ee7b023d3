"""``grove rollback``: a model goes back to an earlier version through a commit, the
replaced version is quarantined, and the registry follows on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FleetRepo, Registry, model_yaml, rule_yaml

# about two seconds each on PostgreSQL: many commits and reconciles
pytestmark = pytest.mark.slow_on_pg


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


def git_of(bare: Path) -> FleetRepo:
    repo = FleetRepo.__new__(FleetRepo)
    repo.root = bare
    return repo


def quarantined(registry: Registry) -> list[tuple[str, str]]:
    rows = registry.sql(
        "SELECT object_id, version FROM quarantined_versions ORDER BY object_id, version"
    )
    return [(row[0], row[1]) for row in rows]


def test_a_bad_version_is_reverted_by_git_revert_and_only_it_is_quarantined(
    registry: Registry, bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    land(registry, bare, "alpha 2", {"models/alpha.yaml": model("alpha", "2", priority="95")})
    bad = git_of(bare).git("rev-parse", "main")
    assert registry.live()["AIModel/alpha"]["version"] == "2"
    monkeypatch.setenv("GIT_AUTHOR_NAME", "whoever-runs-the-process")  # the caller still authors

    result = registry.run("rollback", "alpha")
    assert result.code == 0, result.err
    assert "version 2 -> 1" in result.out and "applied" in result.out
    assert f"a git revert of {bad[:12]}" in result.out
    live = registry.live()["AIModel/alpha"]
    assert live["version"] == "1" and live["payload"]["priority"] == 90
    repo = git_of(bare)
    assert repo.git("rev-parse", "main^") == bad  # the revert sits on the bad commit
    author, subject = last_commit(bare)
    assert author.startswith("cli-")
    assert subject == "grove: rollback AIModel alpha to version 1 (from 2)"
    assert f"This reverts commit {bad}." in repo.git("log", "-1", "--format=%b")
    # a revert: the tree is the bad commit's parent's again
    assert repo.git("rev-parse", "main^{tree}") == repo.git("rev-parse", f"{bad}^^{{tree}}")
    assert quarantined(registry) == [("alpha", "2")]
    assert ("model_rolled_back", "alpha") in registry.events()

    # Rolling back again would bring the bad version back: nothing to roll back.
    again = registry.run("rollback", "alpha")
    assert again.code == 0, again.err
    head = repo.git("rev-parse", "main")
    assert f"nothing to roll back: version 1 is live since {head[:12]}" in again.out
    assert f"(reverted in {head[:12]})" in again.out
    assert repo.git("rev-parse", "main") == head and quarantined(registry) == [("alpha", "2")]

    # Reverting the rollback by hand would bring the quarantined version back: refused (P003).
    fleet = registry.fleet
    fleet.git("pull", "-q", "--ff-only", str(bare), "main")
    fleet.git("revert", "--no-edit", "HEAD")
    fleet.git("push", "-q", str(bare), "HEAD:main")
    refused = registry.run("reconcile")
    assert refused.code == 1 and "P003" in refused.out + refused.err
    assert registry.live()["AIModel/alpha"]["version"] == "1"


def test_after_a_revert_by_hand_there_is_nothing_to_roll_back(
    registry: Registry, bare: Path
) -> None:
    """The incident of issue 14: the operator already ran `git revert` on the bad version;
    `grove rollback` must not "roll back" to the bad one and quarantine the good one."""
    land(registry, bare, "alpha 2", {"models/alpha.yaml": model("alpha", "2", priority="95")})
    fleet = registry.fleet
    fleet.git("revert", "--no-edit", "HEAD")
    reverted = fleet.head()
    # another object changes in the same push: the applied revision is not the revert
    fleet.commit("beta 2", {"models/beta.yaml": model("beta", "2", priority="51")})
    fleet.git("push", "-q", str(bare), "HEAD:main")
    assert registry.run("reconcile").code == 0
    applied = fleet.head()
    assert registry.live()["AIModel/alpha"]["version"] == "1"
    before = git_of(bare).git("rev-parse", "main"), registry.content_hash()

    result = registry.run("rollback", "alpha")
    assert result.code == 0, result.err
    assert result.out.strip() == (
        f"AIModel/alpha: nothing to roll back: version 1 is live since {applied[:12]} "
        f"(reverted in {reverted[:12]})"
    )
    assert (git_of(bare).git("rev-parse", "main"), registry.content_hash()) == before
    assert quarantined(registry) == []
    data = json.loads(registry.run("rollback", "alpha", "-o", "json").out)
    assert data["change"] == "nothing" and data["quarantined"] == [] and data["revision"] is None
    assert (data["liveSince"], data["revertedIn"]) == (applied, reverted)

    # ... and after that a PATCH-like change gets a fresh version, which rolls back to 1.
    land(registry, bare, "alpha 3", {"models/alpha.yaml": model("alpha", "3", priority="97")})
    done = registry.run("rollback", "alpha")
    assert done.code == 0 and "version 3 -> 1" in done.out, done.out + done.err
    assert quarantined(registry) == [("alpha", "3")]


def test_a_dry_run_changes_nothing_byte_for_byte(
    registry: Registry, bare: Path, db_url: str
) -> None:
    land(registry, bare, "alpha 2", {"models/alpha.yaml": model("alpha", "2", priority="95")})
    bad = git_of(bare).git("rev-parse", "main")

    def snapshot() -> tuple[object, ...]:
        files = tuple(
            (str(path.relative_to(bare)), path.read_bytes())
            for path in sorted(bare.rglob("*"))
            if path.is_file()
        )
        database = (
            Path(db_url.removeprefix("sqlite:///")).read_bytes() if "sqlite" in db_url else b""
        )
        return (
            files,
            database,
            registry.content_hash(),
            quarantined(registry),
            registry.events(),
            registry.revisions(),
        )

    before = snapshot()
    result = registry.run("rollback", "alpha", "--dry-run")
    assert result.code == 0, result.err
    assert snapshot() == before
    assert "grove: rollback AIModel alpha to version 1 (from 2)" in result.out
    assert f"This reverts commit {bad}." in result.out
    assert "-  priority: 95" in result.out.replace('"', "") or "-  priority: 95" in result.out
    assert "+  priority: 90" in result.out
    assert "Plan" in result.out and "version 2 -> 1" in result.out
    assert "nothing was committed, applied or quarantined" in result.err

    data = json.loads(registry.run("rollback", "alpha", "--dry-run", "-o", "json").out)
    assert data["change"] == "dry-run" and data["method"] == "revert" and data["undoes"] == bad
    assert data["plan"]["changes"][0]["versionTo"] == "1" and data["quarantined"] == []
    assert "This reverts commit" in data["message"] and "+  priority: 90" in data["diff"]
    assert snapshot() == before


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
    together = git_of(bare).git("rev-parse", "main^")
    result = registry.run("rollback", "alpha")
    assert result.code == 0, result.err
    assert "a commit restoring its previous document" in result.out
    live = registry.live()
    assert live["AIModel/alpha"]["version"] == "1"
    assert live["AIModel/alpha"]["state"] == "disabled"  # operational state kept
    assert live["AIModel/beta"]["version"] == "2"  # same commit, another object: untouched
    body = git_of(bare).git("log", "-1", "--format=%b")
    assert f'undoes {together[:12]} ("alpha 2 and beta 2 together")' in body
    assert "This reverts commit" not in body
    assert quarantined(registry) == [("alpha", "2")]


@pytest.mark.slow  # two to five seconds: a dozen commits, rollbacks and reconciles
def test_back_one_version_at_a_time_or_to_a_named_one(registry: Registry, bare: Path) -> None:
    land(registry, bare, "alpha 2", {"models/alpha.yaml": model("alpha", "2", priority="91")})
    land(registry, bare, "alpha 3", {"models/alpha.yaml": model("alpha", "3", priority="92")})
    first = registry.run("rollback", "alpha")
    assert first.code == 0 and "version 3 -> 2" in first.out, first.out + first.err
    assert registry.live()["AIModel/alpha"]["version"] == "2"
    # 2 is a return: rolling back from it again would be the rollback of a rollback
    assert "nothing to roll back: version 2 is live" in registry.run("rollback", "alpha").out
    same = registry.run("rollback", "alpha", "--to", "2")
    assert same.code == 0 and "nothing to roll back: version 2 is live" in same.out
    further = registry.run("rollback", "alpha", "--to", "1")
    assert further.code == 0, further.err
    assert "a commit restoring its previous document" in further.out
    assert registry.live()["AIModel/alpha"]["version"] == "1"
    assert quarantined(registry) == [("alpha", "2"), ("alpha", "3")]  # each rolled from once


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("beta",), "has had no other version live than 1; nothing to roll back to"),
        (("alpha", "--to", "7"), "never had version 7 applied (applied: 1, 2)"),
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


def test_what_a_rollback_prints_cannot_drive_the_terminal(registry: Registry, bare: Path) -> None:
    """A commit subject (quoted in the rollback's message) and an id may hold escape
    sequences; manifests cannot (validation refuses control and bidi characters). The
    dry run and every error show them escaped, one line each."""
    land(
        registry,
        bare,
        "alpha 2 \x1b[31mred\x1b[0m \u202egnp.exe",
        {"models/alpha.yaml": model("alpha", "2", priority="95")},
    )
    result = registry.run("rollback", "alpha", "--dry-run")
    assert result.code == 0, result.err
    assert "\x1b" not in result.out and "\u202e" not in result.out
    assert '("alpha 2 \\x1b[31mred\\x1b[0m \\u202egnp.exe")' in result.out
    unknown = registry.run("rollback", "\x1b[2Jx\nforged line")
    assert unknown.code == 1 and "\x1b" not in unknown.err
    assert unknown.err.count("\n") == 1 and "\\x1b[2Jx\\nforged line" in unknown.err


def test_a_revert_by_hand_not_applied_yet_is_applied_not_committed_again(
    registry: Registry, bare: Path
) -> None:
    """Found by the attack run: git already holds the version to return to (a revert
    pushed, not reconciled): nothing to commit, nothing quarantined; the rollback
    applies what git holds (a dry run only says so)."""
    land(registry, bare, "alpha 2", {"models/alpha.yaml": model("alpha", "2", priority="95")})
    fleet = registry.fleet
    fleet.git("revert", "--no-edit", "HEAD")
    fleet.git("push", "-q", str(bare), "HEAD:main")
    reverted = fleet.head()
    dry = registry.run("rollback", "alpha", "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.strip() == (
        "AIModel/alpha: nothing to commit: git already holds version 1 of AIModel alpha "
        f"(reverted in {reverted[:12]}); version 2 is still live"
    )
    assert registry.live()["AIModel/alpha"]["version"] == "2"
    done = registry.run("rollback", "alpha", "-o", "json")
    assert done.code == 0, done.err
    data = json.loads(done.out)
    assert (data["change"], data["revertedIn"], data["quarantined"]) == ("nothing", reverted, [])
    assert "applied now" in data["detail"]
    assert registry.live()["AIModel/alpha"]["version"] == "1"
    assert git_of(bare).git("rev-parse", "main") == reverted  # no commit of its own
    assert quarantined(registry) == []
    assert ("model_rolled_back", "alpha") not in registry.events()


def test_a_rollback_that_could_not_be_applied_is_refused(registry: Registry, bare: Path) -> None:
    """Found by the attack run: the head holds a change the safety checks refuse (another
    model's content changed under the same version, P001): a rollback committed now
    would not be applied, so it is refused, dry or not, and nothing is quarantined."""
    land(registry, bare, "alpha 2", {"models/alpha.yaml": model("alpha", "2", priority="95")})
    registry.fleet.push_to(bare, "beta, same version", {"models/beta.yaml": model("beta", "1")})
    before = git_of(bare).git("rev-parse", "main")
    dry = registry.run("rollback", "alpha", "--dry-run")
    assert dry.code == 1 and "P001" in dry.out and "would be refused" in dry.err
    refused = registry.run("rollback", "alpha")
    assert refused.code == 1 and "P001" in refused.err
    assert "nothing was committed" in refused.err
    as_json = registry.run("rollback", "alpha", "-o", "json")
    data = json.loads(as_json.out)
    assert as_json.code == 1 and data["change"] == "refused"
    assert [v["code"] for v in data["plan"]["violations"]] == ["P001"]
    assert git_of(bare).git("rev-parse", "main") == before
    assert quarantined(registry) == [] and registry.live()["AIModel/alpha"]["version"] == "2"


def test_a_version_brought_by_a_move_is_not_pinned_on_the_move(
    registry: Registry, bare: Path
) -> None:
    """Found by the attack run: the file's history ends at a move; the commit that
    introduced the version is not known, and the message says so instead of naming
    the move."""
    land(registry, bare, "alpha 2", {"models/alpha.yaml": model("alpha", "2", priority="95")})
    fleet = registry.fleet
    fleet.git("mv", "manifests/models/alpha.yaml", "manifests/models/alpha-moved.yaml")
    fleet.git("commit", "-q", "-m", "move alpha")
    fleet.git("push", "-q", str(bare), "HEAD:main")
    assert registry.run("reconcile").code == 0
    data = json.loads(registry.run("rollback", "alpha", "--dry-run", "-o", "json").out)
    assert (data["method"], data["undoes"]) == ("restore", None)
    assert "is not known" in data["message"] and "move alpha" not in data["message"]


def test_an_invalid_head_is_named_as_the_heads_fault(registry: Registry, bare: Path) -> None:
    """Found by the attack run: an unrelated broken file at the head blocked the rollback
    with 'the manifests have 1 error(s)', as if the rollback had made it."""
    land(registry, bare, "alpha 2", {"models/alpha.yaml": model("alpha", "2", priority="95")})
    registry.fleet.push_to(bare, "broken", {"models/broken.yaml": "meta: [broken\n"})
    before = git_of(bare).git("rev-parse", "main")
    for args in (("alpha",), ("alpha", "--dry-run")):
        result = registry.run("rollback", *args)
        assert result.code == 1
        assert "manifests/models/broken.yaml:2: Y001" in result.err
        assert "the fleet repository's head has 1 manifest error(s) already" in result.err
    assert git_of(bare).git("rev-parse", "main") == before and quarantined(registry) == []
