"""Each adapter speaks its provider's real wire format to a real loopback server."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from reconciler.providers.base import ChatRequest, Message
from tests.routing.conftest import ask, model_doc, rule_doc
from tests.routing.fakes import FakeProvider


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
def test_a_call_reaches_the_provider_in_its_format_and_is_normalized(
    kind: str, fake: Callable[[str], FakeProvider], engine_for: Callable[..., object]
) -> None:
    server = fake(kind, reply=f"hello from {kind}")
    engine = engine_for(model_doc("m", server), rule_doc("think"))
    result = ask(engine)  # type: ignore[arg-type]
    assert result.model_id == "m"
    assert result.response.text == f"hello from {kind}"
    assert (result.response.input_tokens, result.response.output_tokens) == (12, 5)
    assert result.response.cost_usd == pytest.approx((12 * 1.0 + 5 * 2.0) / 1_000_000)
    assert server.calls == 1
    sent = json.loads(server.requests[0]["body"])
    if kind == "openai":
        assert server.requests[0]["path"] == "/v1/chat/completions"
        assert sent["messages"] == [{"role": "user", "content": "hello"}]
        assert sent["model"] == "openai-model"
    elif kind == "anthropic":
        assert server.requests[0]["path"] == "/v1/messages"
        assert server.requests[0]["headers"]["anthropic-version"] == "2023-06-01"
        assert sent["max_tokens"] == 512
    else:
        assert server.requests[0]["path"] == "/v1/models/gemini-model:generateContent"
        assert sent["contents"] == [{"role": "user", "parts": [{"text": "hello"}]}]
        assert sent["generationConfig"] == {"maxOutputTokens": 512}


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
def test_system_prompts_go_where_each_provider_wants_them(
    kind: str, fake: Callable[[str], FakeProvider], engine_for: Callable[..., object]
) -> None:
    from reconciler.routing import engine as routing

    server = fake(kind)
    engine = engine_for(model_doc("m", server), rule_doc("think"))
    chat = ChatRequest(
        (
            Message("system", "be brief"),
            Message("user", "hi"),
            Message("assistant", "yo"),
            Message("user", "again"),
        ),
        max_tokens=64,
        temperature=0.2,
    )
    routing.run(engine, engine.route_request(routing.TaskRequest(task_type="think"), chat))  # type: ignore[arg-type, attr-defined]
    sent = json.loads(server.requests[0]["body"])
    if kind == "openai":
        assert sent["messages"][0] == {"role": "system", "content": "be brief"}
        assert sent["temperature"] == 0.2
    elif kind == "anthropic":
        assert sent["system"] == "be brief"
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    else:
        assert sent["systemInstruction"] == {"parts": [{"text": "be brief"}]}
        assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]
        assert sent["generationConfig"]["temperature"] == 0.2


def test_a_missing_key_is_a_configuration_failure_naming_the_variable(
    fake: Callable[[str], FakeProvider],
    engine_for: Callable[..., object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reconciler.routing import engine as routing

    server = fake("anthropic")
    monkeypatch.delenv("FAKE_ANTHROPIC_KEY")
    engine = engine_for(model_doc("m", server), rule_doc("think"))
    with pytest.raises(routing.RoutingFailed) as failed:
        ask(engine)  # type: ignore[arg-type]
    assert failed.value.attempts[0].outcome == "configuration"
    assert "FAKE_ANTHROPIC_KEY is not set" in failed.value.attempts[0].message
    assert server.calls == 0


def test_the_mock_provider_answers_in_process(engine_for: Callable[..., object]) -> None:
    engine = engine_for(
        model_doc("m", mock={"latencyMs": 5, "failureRate": 0.0, "reply": "mocked"}),
        rule_doc("think"),
    )
    result = ask(engine)  # type: ignore[arg-type]
    assert result.response.text == "mocked"
    assert result.response.latency_ms >= 5


def test_a_header_the_client_refuses_fails_as_configuration_without_its_value(
    fake: Callable[[str], FakeProvider],
) -> None:
    """Keys are checked where they are read (wire.api_key); any other header value the
    HTTP client refuses still fails as a configuration error that does not echo it."""
    import asyncio

    from reconciler.providers import transport
    from reconciler.providers.base import FailureKind, ProviderError

    server = fake("openai")

    async def send() -> None:
        http = transport.Http(allow_local=True)
        try:
            await http.post_json(
                f"{server.url}/chat/completions",
                {"X-Extra": "canary-77\r\nX-Injected: yes"},
                {"model": "m"},
                deadline_s=5,
            )
        finally:
            await http.aclose()

    with pytest.raises(ProviderError) as failed:
        asyncio.run(send())
    assert failed.value.kind is FailureKind.CONFIGURATION
    assert "could not be built" in str(failed.value) and "canary" not in str(failed.value)
    assert server.calls == 0
