"""The add-model wizard over real HTTP: three steps to one commit in the fleet repository,
errors at their fields, nothing committed by a refused or hostile answer."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Server, serve
from tests.conftest import GroveRunner, Registry
from tests.web.conftest import csrf_of, sign_in

STEP_ONE = {
    "name": "Quick Mock",
    "id": "quick-mock",
    "provider": "mock",
    "provider_model": "",
    "endpoint": "",
    "credentials": "",
}
STEP_TWO = {
    "cap_reasoning": "0.95",
    "cap_speed": "0.9",
    "context_window": "100000",
    "price_in": "1",
    "price_out": "2",
    "priority": "500",
}


def post(client: httpx.Client, step: int, action: str = "next", **fields: str) -> httpx.Response:
    page = client.get("/models/new")
    data = {"csrf": csrf_of(page.text), "step": str(step), "action": action, **fields}
    return client.post("/models/new", data=data)


def field_error(html: str, field: str) -> str:
    """The error shown at ``field``, checked to be tied to its input."""
    found = re.search(rf'<p class="field-error" id="f-{field}-error">(.*?)</p>', html, re.S)
    assert found, f"no error at {field}"
    tag = re.search(rf'<(?:input|select|fieldset)[^>]*id="f-{field}"[^>]*>', html)
    assert tag, f"no input {field}"
    assert f"f-{field}-error" in tag.group(0)
    if "fieldset" not in tag.group(0):
        assert 'aria-invalid="true"' in tag.group(0)
    assert f'href="#f-{field}"' in html  # the summary at the top links to it
    return found.group(1)


def value_of(html: str, name: str) -> str:
    """The value of the (first) input named ``name``, visible or hidden."""
    tag = re.search(rf'<input[^>]* name="{re.escape(name)}"[^>]*>', html)
    assert tag, name
    found = re.search(r'value="([^"]*)"', tag.group(0))
    assert found, name
    return found.group(1)


def test_three_steps_end_in_one_commit_by_the_signed_in_token(
    server: Server, operator: httpx.Client
) -> None:
    first = operator.get("/models/new")
    assert first.status_code == 200
    assert 'aria-current="step"' in first.text
    two = post(operator, 1, **STEP_ONE)
    assert two.status_code == 200, two.text
    assert "Step 2 of 3" in two.text
    assert 'type="checkbox"' in two.text and 'value="alpha"' in two.text
    three = post(operator, 2, **STEP_ONE, **STEP_TWO, **{"fallbacks[]": "beta"})
    assert three.status_code == 200, three.text
    assert "Step 3 of 3" in three.text
    assert "id: quick-mock" in three.text  # the manifest as YAML
    assert "fallbacks:\n  - beta" in three.text
    assert "Preview: nothing is committed yet" in three.text  # the plan's verdict
    assert "Rule think would now pick quick-mock." in three.text  # the routing effect
    before = server.log()
    assert before == server.log()
    done = post(operator, 3, "submit", **STEP_ONE, **STEP_TWO, **{"fallbacks[]": "beta"})
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith("/models/new/done?id=quick-mock&commit=")
    log = server.log()
    assert len(log) == len(before) + 1
    assert log[0] == "operator-token|grove: register AIModel quick-mock (version 1)"
    page = operator.get(done.headers["location"])
    assert page.status_code == 200
    assert 'href="/models/quick-mock"' in page.text
    assert "Model committed" in page.text


def test_going_back_keeps_every_value(shared_operator: httpx.Client) -> None:
    back = post(shared_operator, 3, "back", **STEP_ONE, **STEP_TWO, **{"fallbacks[]": "beta"})
    assert back.status_code == 200
    assert "Step 2 of 3" in back.text
    assert value_of(back.text, "cap_reasoning") == "0.95"
    assert value_of(back.text, "priority") == "500"
    assert re.search(r'value="beta" checked', back.text)
    assert value_of(back.text, "name") == "Quick Mock"  # carried, hidden
    again = post(shared_operator, 2, "back", **STEP_ONE, **STEP_TWO, **{"fallbacks[]": "beta"})
    assert "Step 1 of 3" in again.text
    assert value_of(again.text, "id") == "quick-mock"
    assert value_of(again.text, "cap_speed") == "0.9"  # carried, hidden
    assert 'name="fallbacks[]" value="beta"' in again.text
    # back from a step with errors says none of them
    broken = post(shared_operator, 2, "back", **STEP_ONE, cap_reasoning="7")
    assert broken.status_code == 200
    assert "field-error" not in broken.text


def test_each_error_shows_at_its_field_in_the_validators_words(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    before = shared_server.log()
    hostile = {
        "name": "x" * 10_000,
        "id": "Has Spaces",
        "provider": "openai",
        "provider_model": "gpt-4o",
        "endpoint": "http://10.0.0.1/v1",
        "credentials": "OPENAI_API_KEY",
    }
    one = post(shared_operator, 1, **hostile)
    assert one.status_code == 200  # the form again, its errors in it
    assert "at most 200 characters" in field_error(one.text, "name")
    assert "S006" in field_error(one.text, "id")
    assert "S007" in field_error(one.text, "endpoint")
    assert "Step 1 of 3" in one.text
    assert 'class="error-summary"' in one.text
    # the provider needs what it needs: the validator's cross-field rule, at the field
    bare = post(shared_operator, 1, **{**STEP_ONE, "provider": "anthropic", "id": "bare"})
    assert "S008" in field_error(bare.text, "endpoint")
    assert "S008" in field_error(bare.text, "credentials")
    two = post(
        shared_operator,
        2,
        **STEP_ONE,
        cap_reasoning="-1",
        cap_speed="lots",
        context_window="1e999",
        price_in="5",
        priority="99999",
    )
    assert two.status_code == 200  # the form again, its errors in it
    assert "Step 2 of 3" in two.text
    assert "S004" in field_error(two.text, "cap_reasoning")
    assert "S003" in field_error(two.text, "cap_speed")
    assert field_error(two.text, "context_window")
    assert "S002" in field_error(two.text, "pricing")
    assert "S004" in field_error(two.text, "priority")
    none = post(shared_operator, 2, **STEP_ONE)
    assert "S004" in field_error(none.text, "capabilities")
    assert shared_server.log() == before


def test_a_script_name_is_text(shared_operator: httpx.Client) -> None:
    three = post(
        shared_operator, 2, **{**STEP_ONE, "name": "<script>alert(1)</script>"}, cap_reasoning="0.5"
    )
    assert three.status_code == 200
    assert "<script>alert(1)" not in three.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in three.text


def test_a_key_pasted_as_the_variable_is_refused_and_never_shown(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    key = "sk-" + "A1b2C3d4" * 6
    openai = {
        **STEP_ONE,
        "provider": "openai",
        "provider_model": "gpt-4o",
        "endpoint": "https://api.openai.com/v1",
        "credentials": key,
    }
    one = post(shared_operator, 1, **openai)
    assert one.status_code == 200  # the form again, its errors in it
    assert "K001" in field_error(one.text, "credentials")
    assert key not in one.text
    # smuggled past step 1 in a hidden field: judged again, still never shown
    three = post(shared_operator, 3, "submit", **openai, cap_reasoning="0.5")
    assert three.status_code == 200  # the form again, its errors in it
    assert key not in three.text
    back = post(shared_operator, 2, "back", **openai)
    assert key not in back.text
    assert shared_server.log()[0].endswith("|fleet")


def test_an_id_that_exists_is_refused_and_nothing_is_committed(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    before = shared_server.log()
    taken = post(shared_operator, 1, **{**STEP_ONE, "id": "alpha"})
    assert taken.status_code == 200  # the form again, its errors in it
    assert "R001" in field_error(taken.text, "id")
    forced = post(shared_operator, 3, "submit", **{**STEP_ONE, "id": "alpha"}, **STEP_TWO)
    assert forced.status_code == 200  # the form again, its errors in it
    assert "R001" in forced.text
    reserved = post(shared_operator, 1, **{**STEP_ONE, "id": "new"})
    assert "S013" in field_error(reserved.text, "id")
    gone = post(shared_operator, 2, **STEP_ONE, **STEP_TWO, **{"fallbacks[]": "nosuch"})
    assert "R008" in field_error(gone.text, "fallbacks")
    assert shared_server.log() == before


def test_a_viewer_sees_no_wizard_and_its_forged_post_is_refused(shared_server: Server) -> None:
    with contextlib.closing(sign_in(shared_server, "viewer")) as viewer:
        fleet = viewer.get("/")
        assert 'href="/models/new"' not in fleet.text
        assert viewer.get("/models/new").status_code == 403
        forged = viewer.post(
            "/models/new",
            data={"csrf": csrf_of(fleet.text), "step": "3", "action": "submit", **STEP_ONE}
            | STEP_TWO,
        )
    assert forged.status_code == 403
    assert not any("quick-mock" in line for line in shared_server.log())


def test_a_post_without_its_csrf_token_is_refused(
    shared_server: Server, shared_operator: httpx.Client
) -> None:
    answer = shared_operator.post(
        "/models/new", data={"step": "3", "action": "submit", **STEP_ONE} | STEP_TWO
    )
    assert answer.status_code == 403
    wrong = shared_operator.post(
        "/models/new", data={"csrf": "x" * 32, "step": "3", "action": "submit", **STEP_ONE}
    )
    assert wrong.status_code == 403
    assert not any("quick-mock" in line for line in shared_server.log())


def test_the_success_page_shows_only_what_it_can_check(shared_operator: httpx.Client) -> None:
    page = shared_operator.get(
        "/models/new/done",
        params={"id": "<b>x</b>", "commit": "zz", "branch": "grove/review/model-a-1234567"},
    )
    assert page.status_code == 200
    assert "<b>x</b>" not in page.text
    assert "grove/review/model-a-1234567" in page.text
    assert "Pushed a branch for review" in page.text


@pytest.fixture
def review_server(
    registry: Registry, bare_fleet: Path, monkeypatch: pytest.MonkeyPatch, grove: GroveRunner
) -> Iterator[Server]:
    """A server started with review branches on (``grove serve --review-branches``)."""
    monkeypatch.setenv("GROVE_REVIEW_BRANCHES", "true")
    yield from serve(registry, bare_fleet, str(bare_fleet), monkeypatch, grove)


def test_with_review_branches_submit_pushes_a_branch_and_names_it(review_server: Server) -> None:
    with contextlib.closing(sign_in(review_server, "operator")) as client:
        three = post(client, 2, **STEP_ONE, **STEP_TWO)
        assert "Push a branch for review" in three.text
        done = post(client, 3, "submit", **STEP_ONE, **STEP_TWO)
        assert done.status_code == 303, done.text
        location = done.headers["location"]
        branch = re.search(r"branch=([^&]+)", location)
        assert branch and branch.group(1).startswith("grove/review/")
        page = client.get(location)
    assert "Pushed a branch for review" in page.text
    assert branch.group(1) in page.text
    assert not any("quick-mock" in line for line in review_server.log())  # not on the branch
