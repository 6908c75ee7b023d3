"""``POST /api/models/{id}/rollback[?dryRun=true]`` against a real server and real git:
the dry run changes nothing, the rollback is a git revert of the bad commit, a second
one has nothing to do, and the errors say why."""

from __future__ import annotations

import pytest

from tests.api.conftest import Server


def quarantined(server: Server) -> list[tuple[str, str]]:
    rows = server.registry.sql("SELECT object_id, version FROM quarantined_versions")
    return [(row[0], row[1]) for row in rows]


@pytest.mark.slow
def test_a_model_is_rolled_back_over_http(server: Server) -> None:
    with server.client("operator") as client:
        bad = client.patch("/api/models/beta", json={"priority": 55})
        assert bad.status_code == 200 and bad.json()["model"]["version"] == "2", bad.text
        bad_commit = bad.json()["revision"]
        before = server.log(), server.registry.content_hash(), quarantined(server)

        for typo in ("dry_run=true", "dryrun=true", "dryRun=true&dryRun=false"):
            wrong = client.post(f"/api/models/beta/rollback?{typo}")
            assert wrong.status_code == 422, (typo, wrong.text)  # not a real rollback
            assert wrong.json()["errors"][0]["path"].startswith("query.")
        assert (server.log(), server.registry.content_hash(), quarantined(server)) == before
        dry = client.post("/api/models/beta/rollback", params={"dryRun": "true"})
        assert dry.status_code == 200, dry.text
        preview = dry.json()
        assert (server.log(), server.registry.content_hash(), quarantined(server)) == before
        assert (preview["change"], preview["fromVersion"], preview["toVersion"]) == (
            "dry-run",
            "2",
            "1",
        )
        assert (preview["method"], preview["undoes"], preview["revision"]) == (
            "revert",
            bad_commit,
            None,
        )
        assert f"This reverts commit {bad_commit}." in preview["message"]
        assert "-  priority: 55" in preview["diff"] and preview["refused"] is False
        assert preview["plan"]["changes"][0]["versionTo"] == "1"

        done = client.post("/api/models/beta/rollback")
        assert done.status_code == 200, done.text
        body = done.json()
        assert (body["change"], body["applied"], body["quarantined"]) == (
            "rolled-back",
            True,
            ["2"],
        )
        assert server.log()[0].endswith("|grove: rollback AIModel beta to version 1 (from 2)")
        assert client.get("/api/models/beta").json()["version"] == "1"  # the snapshot too
        assert quarantined(server) == [("beta", "2")]

        again = client.post("/api/models/beta/rollback")
        assert again.status_code == 200 and again.json()["change"] == "nothing", again.text
        assert "nothing to roll back: version 1 is live since" in again.json()["detail"]
        assert server.log()[0].endswith("(from 2)")  # no new commit

        only_one = client.post("/api/models/gamma/rollback")
        assert only_one.status_code == 409 and only_one.json()["code"] == "no-earlier-version"
        assert client.post("/api/models/nobody/rollback").status_code == 404
        named = client.post("/api/models/beta/rollback", params={"to": "9"})
        assert named.status_code == 409 and "never had version 9" in named.json()["detail"]
    with server.client("viewer") as viewer:
        assert viewer.post("/api/models/beta/rollback").status_code == 403


@pytest.mark.slow
def test_a_change_freeze_holds_for_rollbacks_but_not_for_their_dry_run(server: Server) -> None:
    with server.client("operator") as client:
        assert client.patch("/api/models/beta", json={"priority": 57}).status_code == 200
        assert server.registry.run("suspend").code == 0
        before = server.log()
        frozen = client.post("/api/models/beta/rollback")
        assert frozen.status_code == 409 and frozen.json()["code"] == "suspended", frozen.text
        dry = client.post("/api/models/beta/rollback", params={"dryRun": "true"})
        assert dry.status_code == 200 and dry.json()["change"] == "dry-run", dry.text
        assert dry.json()["detail"].endswith(
            "a change freeze holds: the rollback itself needs force"
        )
        assert server.log() == before and quarantined(server) == []
