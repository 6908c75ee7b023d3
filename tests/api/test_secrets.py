"""Issue 6: a canary key in the environment and in a refused manifest appears in no
response, log line or database row, whatever the provider answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from reconciler.store import tables
from tests.api.conftest import Server
from tests.routing.fakes import FakeProvider

CANARY = "sk-canary-0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"


@pytest.fixture
def canary_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CANARY_PROVIDER_KEY", CANARY)
    monkeypatch.setenv("GROVE_ALLOW_LOCAL_ENDPOINTS", "true")  # the fake is on loopback
    yield


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    server = FakeProvider("openai", key=CANARY)  # so every scripted answer is reached
    yield server
    server.close()


def _assert_nowhere(server: Server, seen: list[str], caplog: pytest.LogCaptureFixture) -> None:
    """The canary is in no answer in ``seen``, no row of any table, no log record."""
    rows = [
        json.dumps(server.registry.sql(f"SELECT * FROM {table.name}"), default=str)  # noqa: S608
        for table in tables.metadata.sorted_tables
    ]
    logged = [
        record.getMessage() + json.dumps(getattr(record, "fields", {}), default=str)
        for record in caplog.records
    ]
    for place, text in (("answers", seen), ("rows", rows), ("logs", logged)):
        assert not [t for t in text if CANARY in t], f"the canary leaked into {place}"


@pytest.mark.slow  # about two seconds: every route, log and row searched
def test_a_canary_key_is_in_no_answer_log_or_row(
    canary_env: None,
    server: Server,
    provider: FakeProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with server.client("operator") as client:
        created = client.post(
            "/api/models/register",
            json={
                "id": "leaky",
                "name": "Leaky",
                "provider": "openai",
                "providerModel": "gpt-x",
                "capabilities": {"precision": 1.0},
                "endpoint": provider.url,
                "credentials": {"env": "CANARY_PROVIDER_KEY"},
                "priority": 1000,
            },
        )
        assert created.status_code == 201, created.text
        seen.append(created.text)
        outcomes = []
        # an answer in between closes the circuit that three failures in a row would open
        script = ("echo-key", "status:401", "ok", "status:500", "redirect", "ok", "malformed", "ok")
        for behaviour in script:
            provider.behaviour = behaviour
            answer = client.post(
                "/api/routing/execute", json={"capabilities": ["precision"], "prompt": "hi"}
            )
            seen.append(answer.text)
            outcomes.append(answer.status_code)
        # each scripted answer was reached (a refused key would make them all one 401)
        assert outcomes == [502, 502, 200, 502, 502, 200, 502, 200], outcomes
        # the canary as a literal in manifests: refused, never echoed
        for body in (
            {"id": "lit", "name": CANARY, "provider": "mock", "capabilities": ["speed"]},
            {"id": "lit2", "name": "x", "provider": "mock", "capabilities": ["speed"],
             "labels": {"apiKey": CANARY}},
        ):  # fmt: skip
            refused = client.post("/api/models/register", json=body)
            assert refused.status_code == 422
            seen.append(refused.text)
        patched = client.patch("/api/models/leaky", json={"labels": {"token": CANARY}})
        assert patched.status_code == 422
        seen.append(patched.text)
        for path in (
            "/api/routing/logs",
            "/metrics",
            "/api/status",
            "/api/plan",
            "/api/models/leaky",
        ):
            seen.append(client.get(path).text)
    # the key really went to the provider, in its header and nowhere else
    # every call carried it (the fake would also answer a call without one)
    assert provider.requests
    assert all(r["headers"].get("authorization") == f"Bearer {CANARY}" for r in provider.requests)
    assert all(CANARY.encode() not in r["body"] for r in provider.requests)

    _assert_nowhere(server, seen, caplog)
    assert server.log()[0].split("|", 1)[1] == "grove: register AIModel leaky (version 1)"


def test_a_canary_committed_to_git_is_refused_and_echoed_nowhere(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A literal key committed to the fleet repository (not through the API): the
    reconcile refuses the commit, and no answer, log line or row repeats the key."""
    caplog.set_level(logging.DEBUG)
    leaked = (
        "meta: {id: leaky-git, type: AIModel, version: '1'}\n"
        "payload:\n"
        "  name: Leaky\n"
        "  provider: mock\n"
        "  capabilities: {speed: 0.5}\n"
        f"  labels: {{apiKey: {CANARY}}}\n"
    )
    server.registry.fleet.push_to(
        server.bare, "a key where it must not be", {"models/leaky-git.yaml": leaked}
    )
    seen: list[str] = []
    with server.client("operator") as client:
        outcome = client.post("/api/reconcile")
        seen.append(outcome.text)
        assert outcome.status_code == 200, outcome.text
        assert outcome.json()["outcome"] == "invalid", outcome.text
        for path in ("/api/status", "/api/plan", "/api/models/leaky-git", "/metrics"):
            seen.append(client.get(path).text)
    found = json.loads(seen[2])["diagnostics"]  # the plan says why, without the key
    assert {"file": "manifests/models/leaky-git.yaml", "line": 6, "code": "K001"}.items() <= next(
        d for d in found if d["code"] == "K001"
    ).items()
    assert "AIModel/leaky-git" not in server.registry.live()
    _assert_nowhere(server, seen, caplog)
