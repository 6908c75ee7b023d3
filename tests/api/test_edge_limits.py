"""Cheap refusals for expensive input, against a real server: error answers stay small
whatever the body holds."""

from __future__ import annotations

import itertools
import json
import string

import pytest

from reconciler.api.problems import MAX_LISTED
from tests.api.conftest import Server


def _keys(count: int) -> list[str]:
    """``count`` distinct short keys (``a``, ``b``, ..., ``aa``, ...)."""
    letters = string.ascii_lowercase + string.digits
    names = (
        "".join(chars)
        for size in itertools.count(1)
        for chars in itertools.product(letters, repeat=size)
    )
    return list(itertools.islice(names, count))


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # HTTP, not the database
@pytest.mark.parametrize("path", ["/api/models/register", "/api/routing/execute"])
def test_an_answer_to_110000_bad_keys_lists_50_and_counts_the_rest(
    server: Server, path: str
) -> None:
    body = json.dumps(dict.fromkeys(_keys(110_000), 0), separators=(",", ":")).encode()
    assert len(body) < 1024 * 1024  # under the body cap: the validator sees every key
    with server.client("operator") as client:
        answer = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    assert len(answer.content) < 64 * 1024
    problem = answer.json()
    assert problem["code"] == "invalid-request"
    assert len(problem["errors"]) == MAX_LISTED
    assert "Extra inputs are not permitted" in {e["message"] for e in problem["errors"]}
    # 110,000 unknown keys, and the required fields they do not include
    assert problem["errorsOmitted"] >= 110_000 - MAX_LISTED
    assert "violationsOmitted" not in problem
