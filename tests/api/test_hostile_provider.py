"""Issue 13 through the real HTTP API: an OpenAI-compatible provider answering absurd token
counts never makes ``POST /api/routing/execute`` fail. Every call is answered by the
fallback, each bad answer is a ``bad_response`` routing-log row, the circuit opens
after three failures in a row, and no cost is negative."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.conftest import Server
from tests.routing.fakes import FakeProvider
from tests.routing.test_hostile_answers import ABSURD


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    monkeypatch.setenv("GROVE_ALLOW_LOCAL_ENDPOINTS", "true")  # the fake is on loopback
    server = FakeProvider("openai")
    yield server
    server.close()


def _register(server: Server, provider: FakeProvider) -> None:
    common = {"capabilities": {"precision": 1.0}}
    models = (
        {
            "id": "hostile",
            "name": "Hostile",
            "provider": "openai-compatible",
            "providerModel": "any",
            "endpoint": provider.url,
            "priority": 1000,
            "pricing": {"inputPerMTok": 1.0, "outputPerMTok": 2.0},
            **common,
        },
        {"id": "steady", "name": "Steady", "provider": "mock", "priority": 999, **common},
    )
    with server.client("operator") as client:
        for body in models:
            created = client.post("/api/models/register", json=body)
            assert created.status_code == 201, created.text


@pytest.mark.slow
def test_absurd_token_counts_fail_over_log_and_open_the_circuit(
    provider: FakeProvider,
    server: Server,  # the provider first: it allows local endpoints
) -> None:
    _register(server, provider)
    answered = []
    with server.client("operator") as client:
        for literal in ABSURD:  # four calls; the third failure opens the circuit
            provider.behaviour = provider.answering("usage.prompt_tokens", literal)
            answer = client.post(
                "/api/routing/execute", json={"capabilities": ["precision"], "prompt": "hi"}
            )
            assert answer.status_code == 200, answer.text
            answered.append(answer.json())
        logs = client.get("/api/routing/logs", params={"limit": 50}).json()
        health = client.get("/api/models/health").json()
    assert [a["modelId"] for a in answered] == ["steady"] * 4
    assert [[t["outcome"] for t in a["attempts"]] for a in answered] == [
        ["bad_response", "success"]
    ] * 3 + [["success"]]
    assert "failover from hostile: circuit open" in answered[3]["decision"]["reason"]
    assert provider.calls == 3  # none while the circuit is open
    assert all(a["costUsd"] >= 0 for a in answered)
    failed = [row for row in logs if row["modelId"] == "hostile"]
    assert [(r["success"], r["errorKind"], r["costUsd"]) for r in failed] == [
        (False, "bad_response", None)
    ] * 3
    assert all(r["costUsd"] is None or r["costUsd"] >= 0 for r in logs)
    assert "circuits open: hostile (version 1)" in health["reasons"]
