"""Issue 13 through the real HTTP API: an OpenAI-compatible provider answering absurd token
counts never makes ``POST /api/routing/execute`` fail. Every call is answered by the
fallback, each bad answer is a ``bad_response`` routing-log row, the circuit opens
after three failures in a row, and no cost is negative."""

from __future__ import annotations

import logging
import socket
import time
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


def _register(server: Server, provider: FakeProvider, **hostile: object) -> None:
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
            **hostile,
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


ROUTED = {"capabilities": ["precision"], "prompt": "hi"}


@pytest.mark.slow
def test_a_provider_that_lies_or_stops_halfway_fails_over_and_is_logged(
    provider: FakeProvider, server: Server
) -> None:
    """Through the HTTP API: an answer without usage (allowed to an openai-compatible
    server), a body that does not parse, one that stops halfway (a Content-Length of
    1,000, ten bytes, then the connection closed) and one dripping a byte a second past
    the whole-call deadline: each call answers 200, the failures from the fallback,
    and every attempt is a routing-log row."""
    _register(server, provider, timeoutMs=800)
    cases = [
        (provider.answering("usage", None), ["success"]),
        ("malformed", ["bad_response", "success"]),
        ("cut", ["connection_error", "success"]),
        ("trickle", ["timeout", "success"]),
    ]
    with server.client("operator") as client:
        for behaviour, outcomes in cases:
            provider.behaviour = behaviour
            answer = client.post("/api/routing/execute", json=ROUTED)
            assert answer.status_code == 200, (behaviour, answer.text)
            assert [t["outcome"] for t in answer.json()["attempts"]] == outcomes, behaviour
        logs = client.get("/api/routing/logs", params={"limit": 50}).json()
    hostile = [(r["success"], r["errorKind"]) for r in reversed(logs) if r["modelId"] == "hostile"]
    assert hostile == [
        (True, None),
        (False, "bad_response"),
        (False, "connection_error"),
        (False, "timeout"),
    ]


@pytest.mark.slow
def test_a_client_that_hangs_up_mid_call_ends_cleanly_and_the_call_is_logged(
    provider: FakeProvider, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller closes its connection while the provider is still answering: the
    server goes on serving, the attempt still becomes a routing-log row, and nothing is
    logged as an error (no 500, no traceback)."""
    _register(server, provider)
    provider.delay_s = 1.0
    host, port = server.url.removeprefix("http://").split(":")
    body = b'{"capabilities": ["precision"], "prompt": "hi"}'
    head = (
        f"POST /api/routing/execute HTTP/1.1\r\nHost: grove\r\n"
        f"Authorization: Bearer {server.tokens['operator']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with caplog.at_level(logging.WARNING):
        with socket.create_connection((host, int(port))) as caller:
            caller.sendall(head.encode() + body)
            time.sleep(0.3)  # the provider is answering: hang up
        provider.delay_s = 0.0
        with server.client("operator") as client:
            deadline = time.monotonic() + 20
            rows: list[dict[str, object]] = []
            while not rows and time.monotonic() < deadline:
                time.sleep(0.1)
                logs = client.get("/api/routing/logs", params={"limit": 50}).json()
                rows = [r for r in logs if r["modelId"] == "hostile"]
            assert provider.calls == 1  # the hung-up call reached the provider once
            assert client.post("/api/routing/execute", json=ROUTED).status_code == 200
    assert [(r["success"], r["errorKind"]) for r in rows] == [(True, None)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
