"""Rollouts in the console over real HTTP: a real server, a real fleet repository (a bare
remote), real rollouts begun by a reconcile, calls routed through the server's API and
judged by the analyst at chosen times; promote and abort through the pages' forms."""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.base import settings as settings_module
from reconciler.gitops import rollouts as analysis
from reconciler.store import rollouts
from reconciler.store.engine import Database
from reconciler.store.rollouts import Phase, RollbackState
from tests.api.conftest import Server
from tests.api.test_probes import SQLITE_ONLY, _until
from tests.conftest import FleetRepo, model_yaml, rule_yaml
from tests.web.conftest import csrf_of, sign_in

pytestmark = SQLITE_ONLY  # PostgreSQL: tests/rollouts and tests/web/test_sessions_store.py

SLO = "{minSuccessRate: 0.95, maxP95LatencyMs: 5000, minSamples: 5, windowS: 3600}"
STEPS = "{steps: [{weight: 50, pauseS: 60}, {weight: 80, pauseS: 120}]}"


def alpha(version: str, **extra: str) -> str:
    text = model_yaml("alpha", priority="90", fallbacks="[beta]", slo=SLO, rollout=STEPS, **extra)
    return text.replace('version: "1"', f'version: "{version}"')


@pytest.fixture
def bare_fleet(fleet: FleetRepo, tmp_path: Path) -> Path:
    """Alpha with an SLO and two steps, beta its fallback, the rule think."""
    fleet.commit(
        "fleet",
        {
            "models/alpha.yaml": alpha("1"),
            "models/beta.yaml": model_yaml("beta", priority="50"),
            "rules/think.yaml": rule_yaml("think", minScore="0.5"),
        },
    )
    bare = tmp_path / "fleet.git"
    fleet.git("clone", "-q", "--bare", str(fleet.root), str(bare))
    return bare


@pytest.fixture
def operator(server: Server) -> Iterator[httpx.Client]:
    with contextlib.closing(sign_in(server, "operator")) as client:
        yield client


class Fleet:
    """The server's fleet: push a version, reconcile it, route calls, judge them."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.db = Database(server.registry.url)

    def push(self, message: str, files: dict[str, str]) -> str:
        fleet = self.server.registry.fleet
        fleet.git("pull", "-q", "--ff-only", str(self.server.bare), "main")
        head = fleet.commit(message, files)
        fleet.git("push", "-q", str(self.server.bare), "HEAD:main")
        return head

    def version_2(self, **extra: str) -> rollouts.Rollout:
        """Version 2 of alpha pushed and applied: its rollout begins (50 % of the calls)."""
        self.push("alpha: version 2", {"models/alpha.yaml": alpha("2", **extra)})
        done = self.server.registry.run("reconcile")
        assert done.code == 0, done.err
        found = self.latest()
        assert (found.phase, found.canary_version, found.weight) == (Phase.RUNNING, "2", 50)
        return found

    def latest(self) -> rollouts.Rollout:
        with self.db.transaction() as connection:
            found = rollouts.latest(connection, "alpha")
        assert found is not None
        return found

    def route(self, calls: int) -> None:
        """``calls`` calls of task think through the server's API; their logs written."""
        with self.server.client("operator") as client:
            for _ in range(calls):
                answer = client.post(
                    "/api/routing/execute", json={"taskType": "think", "prompt": "hello"}
                )
                assert answer.status_code == 200, answer.text

        def logged() -> bool:
            rows = self.server.registry.sql("SELECT count(*) FROM routing_logs")
            return int(rows[0][0]) >= calls

        _until(logged)

    def judge(self, seconds: float) -> rollouts.Rollout:
        """One analysis pass, ``seconds`` after the current step began."""
        current = self.latest()
        analyst = analysis.Analyst(settings_module.load(), self.db, holder="test")
        analyst.tick(now=current.step_started_at + dt.timedelta(seconds=seconds))
        return self.latest()

    def git(self, *args: str) -> str:
        out = FleetRepo.__new__(FleetRepo)
        out.root = self.server.bare
        return out.git(*args)


@pytest.fixture
def fleet_of(server: Server) -> Iterator[Fleet]:
    made = Fleet(server)
    try:
        yield made
    finally:
        made.db.dispose()


def judged_twice(fleet: Fleet) -> rollouts.Rollout:
    """Step 1 judged Successful (to step 2 at 80 %), then step 2's figures so far."""
    fleet.version_2()
    fleet.route(40)
    stepped = fleet.judge(61)
    assert (stepped.step, stepped.weight) == (1, 80), stepped
    fleet.route(20)
    return fleet.judge(10)


def text_of(page: httpx.Response) -> str:
    """The page's text without tags, its entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


def wait_for(client: httpx.Client, path: str, needle: str) -> httpx.Response:
    """The page once ``needle`` is in it (the server's router follows the registry)."""
    found: list[httpx.Response] = []

    def has() -> bool:
        found[:] = [client.get(path)]
        return needle in found[0].text

    _until(has)
    return found[0]


# ---------------------------------------------------------------- reading


def test_the_status_page_lists_each_rollout_with_its_figures_and_n(
    server: Server, fleet_of: Fleet, operator: httpx.Client
) -> None:
    empty = operator.get("/status")
    assert empty.status_code == 200
    assert "No rollouts yet" in empty.text

    current = judged_twice(fleet_of)
    figures = current.analysis["current"]
    assert figures["verdict"] == "Running" and figures["weight"] == 80
    page = operator.get("/status")
    assert page.status_code == 200, page.text
    words = text_of(page)
    assert '<a href="/models/alpha#rollout-title">alpha</a>' in page.text
    assert "1 open rollout" in words
    assert "Running" in words and "↻" in words  # the phase in word and icon
    assert "step 2 of 2, 80 % of the calls" in words
    samples = figures["samples"]
    assert f"✓ {samples} SLO ≥ 5 : meets the SLO" in words  # n against minSamples
    assert "✓ 100 % SLO ≥ 95 % : meets the SLO" in words  # the success rate against its SLO
    assert re.search(r"✓ [\d.]+ ms SLO ≤ 5,000 ms : meets the SLO", words)  # p95 against its SLO
    assert "beta" not in re.sub(
        r".*<table class=\"rollouts\">|</table>.*", "", page.text, flags=re.S
    )
    fragment = operator.get("/status", headers={"X-Grove-Fragment": "live"})
    assert fragment.status_code == 200 and "step 2 of 2, 80 % of the calls" in fragment.text


def test_the_model_page_shows_the_rollout_its_steps_and_each_judgement(
    server: Server, fleet_of: Fleet, operator: httpx.Client
) -> None:
    judged_twice(fleet_of)
    page = operator.get("/models/alpha")
    assert page.status_code == 200, page.text
    words = text_of(page)
    assert 'id="rollout-title"' in page.text and "Rollout in progress" in words
    # the steps: the first passed, the second now (marked for assistive technology too)
    steps = re.search(r'<ol class="rollout-steps">(.*?)</ol>', page.text, re.S)
    assert steps is not None
    items = re.findall(r"<li (.*?)</li>", steps.group(1), re.S)
    assert len(items) == 3  # two steps, then the promotion
    assert "step-done" in items[0] and "50 %" in items[0] and "1 min" in items[0]
    assert 'aria-current="step"' in items[1] and "80 %" in items[1] and "2 min" in items[1]
    assert "step-next" in items[2] and "Promote" in items[2] and "100 %" in items[2]
    # the judgement of step 1, with its n and figures
    table = re.search(r'<table class="stack judgements">(.*?)</table>', page.text, re.S)
    assert table is not None
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)
    assert len(rows) == 2  # the header, one judgement
    judged = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", rows[1])).split())
    assert "Successful" in judged and "50 %" in judged and "100 %" in judged
    assert re.search(r"✓ \d+ : meets the SLO", judged), judged
    assert "success rate ≥ 95 %, p95 latency ≤ 5,000 ms" in words  # the SLO in words
    assert 'action="/models/alpha/rollout/promote"' in page.text
    assert 'action="/models/alpha/rollout/abort"' in page.text
    assert operator.get("/models/beta").text.count("rollout-title") == 0  # none for beta
    fragment = operator.get("/models/alpha", headers={"X-Grove-Fragment": "live"})
    assert "<h1>" not in fragment.text and 'id="rollout-title"' in fragment.text


def test_an_open_page_is_told_to_refresh_when_a_rollout_moves(
    server: Server, fleet_of: Fleet, operator: httpx.Client
) -> None:
    """A promotion changes no live object (the state serial stays) but moves the
    snapshot's rollout serial: the event stream says refresh."""
    fleet_of.version_2()
    wait_for(operator, "/status", "step 1 of 2")
    with operator.stream("GET", "/console/events", timeout=15) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith(": connected")
        service = analysis.Rollouts(settings_module.load(), fleet_of.db)
        service.promote("alpha", actor="someone-else")
        began = time.monotonic()
        for line in lines:
            if line == "event: refresh":
                break
        # at once, not at the stream's next look at the plan and the rollouts (15 s)
        assert time.monotonic() - began < 5
    assert "Successful" in operator.get("/status").text


# ---------------------------------------------------------------- promote and abort


def test_promote_is_previewed_then_done_and_a_second_one_is_refused(
    server: Server, fleet_of: Fleet, operator: httpx.Client
) -> None:
    fleet_of.version_2()
    before = server.log()
    page = operator.get("/models/alpha")
    preview = operator.post("/models/alpha/rollout/promote", data={"csrf": csrf_of(page.text)})
    assert preview.status_code == 200, preview.text
    assert "Promote version 2 of Alpha?" in preview.text
    assert "Preview: promote version 2; nothing is changed yet" in preview.text
    assert "has not found that this version meets its SLO" in text_of(preview)  # no figures
    assert fleet_of.latest().open  # a preview changes nothing
    done = operator.post(
        "/models/alpha/rollout/promote", data={"csrf": csrf_of(preview.text), "confirm": "1"}
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/models/alpha?done=promote#rollout-title"
    promoted = fleet_of.latest()
    assert (promoted.phase, promoted.weight, promoted.open) == (Phase.SUCCESSFUL, 100, False)
    assert server.log() == before  # promoting commits nothing: git holds version 2
    after = operator.get("/models/alpha?done=promote")
    words = text_of(after)
    assert "Rollout promoted." in words and "Successful" in words
    assert "/rollout/promote" not in after.text  # nothing left to promote
    again = operator.post(
        "/models/alpha/rollout/promote", data={"csrf": csrf_of(after.text), "confirm": "1"}
    )
    assert again.status_code == 200  # the console's refusal pattern: the page, its outcome
    assert "Not done: nothing was changed" in again.text
    assert "is Successful; nothing to promote" in again.text
    assert 'name="confirm"' not in again.text
    events = server.registry.sql(
        "SELECT actor FROM lifecycle_events WHERE event_type = 'rollout_promoted'"
    )
    assert [row[0] for row in events] == ["operator-token"]


def test_abort_asks_a_reason_and_commits_the_rollback(
    server: Server, fleet_of: Fleet, operator: httpx.Client
) -> None:
    fleet_of.version_2()
    fleet_of.route(20)
    before = server.log()
    page = operator.get("/models/alpha")
    preview = operator.post("/models/alpha/rollout/abort", data={"csrf": csrf_of(page.text)})
    assert preview.status_code == 200, preview.text
    words = text_of(preview)
    assert "Abort the rollout of Alpha?" in words
    assert "Preview: roll back from version 2 to 1" in words  # the commit's dry run
    assert "Analysis: Aborted" in words and "Reverts-Model: alpha@2" in words
    assert 'name="reason"' in preview.text
    assert server.log() == before and fleet_of.latest().open

    unsaid = operator.post(
        "/models/alpha/rollout/abort", data={"csrf": csrf_of(preview.text), "confirm": "1"}
    )
    assert unsaid.status_code == 200
    assert "<title>Error: " in unsaid.text and "Say why the rollout stops" in unsaid.text
    assert server.log() == before and fleet_of.latest().open

    done = operator.post(
        "/models/alpha/rollout/abort",
        data={"csrf": csrf_of(unsaid.text), "confirm": "1", "reason": "latency <b>spikes</b>"},
    )
    assert done.status_code == 303, done.text
    location = done.headers["location"]
    assert location.startswith("/models/alpha?done=abort&result=done&rev="), location
    revision = re.search(r"rev=([0-9a-f]+)", location)
    assert revision is not None
    # the rollback commit is on the fleet branch of the bare repository, by the operator
    head = fleet_of.git("log", "-1", "--format=%H|%an|%B", "main")
    sha, author, message = head.split("|", 2)
    assert sha == revision.group(1) and author == "operator-token"
    assert "aborted by operator-token: latency <b>spikes</b>" in message
    assert "Analysis: Aborted" in message and "samples:" in message
    ended = fleet_of.latest()
    assert ended.phase is Phase.ABORTED
    assert ended.rollback in (RollbackState.COMMITTED, RollbackState.ROLLED_BACK)
    assert ended.rollback_commit == sha
    after = operator.get(location)
    words = text_of(after)
    assert "Rollout aborted." in words and f"Commit {sha[:12]}" in words
    assert "Aborted" in words and f"{sha[:12]} on the fleet branch" in words
    assert "Ended at step 1 of 2 (50 %)" in words and "stopped here" in words
    assert "latency &lt;b&gt;spikes&lt;/b&gt;" in after.text  # escaped wherever shown
    assert "/rollout/abort" not in after.text
    status = operator.get("/status")
    assert "Aborted" in text_of(status) and "<b>spikes" not in status.text


def test_a_viewer_sees_no_rollout_controls_and_its_forged_posts_are_refused(
    server: Server, fleet_of: Fleet
) -> None:
    fleet_of.version_2()
    before = server.log()
    with contextlib.closing(sign_in(server, "viewer")) as viewer:
        page = viewer.get("/models/alpha")
        assert page.status_code == 200
        assert "Rollout in progress" in text_of(page)  # a viewer reads it
        assert "/rollout/" not in page.text and "Promote…" not in page.text
        for action in ("promote", "abort"):
            forged = viewer.post(
                f"/models/alpha/rollout/{action}",
                data={"csrf": csrf_of(page.text), "confirm": "1", "reason": "x"},
            )
            assert forged.status_code == 403, action
    with contextlib.closing(sign_in(server, "operator")) as operator:
        without = operator.post("/models/alpha/rollout/abort", data={"confirm": "1", "reason": "x"})
        assert without.status_code == 403  # no CSRF token
        unknown = operator.post(
            "/models/alpha/rollout/explode", data={"csrf": csrf_of(operator.get("/").text)}
        )
        assert unknown.status_code == 404
    assert fleet_of.latest().open and server.log() == before


def test_a_rollback_that_cannot_be_pushed_shows_the_commit_to_make(
    server: Server, fleet_of: Fleet, operator: httpx.Client
) -> None:
    fleet_of.version_2()
    hook = server.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'pushes are frozen' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = server.log()
    page = operator.get("/models/alpha")
    done = operator.post(
        "/models/alpha/rollout/abort",
        data={"csrf": csrf_of(page.text), "confirm": "1", "reason": "bad answers"},
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith("/models/alpha?done=abort&result=pending")
    assert server.log() == before  # nothing reached the fleet branch
    pending = fleet_of.latest()
    assert pending.rollback is RollbackState.PENDING and pending.weight == 0

    status = operator.get("/status")
    words = text_of(status)
    assert "RollbackPending" in words and "!" in words
    condition = re.search(
        r"<th scope=\"row\">RollbackPending</th>\s*<td class=\"([^\"]+)\"", status.text
    )
    assert condition is not None and condition.group(1) == "tone-bad"  # True is the bad case
    assert "Rollback pending: alpha" in words
    assert "grove rollback alpha --to 1" in words  # the command to run by hand
    assert "Why it could not be pushed" in words
    model = operator.get(done.headers["location"])
    words = text_of(model)
    assert "but the rollback could not be pushed" in words
    assert "Rollback to make by hand" in words and "grove rollback alpha --to 1" in words
    assert "/rollout/abort" not in model.text  # rolling back: no second abort


def test_a_removed_models_rollout_is_listed_without_a_link(
    server: Server, fleet_of: Fleet, operator: httpx.Client
) -> None:
    fleet_of.version_2()
    fleet = server.registry.fleet
    fleet.git("pull", "-q", "--ff-only", str(server.bare), "main")
    fleet.delete("models/alpha.yaml")
    fleet.commit("alpha: removed")
    fleet.git("push", "-q", str(server.bare), "HEAD:main")
    done = server.registry.run("reconcile", "--force")  # an enabled model: refused unforced
    assert done.code == 0, done.err
    assert fleet_of.latest().phase is Phase.ABORTED
    page = wait_for(operator, "/status", "(not live)")
    words = text_of(page)
    assert "alpha (not live)" in words and "Aborted" in words
    assert 'href="/models/alpha' not in page.text
