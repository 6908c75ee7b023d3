"""Issue 18's acceptance, the happy paths: the official ``openai`` and ``anthropic`` SDKs,
base URL pointed at a real ``grove serve``, talk to models of every wire format
(Anthropic Messages, OpenAI-compatible chat completions, Gemini) for text, tool-call
round trips and streams; the ``model`` field names a model, a rule's taskType or
capabilities; every call is a routing-log row.

Each model's fake provider answers with its own sentence, so the text says which
model answered, and records what Grove sent it, so a test sees the translation
from both ends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import model_yaml, rule_yaml
from tests.gateway.callers import (
    ARGUMENTS,
    MAX_TOKENS,
    QUESTION,
    SYSTEM,
    TEMPERATURE,
    TOOL,
    TOOL_RESULT,
    Answer,
    upstream_sampling,
    upstream_turns,
)
from tests.gateway.conftest import Fleet, calling, fake_model, fakes, serving
from tests.routing.fakes import INPUT_TOKENS, OUTPUT_TOKENS

pytestmark = pytest.mark.slow  # a server process per module

REPLIES = {
    "claude": "Claude says: air scatters blue light more than red.",
    "gpt": "GPT says: shorter wavelengths scatter the most, so blue wins.",
    "gemini": "Gemini says: Rayleigh scattering makes the sky blue.",
    "swift": "Swift says: scattering.",
}
KINDS = {"claude": "anthropic", "gpt": "openai", "gemini": "gemini", "swift": "openai"}
# every SDK against every wire format: the pairs (openai -> Anthropic,
# anthropic -> OpenAI-compatible, Gemini behind both) and the same-format ones
PAIRS = [
    pytest.param("openai", "claude", id="openai-sdk-to-anthropic"),
    pytest.param("anthropic", "gpt", id="anthropic-sdk-to-openai-compatible"),
    pytest.param("openai", "gemini", id="openai-sdk-to-gemini"),
    pytest.param("anthropic", "gemini", id="anthropic-sdk-to-gemini"),
    pytest.param("openai", "gpt", id="openai-sdk-to-openai-compatible"),
    pytest.param("anthropic", "claude", id="anthropic-sdk-to-anthropic"),
]
SDKS = ["openai", "anthropic"]
GEMINI_CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")


@pytest.fixture(scope="module")
def fleet(module_tmp: Path, sqlite_template: Path) -> Iterator[Fleet]:
    kinds = [(KINDS[model], REPLIES[model]) for model in REPLIES]
    with fakes(*kinds) as started:
        by_model = dict(zip(REPLIES, started, strict=True))
        manifests: dict[str, str | bytes] = {
            "models/claude.yaml": fake_model(
                "claude", by_model["claude"], "{creativity: 0.9, precision: 0.6}", priority="100"
            ),
            "models/gpt.yaml": fake_model("gpt", by_model["gpt"], "{precision: 0.9}"),
            "models/gemini.yaml": fake_model(
                "gemini", by_model["gemini"], "{creativity: 0.5, precision: 0.8}", priority="50"
            ),
            "models/swift.yaml": fake_model(
                "swift", by_model["swift"], "{reasoning: 0.9, speed: 0.95}", priority="200"
            ),
            # better at reasoning, worse at speed, lower priority: capability routing
            # by priority passes it over
            "models/plodder.yaml": model_yaml(
                "plodder", capabilities="{reasoning: 0.95, speed: 0.3}", priority="10"
            ),
            "rules/draft.yaml": rule_yaml("draft", requires="[creativity]"),
        }
        with serving(module_tmp, sqlite_template, manifests) as gateway:
            yield Fleet(gateway, by_model)


def _assert_headers(answer: Answer, model: str, attempts: int = 1) -> None:
    assert answer.headers.get("x-grove-model") == model
    assert answer.headers.get("x-grove-attempts") == str(attempts)
    assert answer.headers.get("x-request-id")
    assert "x-grove-rule" in answer.headers


# ---------------------------------------------------------------- text


@pytest.mark.parametrize(("sdk", "model"), PAIRS)
def test_a_text_answer_in_the_callers_format_from_the_model_named(
    fleet: Fleet, sdk: str, model: str
) -> None:
    fake = fleet.fakes[model]
    before = fake.calls
    answer = fleet.caller(sdk).ask(model)
    assert answer.text == REPLIES[model]
    assert answer.model == model
    assert (answer.input_tokens, answer.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)
    assert answer.finish == "stop"
    _assert_headers(answer, model)
    assert fake.calls == before + 1
    sent = fake.sent()
    assert upstream_turns(fake.kind, sent) == [("system", SYSTEM), ("user", QUESTION)]
    assert upstream_sampling(fake.kind, sent) == (MAX_TOKENS, TEMPERATURE)


@pytest.mark.parametrize(("sdk", "model"), PAIRS)
def test_the_streamed_text_joined_is_the_text_and_arrives_in_chunks(
    fleet: Fleet, sdk: str, model: str
) -> None:
    caller = fleet.caller(sdk)
    whole = caller.ask(model)
    streamed = caller.stream(model)
    assert streamed.text == whole.text == REPLIES[model]
    assert len(streamed.pieces) > 1, "the answer came in one piece: buffered, not streamed"
    assert streamed.model == model
    assert (streamed.input_tokens, streamed.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)
    assert streamed.finish == "stop"
    assert streamed.headers["content-type"].startswith("text/event-stream")
    _assert_headers(streamed, model)
    sent = fleet.fakes[model].sent()
    assert upstream_turns(KINDS[model], sent) == [("system", SYSTEM), ("user", QUESTION)]


# ---------------------------------------------------------------- tools


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(("sdk", "model"), PAIRS)
def test_a_tool_call_round_trip(fleet: Fleet, sdk: str, model: str, stream: bool) -> None:
    """The model asks for a tool, the application runs it and sends the result, the model
    answers text: each turn translated both ways (the fake refuses a tool result that
    answers no call, as the real APIs do)."""
    caller = fleet.caller(sdk)
    fake = fleet.fakes[model]
    with calling(fake, TOOL, ARGUMENTS):
        asked = (caller.stream if stream else caller.ask)(model, tools=True)
        assert asked.finish == "tool_calls"
        assert [(c.name, c.arguments) for c in asked.calls] == [(TOOL, ARGUMENTS)]
        assert asked.calls[0].id
        assert asked.model == model
        _assert_headers(asked, model)
        _assert_tool_offered(fake.kind, fake.sent())
        answered = caller.answer_tool(model, asked, stream=stream)
    if sdk == "openai" and fake.kind == "gemini":  # Gemini gives no id: Grove makes one
        assert GEMINI_CALL_ID.match(asked.calls[0].id), asked.calls[0].id
    assert answered.text == REPLIES[model]
    assert answered.finish == "stop"
    assert answered.model == model
    _assert_tool_result_sent(fake.kind, fake.sent(), asked.calls[0].id)


def _assert_tool_offered(kind: str, sent: dict[str, Any]) -> None:
    tools = sent["tools"]
    if kind == "openai":
        names = [t["function"]["name"] for t in tools]
        schema = tools[0]["function"]["parameters"]
    elif kind == "anthropic":
        names = [t["name"] for t in tools]
        schema = tools[0]["input_schema"]
    else:
        declarations = [d for t in tools for d in t.get("functionDeclarations", [])]
        names = [d["name"] for d in declarations]
        schema = declarations[0].get("parameters") or declarations[0].get("parametersJsonSchema")
    assert names == [TOOL]
    assert set(schema["properties"]) == {"city", "days"}


def _assert_tool_result_sent(kind: str, sent: dict[str, Any], call_id: str) -> None:
    """The provider got the call back as the assistant's turn, with the id the caller
    sent, and the result as a tool turn of its own format (Gemini pairs them by name)."""
    if kind == "openai":
        call_turn, result = sent["messages"][-2:]
        assert call_turn["role"] == "assistant"
        assert [c["function"]["name"] for c in call_turn["tool_calls"]] == [TOOL]
        assert json.loads(call_turn["tool_calls"][0]["function"]["arguments"]) == ARGUMENTS
        assert call_turn["tool_calls"][0]["id"] == call_id
        assert result["role"] == "tool"
        assert result["tool_call_id"] == call_id
        assert TOOL_RESULT in json.dumps(result["content"])
    elif kind == "anthropic":
        call_turn, result = sent["messages"][-2:]
        uses = [b for b in call_turn["content"] if b["type"] == "tool_use"]
        assert [(b["name"], b["input"]) for b in uses] == [(TOOL, ARGUMENTS)]
        results = [b for b in result["content"] if b["type"] == "tool_result"]
        assert uses[0]["id"] == call_id
        assert [b["tool_use_id"] for b in results] == [call_id]
        assert TOOL_RESULT in json.dumps(results[0]["content"])
    else:
        call_turn, result = sent["contents"][-2:]
        assert call_turn["role"] == "model"
        assert [p["functionCall"] for p in call_turn["parts"] if "functionCall" in p] == [
            {"name": TOOL, "args": ARGUMENTS}
        ]
        responses = [p["functionResponse"] for p in result["parts"] if "functionResponse" in p]
        assert [r["name"] for r in responses] == [TOOL]
        assert TOOL_RESULT in json.dumps(responses[0]["response"])


# ---------------------------------------------------------------- the model field


@pytest.mark.parametrize("sdk", SDKS)
def test_a_task_type_routes_by_its_rule(fleet: Fleet, sdk: str) -> None:
    answer = fleet.caller(sdk).ask("draft")
    assert (answer.model, answer.text) == ("claude", REPLIES["claude"])
    assert answer.headers.get("x-grove-rule") == "draft"
    _assert_headers(answer, "claude")


@pytest.mark.parametrize("sdk", SDKS)
def test_capabilities_route_ad_hoc(fleet: Fleet, sdk: str) -> None:
    answer = fleet.caller(sdk).ask("capability:reasoning,speed")
    assert (answer.model, answer.text) == ("swift", REPLIES["swift"])
    _assert_headers(answer, "swift")
    streamed = fleet.caller(sdk).stream("capability:reasoning,speed")
    assert (streamed.model, streamed.text) == ("swift", REPLIES["swift"])


NAMES = ("claude", "gpt", "gemini", "swift", "plodder", "draft")


def test_an_unknown_model_is_openais_404_model_not_found_listing_the_names(fleet: Fleet) -> None:
    before = fleet.calls()
    with pytest.raises(openai.NotFoundError) as refused:
        fleet.caller("openai").ask("gpt-5-turbo")
    error = refused.value.response.json()["error"]
    assert error["code"] == "model_not_found"
    assert "gpt-5-turbo" in error["message"]
    assert all(name in error["message"] for name in NAMES), error["message"]
    with pytest.raises(openai.NotFoundError):
        fleet.caller("openai").stream("gpt-5-turbo")
    assert fleet.calls() == before


def test_an_unknown_model_is_anthropics_404_listing_the_names(fleet: Fleet) -> None:
    before = fleet.calls()
    with pytest.raises(anthropic.NotFoundError) as refused:
        fleet.caller("anthropic").ask("claude-9-opus")
    body = refused.value.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    assert "claude-9-opus" in body["error"]["message"]
    assert all(name in body["error"]["message"] for name in NAMES), body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError):
        fleet.caller("anthropic").stream("claude-9-opus")
    assert fleet.calls() == before


def test_the_models_list_is_openais(fleet: Fleet) -> None:
    listed = fleet.gateway.openai().models.list()
    ids = {model.id for model in listed.data}
    assert {"claude", "gpt", "gemini", "swift", "plodder"} <= ids
    assert all(model.object == "model" for model in listed.data)


# ---------------------------------------------------------------- bookkeeping


@pytest.mark.parametrize("sdk", SDKS)
def test_every_call_is_a_routing_log_row_with_its_version(fleet: Fleet, sdk: str) -> None:
    caller = fleet.caller(sdk)
    for answer in (caller.ask("gemini"), caller.stream("gemini")):
        rows = fleet.gateway.attempts(answer.headers["x-request-id"])
        assert [(r["modelId"], r["success"], r["attempt"], r["modelVersion"]) for r in rows] == [
            ("gemini", True, 1, "1")
        ]
        assert rows[0]["costUsd"] is not None and rows[0]["costUsd"] > 0


def test_a_client_token_passes_as_x_api_key_too(fleet: Fleet) -> None:
    """Anthropic's own header: an application that sets x-api-key (curl, older SDKs)."""
    answer = httpx.post(
        f"{fleet.gateway.url}/v1/messages",
        headers={"x-api-key": fleet.gateway.tokens["client"], "anthropic-version": "2023-06-01"},
        json={"model": "gpt", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
        timeout=15,
    )
    assert answer.status_code == 200, answer.text
    assert [b["text"] for b in answer.json()["content"]] == [REPLIES["gpt"]]


# ---------------------------------------------------------------- the other parameters

# what each format calls top_p, stop, max tokens, a forced tool and JSON output
UPSTREAM = {
    "openai": lambda s: (
        s.get("top_p"),
        s.get("stop"),
        s.get("max_tokens", s.get("max_completion_tokens")),
        s.get("tool_choice"),
    ),
    "anthropic": lambda s: (
        s.get("top_p"),
        s.get("stop_sequences"),
        s.get("max_tokens"),
        s.get("tool_choice"),
    ),
    "gemini": lambda s: (
        s["generationConfig"].get("topP"),
        s["generationConfig"].get("stopSequences"),
        s["generationConfig"].get("maxOutputTokens"),
        s.get("toolConfig"),
    ),
}
FORCED = {
    "openai": {"type": "function", "function": {"name": TOOL}},
    "anthropic": {"type": "tool", "name": TOOL},
    "gemini": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [TOOL]}},
}


@pytest.mark.parametrize("model", ["gpt", "claude", "gemini"])
@pytest.mark.parametrize("sdk", SDKS)
def test_top_p_stop_max_tokens_and_a_forced_tool_reach_every_format(
    fleet: Fleet, sdk: str, model: str
) -> None:
    fake = fleet.fakes[model]
    if sdk == "openai":
        fleet.caller("openai").ask(
            model,
            tools=True,
            top_p=0.5,
            stop=["END"],
            max_tokens=None,
            max_completion_tokens=40,
            tool_choice={"type": "function", "function": {"name": TOOL}},
        )
    else:
        fleet.caller("anthropic").ask(
            model,
            tools=True,
            stop_sequences=["END"],
            max_tokens=40,
            tool_choice={"type": "tool", "name": TOOL},
            extra_body={"top_p": 0.5},
        )
    assert UPSTREAM[fake.kind](fake.sent()) == (0.5, ["END"], 40, FORCED[fake.kind])


@pytest.mark.parametrize("model", ["gpt", "gemini"])
def test_json_output_where_the_provider_has_it(fleet: Fleet, model: str) -> None:
    fake = fleet.fakes[model]
    fleet.caller("openai").ask(model, response_format={"type": "json_object"})
    sent = fake.sent()
    if fake.kind == "openai":
        assert sent["response_format"] == {"type": "json_object"}
    else:
        assert sent["generationConfig"]["responseMimeType"] == "application/json"


def test_json_output_is_refused_naming_the_field_where_the_provider_has_none(
    fleet: Fleet,
) -> None:
    before = fleet.calls()
    with pytest.raises(openai.BadRequestError) as refused:
        fleet.caller("openai").ask("claude", response_format={"type": "json_object"})
    error = refused.value.response.json()["error"]
    assert error.get("param") == "response_format" or "response_format" in error["message"]
    assert fleet.calls() == before
