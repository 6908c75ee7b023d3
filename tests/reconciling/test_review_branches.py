"""Review branches (``grove serve --review-branches``, DESIGN section 10): a write passes
the same checks, but its commit goes to a branch ``grove/review/...`` of its own, pushed
to the fleet remote; the fleet branch and the registry stay as they were. A refused or
invalid write pushes nothing; a rollback still commits on the fleet branch and applies."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.base import settings as settings_module
from reconciler.gitops import authoring
from reconciler.manifests import kinds as manifests
from reconciler.store.engine import Database
from tests.api.conftest import Server, serve
from tests.conftest import FleetRepo, GroveRunner, Registry
from tests.reconciling.conftest import small_fleet

BRANCH = re.compile(r"^grove/review/(model|rule)-[a-z0-9-]+-[0-9a-f]{8}$")

NEW_MODEL: dict[str, Any] = {
    "meta": {"id": "delta", "type": "AIModel", "version": "1"},
    "payload": {"name": "Delta", "provider": "mock", "capabilities": {"reasoning": 0.7}},
}


class Remote:
    """The bare fleet repository that Grove's writes push to."""

    def __init__(self, path: Path) -> None:
        self.repo = FleetRepo.__new__(FleetRepo)
        self.repo.root = path

    def git(self, *args: str) -> str:
        return self.repo.git(*args)

    def main(self) -> str:
        return self.git("rev-parse", "refs/heads/main")

    def branches(self) -> list[str]:
        listed = self.git("for-each-ref", "--format=%(refname:short)", "refs/heads/")
        return sorted(listed.split())

    def review_branches(self) -> list[str]:
        return [name for name in self.branches() if name.startswith(authoring.REVIEW_PREFIX)]


@pytest.fixture
def remote(fleet: FleetRepo, tmp_path: Path) -> Remote:
    fleet.commit("fleet", {**small_fleet()})
    bare = tmp_path / "fleet.git"
    fleet.git("clone", "-q", "--bare", str(fleet.root), str(bare))
    return Remote(bare)


@pytest.fixture
def writer(
    registry: Registry, remote: Remote, monkeypatch: pytest.MonkeyPatch, grove: GroveRunner
) -> Iterator[authoring.Authoring]:
    """Authoring as a server started with --review-branches has it, the fleet reconciled."""
    monkeypatch.setenv("GROVE_REPO", str(remote.repo.root))
    monkeypatch.setenv("GROVE_RESOLVE_ENDPOINTS", "false")
    assert grove("reconcile").code == 0
    monkeypatch.setenv("GROVE_REVIEW_BRANCHES", "true")
    config = settings_module.load()
    assert config.review_branches
    db = Database(config.db_url)
    try:
        yield authoring.Authoring(config, db)
    finally:
        db.dispose()


def test_a_write_pushes_a_review_branch_and_leaves_the_fleet_and_registry_alone(
    writer: authoring.Authoring, registry: Registry, remote: Remote
) -> None:
    main, live, revisions = remote.main(), registry.content_hash(), registry.revisions()
    result = writer.register(NEW_MODEL, authoring.Author.of("operator-token"))

    assert (result.change, result.applied) == (authoring.WriteChange.CREATED, False)
    assert result.branch is not None and BRANCH.match(result.branch), result.branch
    assert result.branch == f"grove/review/model-delta-{result.revision[:8]}"
    assert f"pushed branch {result.branch} for review" in result.detail
    assert result.object is None  # not live: nothing was applied
    # the branch holds the one commit, by the token's holder, on top of the fleet's head
    assert remote.git("rev-parse", f"refs/heads/{result.branch}") == result.revision
    assert remote.git("rev-parse", f"{result.revision}^") == main
    assert remote.git("log", "-1", "--format=%an|%ae|%s", result.revision) == (
        "operator-token|operator-token@users.grove.invalid|"
        "grove: register AIModel delta (version 1)"
    )
    shown = remote.git("show", f"{result.revision}:manifests/models/delta.yaml")
    assert "id: delta" in shown
    # the fleet branch and the registry did not move
    assert remote.main() == main
    assert (registry.content_hash(), registry.revisions()) == (live, revisions)
    assert "AIModel/delta" not in registry.live()


def test_updates_state_changes_and_removals_each_get_their_own_branch(
    writer: authoring.Authoring, registry: Registry, remote: Remote
) -> None:
    main, live = remote.main(), registry.content_hash()
    author = authoring.Author.of("operator-token")
    updated = writer.update(manifests.KIND_MODEL, "beta", {"payload": {"priority": 60}}, author)
    disabled = writer.set_state("think", "disabled", author, kind=manifests.KIND_RULE)
    removed = writer.remove(manifests.KIND_MODEL, "gamma", author, force=True)

    assert [r.change for r in (updated, disabled, removed)] == ["updated", "disabled", "removed"]
    assert not any(r.applied for r in (updated, disabled, removed))
    assert [r.branch for r in (updated, disabled, removed)] == [
        f"grove/review/model-beta-{updated.revision[:8]}",
        f"grove/review/rule-think-{disabled.revision[:8]}",
        f"grove/review/model-gamma-{removed.revision[:8]}",
    ]
    assert remote.review_branches() == sorted(
        r.branch for r in (updated, disabled, removed) if r.branch
    )
    # each made from the fleet's head, not from the one before it
    assert {remote.git("rev-parse", f"{r.revision}^") for r in (updated, disabled)} == {main}
    # the object answered is the one live now: beta at version 1
    assert updated.object is not None and updated.object.meta.version == "1"
    assert remote.main() == main
    assert registry.content_hash() == live


def test_a_refused_or_invalid_write_pushes_nothing(
    writer: authoring.Authoring, registry: Registry, remote: Remote
) -> None:
    main = remote.main()
    author = authoring.Author.of("operator-token")
    with pytest.raises(authoring.Refused):
        writer.remove(manifests.KIND_MODEL, "gamma", author)
    with pytest.raises(authoring.Invalid):
        writer.update(
            manifests.KIND_MODEL, "beta", {"payload": {"capabilities": {"telepathy": 2}}}, author
        )
    with pytest.raises(authoring.Conflict):
        writer.register({**NEW_MODEL, "meta": {**NEW_MODEL["meta"], "id": "beta"}}, author)
    assert remote.review_branches() == []
    assert remote.main() == main


def test_nothing_to_change_pushes_nothing(
    writer: authoring.Authoring, registry: Registry, remote: Remote
) -> None:
    result = writer.set_state("beta", "enabled", authoring.Author.of("operator-token"))
    assert (result.change, result.applied, result.branch) == ("unchanged", True, None)
    assert remote.review_branches() == []


def test_a_rollback_still_commits_on_the_fleet_branch_and_applies(
    writer: authoring.Authoring, registry: Registry, remote: Remote
) -> None:
    author = authoring.Author.of("operator-token")
    direct = authoring.Authoring(
        writer.settings.model_copy(update={"review_branches": False}), writer.db
    )
    assert direct.update(
        manifests.KIND_MODEL, "beta", {"payload": {"priority": 60}}, author
    ).applied
    rolled = writer.rollback("beta", author)
    assert rolled.change is authoring.RollbackChange.ROLLED_BACK
    assert rolled.result is not None and rolled.result.branch is None
    assert remote.main() == rolled.revision
    assert registry.live()["AIModel/beta"]["version"] == "1"
    assert remote.review_branches() == []


# ---------------------------------------------------------------- over the API


@pytest.fixture
def review_server(
    registry: Registry, remote: Remote, monkeypatch: pytest.MonkeyPatch, grove: GroveRunner
) -> Iterator[Server]:
    monkeypatch.setenv("GROVE_REVIEW_BRANCHES", "true")
    yield from serve(registry, remote.repo.root, str(remote.repo.root), monkeypatch, grove)


def test_an_api_write_answers_the_branch_it_pushed(review_server: Server, remote: Remote) -> None:
    main = remote.main()
    body = {"name": "Delta", "provider": "mock", "capabilities": ["reasoning"], "priority": 5}
    with review_server.client("operator") as client:
        answer = client.post("/api/models/register", json=body)
        assert answer.status_code == 201, answer.text
        written = answer.json()
        assert written["applied"] is False
        assert written["change"] == "created"
        assert written["model"] is None
        assert BRANCH.match(written["branch"]), written
        assert written["branch"].endswith(written["revision"][:8])
        assert client.get("/api/models/delta").status_code == 404
    assert remote.review_branches() == [written["branch"]]
    assert remote.git("log", "-1", "--format=%an", written["branch"]) == "operator-token"
    assert remote.main() == main


def test_without_review_branches_writes_answer_a_null_branch(
    registry: Registry, remote: Remote, monkeypatch: pytest.MonkeyPatch, grove: GroveRunner
) -> None:
    serving = contextlib.contextmanager(serve)
    with (
        serving(registry, remote.repo.root, str(remote.repo.root), monkeypatch, grove) as server,
        server.client("operator") as client,
    ):
        answer = client.post("/api/models/beta/disable")
        assert answer.status_code == 200, answer.text
        assert (answer.json()["applied"], answer.json()["branch"]) == (True, None)
    assert remote.review_branches() == []


def test_grove_serve_and_up_take_the_flag(grove: GroveRunner) -> None:
    for command in ("serve", "up"):
        shown = grove(command, "--help")
        assert shown.code == 0
        assert "--review-branches" in shown.out
        assert "GROVE_REVIEW_BRANCHES" in shown.out
