"""The gateway through a real server, plain HTTP (no SDK): the model-field forms, errors in
each caller's shape, and a routed answer with Grove's headers. The SDK acceptance suite is
tests/gateway/."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import Server
from tests.routing.fakes import FakeProvider


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    monkeypatch.setenv("GROVE_ALLOW_LOCAL_ENDPOINTS", "true")
    server = FakeProvider("anthropic", reply="hello from claude")
    yield server
    server.close()


def _register(server: Server, fake: FakeProvider) -> None:
    models = (
        {
            "id": "claude",
            "name": "Claude",
            "provider": "anthropic",
            "providerModel": "claude-x",
            "endpoint": fake.url,
            "credentials": {"env": "FAKE_ANTHROPIC_KEY"},
            "priority": 900,
            "fallbacks": ["steady"],
            "capabilities": {"reasoning": 0.9},
        },
        {
            "id": "steady",
            "name": "Steady",
            "provider": "mock",
            "priority": 10,
            "capabilities": {"reasoning": 0.5},
        },
    )
    with server.client("operator") as client:
        for body in reversed(models):  # the fallback first
            created = client.post("/api/models/register", json=body)
            assert created.status_code == 201, created.text


def test_openai_shape_end_to_end(
    fake: FakeProvider, monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", fake.key)
    _register(server, fake)
    with server.client("client") as client:
        answer = client.post(
            "/v1/chat/completions",
            json={"model": "claude", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"] == "claude"
        assert body["choices"][0]["message"]["content"] == "hello from claude"
        assert answer.headers["x-grove-model"] == "claude"
        assert answer.headers["x-grove-attempts"] == "1"
        missing = client.post(
            "/v1/chat/completions",
            json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"
        assert "claude" in missing.json()["error"]["message"]
        extra = client.post(
            "/v1/chat/completions",
            json={"model": "claude", "seed": 1, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert extra.status_code == 400, extra.text
        assert extra.json()["error"]["param"] == "seed"
        with client.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "claude",
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "hi"}],
            },
        ) as streamed:
            assert streamed.status_code == 200
            lines = [line for line in streamed.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(line[6:]) for line in lines[:-1]]
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert text == "hello from claude"
        assert chunks[-1]["usage"]["completion_tokens"] > 0
    with server.client("viewer") as client:
        refused = client.post(
            "/v1/messages",
            json={
                "model": "claude",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        assert refused.status_code == 403
        assert refused.json()["type"] == "error"
        assert refused.json()["error"]["type"] == "permission_error"


def test_edge_refusals_of_v1_are_in_the_callers_format(server: Server) -> None:
    huge = "x" * (1024 * 1024 + 10)
    with server.client("client") as client:
        too_large = client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": huge}]},
        )
        deep = client.post(
            "/v1/messages",
            content=b'{"model": ' + b"[" * 100 + b"]" * 100 + b"}",
            headers={"content-type": "application/json"},
        )
        api = client.post(
            "/api/routing/execute",
            content=b"[" * 100 + b"]" * 100,
            headers={"content-type": "application/json"},
        )
    assert too_large.status_code == 413
    assert too_large.json()["error"]["type"] == "invalid_request_error"
    assert "capped" in too_large.json()["error"]["message"]
    assert deep.status_code == 422
    assert deep.json()["type"] == "error" and "nested" in deep.json()["error"]["message"]
    assert api.json()["code"] == "too-deep"  # the API keeps its problem documents


def test_a_fallback_is_never_silent(
    fake: FakeProvider, monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    monkeypatch.delenv("FAKE_ANTHROPIC_KEY", raising=False)  # claude cannot be called
    _register(server, fake)
    with server.client("client") as client:
        answer = client.post(
            "/v1/chat/completions",
            json={"model": "claude", "messages": [{"role": "user", "content": "hi"}]},
        )
        with client.stream(
            "POST",
            "/v1/messages",
            json={
                "model": "claude",
                "max_tokens": 20,
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
        ) as streamed:
            events = [line for line in streamed.iter_lines() if line.startswith("event: ")]
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "steady"
    assert answer.headers["x-grove-attempts"] == "2"
    assert answer.headers["x-grove-failover"] == "claude (configuration)"
    assert streamed.headers["x-grove-failover"] == "claude (configuration)"
    assert streamed.headers["x-grove-model"] == "steady"
    assert events[0] == "event: message_start" and events[-1] == "event: message_stop"


def test_a_caller_leaving_before_the_first_word_cancels_the_upstream_call(
    fake: FakeProvider, monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", fake.key)
    _register(server, fake)
    fake.behaviour = "stall-after:0"  # the stream opens, and no word ever comes
    with httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.tokens['client']}"},
        timeout=httpx.Timeout(60, read=0.5),
    ) as client:
        with (
            pytest.raises(httpx.ReadTimeout),
            client.stream(
                "POST",
                "/v1/chat/completions",
                json={
                    "model": "claude",
                    "stream": True,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            ),
        ):
            pass
        left = time.monotonic()
    deadline = left + 3
    while not fake.closed_at and time.monotonic() < deadline:
        time.sleep(0.005)
    assert fake.closed_at, "the provider never saw its connection closed"
    assert fake.closed_at[-1] - left < 0.1
    with server.client("operator") as operator:
        for _ in range(50):
            rows = operator.get("/api/routing/logs", params={"modelId": "claude"}).json()
            if rows:
                break
            time.sleep(0.1)
        health = operator.get("/api/models/health").json()
    assert [(r["errorKind"], r["success"]) for r in rows] == [("cancelled", False)]
    assert not any("claude" in reason for reason in health["reasons"])  # no circuit counted


def test_a_rate_limited_model_is_a_429_saying_when_to_come_back(
    fake: FakeProvider, monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", fake.key)
    body = {
        "id": "lonely",
        "name": "Lonely",
        "provider": "anthropic",
        "providerModel": "claude-x",
        "endpoint": fake.url,
        "credentials": {"env": "FAKE_ANTHROPIC_KEY"},
        "capabilities": {"reasoning": 0.9},
    }
    fake.behaviour = "429:7"
    with server.client("operator") as operator:
        assert operator.post("/api/models/register", json=body).status_code == 201
    with server.client("client") as client:
        limited = client.post(
            "/v1/messages",
            json={
                "model": "lonely",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
            },
        )
        closed = client.post(
            "/v1/chat/completions",
            json={"model": "lonely", "messages": [{"role": "user", "content": "x"}]},
        )
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert 6 <= int(limited.headers["retry-after"]) <= 7  # the provider's word, not a guess
    assert closed.status_code == 503, closed.text  # its circuit is open now: nobody to call
    assert 5 <= int(closed.headers["retry-after"]) <= 7
    assert fake.calls == 1


def test_a_model_passed_over_before_any_call_is_named_too(
    fake: FakeProvider, monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    monkeypatch.delenv("FAKE_ANTHROPIC_KEY", raising=False)  # claude fails every call
    _register(server, fake)
    body = {"model": "capability:reasoning", "messages": [{"role": "user", "content": "hi"}]}
    with server.client("client") as client:
        seen = [client.post("/v1/chat/completions", json=body) for _ in range(4)]
        lost = client.post("/chat/completions", json=body)  # a base URL without /v1
    assert [a.headers["x-grove-failover"] for a in seen] == ["claude (configuration)"] * 3 + [
        "claude (skipped)"  # its circuit opened after three failures: not called at all
    ]
    assert [a.headers["x-grove-attempts"] for a in seen] == ["2", "2", "2", "1"]
    assert lost.status_code == 404
    assert "the gateway is at /v1" in lost.json()["error"]["message"]
