"""The rules list and the rule editor with its route simulator, over real HTTP with a real
fleet repository: what a person sees, what a save commits, and what nothing commits."""

from __future__ import annotations

import contextlib
import html
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server
from tests.conftest import FleetRepo
from tests.web.conftest import csrf_of, sign_in

FAILOVER = ["timeout", "rate_limit", "server_error", "connection_error"]


def form_of(client: httpx.Client, action: str, **fields: Any) -> dict[str, Any]:
    """The editor's form for the small fleet's rule ``think`` as it is, with ``fields``
    changed (names as the form's; ``failover_on`` for ``failover-on[]``)."""
    page = client.get("/rules/think")
    assert page.status_code == 200, page.text
    form: dict[str, Any] = {
        "csrf": csrf_of(page.text),
        "requires[]": ["reasoning"],
        "minScore": "0.5",
        "strategy": "priority",
        "chain": "",
        "failover-on[]": FAILOVER,
        "failover-maxAttempts": "3",
        "failover-cooldownS": "30",
        "enabled": "true",
        "action": action,
    }
    form.update(fields)
    return form


def test_the_list_shows_every_rule_and_the_model_it_picks_now(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    page = shared_operator.get("/rules")
    assert page.status_code == 200
    assert 'href="/rules/think"' in page.text
    assert "taskType think" in page.text
    assert "priority" in page.text
    assert '<a href="/models/alpha"><strong>alpha</strong></a>' in page.text  # priority 90


def test_simulate_shows_the_decision_now_and_after_the_edit_and_commits_nothing(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    before = shared_server.log()
    answer = shared_operator.post(
        "/rules/think", data=form_of(shared_operator, "simulate", chain="gamma\nbeta")
    )
    assert answer.status_code == 200, answer.text
    text = answer.text
    assert "The edit changes the pick: alpha → gamma." in text
    now, after = text.split('id="before-title"')[1].split('id="after-title"')
    assert '<a href="/models/alpha">alpha</a>' in now
    assert '<a href="/models/gamma">gamma</a>' in after
    assert "gamma → beta" in after  # the chain as written
    assert "Ranked candidates" in after
    assert shared_server.log() == before


def test_the_request_profile_excludes_models_with_a_reason(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    answer = shared_operator.post(
        "/rules/think", data=form_of(shared_operator, "simulate", **{"sim-context": "99999999"})
    )
    assert answer.status_code == 200, answer.text
    assert "Excluded candidates" in answer.text
    assert "No model" in answer.text
    odd = shared_operator.post(
        "/rules/think", data=form_of(shared_operator, "simulate", **{"sim-cost": "<b>cheap</b>"})
    )
    assert odd.status_code == 200
    assert 'id="sim-cost-error"' in odd.text
    assert "<b>cheap</b>" not in odd.text


def test_preview_shows_the_commit_and_commits_nothing(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    before = shared_server.log()
    answer = shared_operator.post(
        "/rules/think", data=form_of(shared_operator, "preview", minScore="0.6")
    )
    assert answer.status_code == 200, answer.text
    assert "Preview: nothing is committed yet" in answer.text
    assert "minScore" in answer.text  # the diff
    assert shared_server.log() == before


def test_save_makes_one_commit_by_the_signed_in_token(
    server: Server, operator: httpx.Client
) -> None:
    before = server.log()
    answer = operator.post("/rules/think", data=form_of(operator, "save", minScore="0.6"))
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith("/rules/think?saved=")
    after = server.log()
    assert len(after) == len(before) + 1
    assert after[0].startswith("operator-token|")
    page = operator.get(answer.headers["location"])
    assert "Saved: one commit to the fleet repository" in page.text
    assert 'id="minScore" name="minScore" type="text" inputmode="decimal"' in page.text
    assert 'value="0.6"' in page.text  # the live rule, reconciled


def test_an_untouched_form_saves_nothing(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    before = shared_server.log()
    answer = shared_operator.post("/rules/think", data=form_of(shared_operator, "save"))
    assert answer.status_code == 200, answer.text
    assert "Nothing to change" in answer.text
    assert shared_server.log() == before


def test_absurd_numbers_are_errors_at_their_fields_in_the_validators_words(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    before = shared_server.log()
    form = form_of(
        shared_operator,
        "save",
        minScore="5",
        strategy="balanced",
        **{
            "weights-capability": "-1",
            "failover-maxAttempts": str(10**9),
            "constraints-maxLatencyMs": "nan",
        },
    )
    answer = shared_operator.post("/rules/think", data=form)
    assert answer.status_code == 200  # the form again, with its errors (a 4xx is a console error)
    text = answer.text
    for field in ("minScore", "weights-capability", "failover-maxAttempts"):
        assert f'id="{field}-error"' in text, field
        assert f'aria-describedby="{field}-error"' in text or f'{field}-hint {field}-error"' in text
    assert "S004" in text  # the validator's range rule
    assert "S003" in text  # "nan" is not a number
    assert "nothing was committed" in text
    assert shared_server.log() == before


def test_a_chain_of_unknown_models_and_markup_commits_nothing(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    before = shared_server.log()
    hostile = "<script>alert(1)</script>"
    answer = shared_operator.post(
        "/rules/think", data=form_of(shared_operator, "save", chain=f"nobody\n{hostile}")
    )
    assert answer.status_code == 200  # the form again, with its errors (a 4xx is a console error)
    assert hostile not in answer.text
    assert html.escape(hostile, quote=False) in answer.text
    assert 'id="chain-error"' in answer.text
    assert shared_server.log() == before
    answer = shared_operator.post(
        "/rules/think", data=form_of(shared_operator, "save", chain="nobody")
    )
    assert answer.status_code == 200  # the form again, with its errors (a 4xx is a console error)
    assert "R003" in answer.text  # the fleet check: not a model here
    assert shared_server.log() == before


def test_a_ten_thousand_line_chain_is_a_clear_error(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    before = shared_server.log()
    chain = "\n".join(f"model-{i}" for i in range(10_000))
    answer = shared_operator.post(
        "/rules/think", data=form_of(shared_operator, "save", chain=chain)
    )
    assert answer.status_code == 200  # the form again, with its errors (a 4xx is a console error)
    assert "a chain holds at most 16 models" in answer.text
    assert "model-9999" not in answer.text
    assert shared_server.log() == before


def test_an_edit_no_model_could_serve_commits_nothing(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    before = shared_server.log()
    answer = shared_operator.post(
        "/rules/think", data=form_of(shared_operator, "save", minScore="0.95")
    )
    assert answer.status_code == 200  # the form again, with its errors (a 4xx is a console error)
    assert "R006" in answer.text
    assert 'id="requires-error"' in answer.text
    assert shared_server.log() == before


def test_a_viewer_may_simulate_but_sees_no_save_and_its_forged_save_is_refused(
    shared_server: Server,
) -> None:
    before = shared_server.log()
    with contextlib.closing(sign_in(shared_server, "viewer")) as viewer:
        page = viewer.get("/rules/think")
        assert page.status_code == 200
        assert 'value="simulate"' in page.text
        assert 'value="save"' not in page.text
        assert 'value="preview"' not in page.text
        simulated = viewer.post("/rules/think", data=form_of(viewer, "simulate", chain="beta"))
        assert simulated.status_code == 200
        assert "The edit changes the pick: alpha → beta." in simulated.text
        for action in ("save", "preview"):
            forged = viewer.post("/rules/think", data=form_of(viewer, action, minScore="0.6"))
            assert forged.status_code == 403, action
    assert shared_server.log() == before


def test_a_post_without_its_csrf_token_is_refused(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    before = shared_server.log()
    form = form_of(shared_operator, "save", minScore="0.6")
    del form["csrf"]
    assert shared_operator.post("/rules/think", data=form).status_code == 403
    form["csrf"] = "forged"
    assert shared_operator.post("/rules/think", data=form).status_code == 403
    assert shared_server.log() == before


def test_an_unknown_or_hostile_rule_id_is_a_404_page(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    answer = shared_operator.get("/rules/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert answer.status_code == 404
    assert "<script>alert(1)" not in answer.text
    assert shared_operator.get("/rules/" + "x" * 5000).status_code == 404


@pytest.fixture
def review_branches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server started with --review-branches (ask for it before ``server``)."""
    monkeypatch.setenv("GROVE_REVIEW_BRANCHES", "true")


def test_with_review_branches_save_pushes_a_branch_and_leaves_the_fleet_branch(
    review_branches: None, server: Server
) -> None:
    running = server
    before = running.log()
    with contextlib.closing(sign_in(running, "operator")) as client:
        page = client.get("/rules/think")
        assert ">Push for review</button>" in page.text
        answer = client.post("/rules/think", data=form_of(client, "save", minScore="0.6"))
        assert answer.status_code == 303, answer.text
        assert "branch=grove%2Freview%2F" in answer.headers["location"]
        shown = client.get(answer.headers["location"])
    assert "Pushed branch grove/review/" in shown.text
    assert 'value="0.5"' in shown.text  # the live rule is unchanged until the merge
    assert running.log() == before
    out = FleetRepo.__new__(FleetRepo)
    out.root = running.bare
    assert "grove/review/" in out.git("branch", "--list", "grove/review/*")
