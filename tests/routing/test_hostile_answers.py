"""A provider's answer can never break a route (issue 13).

Whatever a provider answers (token counts of ``1e400``, a 400-digit integer, a
negative number, a string; a missing or malformed field; a body that is not an
object), on a real loopback server speaking the provider's wire format: the
attempt is a ``bad_response`` naming the field without repeating a long value,
the fallback answers, the circuit opens after the configured failures, the
routing log gets the row, and no cost is negative or non-finite.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.base import settings as settings_module
from reconciler.manifests import kinds as manifests
from reconciler.providers import answers
from reconciler.providers.base import MAX_TOKENS, FailureKind, ProviderError, cost_of
from reconciler.routing import circuits
from reconciler.routing import engine as routing
from reconciler.store.engine import Database
from tests.conftest import Registry
from tests.routing.conftest import ask, commit_documents, model_doc, rule_doc
from tests.routing.fakes import FakeProvider

HUGE = "1" + "0" * 400  # 10**400: an integer Python reads, no column holds
HUGER = "1" + "0" * 5000  # past Python's 4,300-digit limit: json.loads would raise
# the four token counts, and how a message shows each
ABSURD = {
    "1e400": "inf",
    HUGE: "a 401-digit integer",
    "-1000000000": "-1000000000",
    '"7"': "the string '7'",
}
LONG = '"' + "x" * 100_000 + '"'
SURROGATE = '"hi \\ud800 there"'
LONE = "text must be Unicode text (it holds a lone surrogate)"

CASES: list[tuple[str, str, str | None, str]] = [
    *(
        ("openai", "usage.prompt_tokens", k, f"usage.prompt_tokens is {v};")
        for k, v in ABSURD.items()
    ),
    ("openai", "usage.prompt_tokens", HUGER, "usage.prompt_tokens is a 5001-digit integer"),
    ("openai", "usage.prompt_tokens", "-" + HUGER, "is a negative 5001-digit integer"),
    ("openai", "usage.prompt_tokens", "true", "usage.prompt_tokens is true"),
    ("openai", "usage.prompt_tokens", "12.0", "usage.prompt_tokens is 12.0"),
    ("openai", "usage.prompt_tokens", "NaN", "usage.prompt_tokens is nan"),
    ("openai", "usage.prompt_tokens", "null", "usage.prompt_tokens is null"),
    ("openai", "usage.prompt_tokens", "1000000001", "usage.prompt_tokens is 1000000001"),
    ("openai", "usage.prompt_tokens", '{"n": 1}', "usage.prompt_tokens is an object"),
    ("openai", "usage.completion_tokens", "-1", "usage.completion_tokens is -1"),
    ("openai", "usage.prompt_tokens", None, "the answer has no usage.prompt_tokens"),
    ("openai", "usage", None, "the answer has no usage"),
    ("openai", "usage", "null", "usage is null"),
    ("openai", "usage", '"7"', "usage is the string '7'; an object was expected"),
    ("openai", "choices", "[]", "choices is an empty array"),
    ("openai", "choices", '"all"', "choices is the string 'all'"),
    ("openai", "choices.0.message.content", "null", "choices[0].message.content is null"),
    ("openai", "choices.0.message.content", "[1, 2]", "content is an array of 2 items"),
    ("openai", "choices.0.message", None, "the answer has no choices[0].message"),
    ("openai", "choices.0.finish_reason", LONG, "finish_reason is the string 'xxxx"),
    ("openai-compatible", "usage.prompt_tokens", "1e400", "usage.prompt_tokens is inf"),
    ("openai-compatible", "usage.completion_tokens", None, "has no usage.completion_tokens"),
    ("anthropic", "usage.input_tokens", HUGE, "usage.input_tokens is a 401-digit integer"),
    ("anthropic", "usage.output_tokens", '"5"', "usage.output_tokens is the string '5'"),
    ("anthropic", "usage", None, "the answer has no usage"),
    ("anthropic", "content", "null", "content is null"),
    ("anthropic", "content.0.text", "7", "content[0].text is 7"),
    ("anthropic", "content.0.text", None, "content[0] is an object; a text block must have a"),
    ("anthropic", "stop_reason", "12", "stop_reason is 12"),
    ("gemini", "usageMetadata.promptTokenCount", "-5", "usageMetadata.promptTokenCount is -5"),
    ("gemini", "usageMetadata.candidatesTokenCount", "1e400", "candidatesTokenCount is inf"),
    ("gemini", "usageMetadata", None, "the answer has no usageMetadata"),
    ("gemini", "candidates", "[]", "candidates is an empty array"),
    ("gemini", "candidates.0.content.parts.0.text", '["a"]', "parts[0].text is an array"),
    # a lone surrogate: JSON lets "\ud800" through, UTF-8 (an answer, a log row) cannot
    ("openai", "choices.0.message.content", SURROGATE, LONE),
    ("openai", "choices.0.finish_reason", SURROGATE, LONE),
    ("anthropic", "content.0.text", SURROGATE, LONE),
    ("gemini", "candidates.0.content.parts.0.text", SURROGATE, LONE),
]


def _primary(fake: Callable[[str], FakeProvider], kind: str) -> tuple[FakeProvider, dict[str, Any]]:
    """A fake provider of ``kind`` (``openai-compatible``: an OpenAI fake declared so)."""
    server = fake("openai" if kind == "openai-compatible" else kind)
    document = model_doc("primary", server, priority=90)
    if kind == "openai-compatible":
        document["payload"]["provider"] = "openai-compatible"
    return server, document


def _pair(
    fake: Callable[[str], FakeProvider],
    engine_for: Callable[..., routing.RoutingEngine],
    kind: str,
    **options: Any,
) -> tuple[FakeProvider, routing.RoutingEngine]:
    server, document = _primary(fake, kind)
    engine = engine_for(document, model_doc("fallback", priority=10), rule_doc("think"), **options)
    return server, engine


@pytest.mark.parametrize(
    ("kind", "field", "literal", "said"),
    CASES,
    ids=[f"{c[0]}-{c[1]}={(c[2] or 'absent')[:12]}" for c in CASES],
)
def test_a_hostile_answer_is_a_bad_response_and_the_fallback_answers(
    fake: Callable[[str], FakeProvider],
    engine_for: Callable[..., routing.RoutingEngine],
    kind: str,
    field: str,
    literal: str | None,
    said: str,
) -> None:
    primary, engine = _pair(fake, engine_for, kind)
    primary.behaviour = primary.answering(field, literal)
    result = ask(engine)
    assert result.model_id == "fallback"
    failed = result.attempts[0]
    assert (failed.model_id, failed.outcome) == ("primary", "bad_response")
    assert said in failed.message
    assert failed.message.startswith("primary: ")
    assert len(failed.message) < 300  # a 100,000-character value is not repeated
    assert result.response.cost_usd >= 0 and math.isfinite(result.response.cost_usd)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("[]", "the answer is an empty array, not a JSON object"),
        ('"hello"', "the answer is the string 'hello', not a JSON object"),
        ("null", "the answer is null, not a JSON object"),
        ("Infinity", "the answer is inf, not a JSON object"),
        ("", "the answer is not JSON"),
    ],
)
def test_an_answer_that_is_no_object_is_a_bad_response(
    fake: Callable[[str], FakeProvider],
    engine_for: Callable[..., routing.RoutingEngine],
    body: str,
    said: str,
) -> None:
    primary, engine = _pair(fake, engine_for, "openai")
    primary.behaviour = "body:" + body
    result = ask(engine)
    assert result.model_id == "fallback"
    assert result.attempts[0].outcome == "bad_response"
    assert said in result.attempts[0].message


def test_the_circuit_opens_after_the_configured_failures(
    fake: Callable[[str], FakeProvider], engine_for: Callable[..., routing.RoutingEngine]
) -> None:
    """The issue's four counts in a row, with a threshold of four: four calls reach the
    provider, each answered by the fallback; then the circuit is open and the provider
    is not called any more."""
    primary, engine = _pair(
        fake, engine_for, "openai-compatible", breakers=circuits.Breakers(failure_threshold=4)
    )
    for number, literal in enumerate(ABSURD, start=1):
        primary.behaviour = primary.answering("usage.prompt_tokens", literal)
        assert engine.breakers.blocked(engine.live_version("primary")) is None  # not yet
        result = ask(engine)
        assert result.model_id == "fallback"
        assert [a.outcome for a in result.attempts] == ["bad_response", "success"]
        assert primary.calls == number
    assert "bad_response" in (engine.breakers.blocked(engine.live_version("primary")) or "")
    assert ask(engine).model_id == "fallback"
    assert primary.calls == 4  # zero attempts while the circuit is open


def test_an_openai_compatible_server_may_count_no_tokens(
    fake: Callable[[str], FakeProvider], engine_for: Callable[..., routing.RoutingEngine]
) -> None:
    """An answer without ``usage`` at all: the text is served, the counts are unknown
    (0 in the answer, null in the routing log), the cost 0. Not from OpenAI itself,
    which always counts (see the cases above)."""
    primary, engine = _pair(fake, engine_for, "openai-compatible")
    primary.behaviour = primary.answering("usage", None)
    result = ask(engine)
    assert result.model_id == "primary"
    response = result.response
    assert (response.text, response.input_tokens, response.output_tokens) == ("fake answer", 0, 0)
    assert (response.cost_usd, response.counted) == (0.0, False)


def test_gemini_leaves_out_a_count_of_zero(
    fake: Callable[[str], FakeProvider], engine_for: Callable[..., routing.RoutingEngine]
) -> None:
    """proto3 JSON omits zero values: an absent count is 0, not a bad answer."""
    primary, engine = _pair(fake, engine_for, "gemini")
    primary.behaviour = primary.answering("usageMetadata.candidatesTokenCount", None)
    result = ask(engine)
    assert result.model_id == "primary"
    assert (result.response.input_tokens, result.response.output_tokens) == (12, 0)


def test_an_exception_no_adapter_classified_is_a_bad_response(
    fake: Callable[[str], FakeProvider], engine_for: Callable[..., routing.RoutingEngine]
) -> None:
    """The backstop behind the checks: an adapter that raises something else (a gap in
    the checks a future provider finds) fails the attempt over, never a 500."""

    class Broken:
        async def complete(self, model: manifests.AIModel, request: Any) -> Any:
            raise OverflowError("cannot convert float infinity to integer")

    _, engine = _pair(fake, engine_for, "openai")
    engine.providers.adapters[manifests.Provider.OPENAI] = Broken()
    result = ask(engine)
    assert result.model_id == "fallback"
    assert result.attempts[0].outcome == "bad_response"
    assert result.attempts[0].message == "primary: the answer could not be read (OverflowError)"


def test_cost_of_refuses_counts_out_of_range_and_is_never_negative() -> None:
    model = manifests.parse_document(
        model_doc("m", None, pricing={"inputPerMTok": 10_000, "outputPerMTok": 10_000}),
        allow_local_endpoints=True,
    )
    assert isinstance(model, manifests.AIModel)
    assert cost_of(model, MAX_TOKENS, MAX_TOKENS) == 2 * 10_000 * 1_000
    for bad in (-1, MAX_TOKENS + 1, 10**400, True, 7.0, "7"):
        with pytest.raises(ProviderError) as refused:
            cost_of(model, bad, 0)  # type: ignore[arg-type]
        assert refused.value.kind is FailureKind.BAD_RESPONSE
        assert (
            str(refused.value)
            == "m: the input token count is not an integer from 0 to 1,000,000,000"
        )


# ---------------------------------------------------------------- any JSON at all

_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**20, max_value=10**60)
    | st.floats()
    | st.text(max_size=50)
    | st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)  # lone surrogates
)
_JSON = st.recursive(
    _LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_VALID = {
    answers.OpenAIAnswer: {
        "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    },
    answers.AnthropicAnswer: {
        "content": [{"type": "text", "text": "hi"}],
        "usage": {"input_tokens": 3, "output_tokens": 1},
    },
    answers.GeminiAnswer: {
        "candidates": [{"content": {"parts": [{"text": "hi"}]}}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
    },
}


def _leaves(value: Any, where: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*where, k))] or [where]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*where, i))] or [where]
    return [where]


def _replaced(answer: Any, where: tuple[Any, ...], value: Any) -> Any:
    if not where:
        return value
    copy = json.loads(json.dumps(answer))
    holder = copy
    for step in where[:-1]:
        holder = holder[step]
    holder[where[-1]] = value
    return copy


@pytest.mark.slow
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), shape=st.sampled_from(list(_VALID)), value=_JSON)
def test_any_json_in_any_field_is_read_or_refused_as_a_bad_response(
    data: st.DataObject, shape: type[answers.Answer], value: Any
) -> None:
    """A valid answer with one value (or the whole answer) replaced by any JSON value:
    either a reading whose counts fit, or a short bad_response; nothing else."""
    valid = _VALID[shape]
    where = data.draw(st.sampled_from([(), *_leaves(valid)]))
    answer = _replaced(valid, where, value)
    try:
        reading = answers.read(shape, answer, "m")
    except ProviderError as exc:
        assert exc.kind is FailureKind.BAD_RESPONSE
        assert len(str(exc)) < 400
        return
    assert isinstance(reading.text, str)
    reading.text.encode("utf-8")  # text any answer, log row or event can carry
    for count in (reading.input_tokens, reading.output_tokens):
        assert type(count) is int and 0 <= count <= MAX_TOKENS


# ---------------------------------------------------------------- through the routing log


@pytest.mark.slow
def test_hostile_counts_leave_bad_response_rows_and_no_negative_cost(
    registry: Registry, fake: Callable[[str], FakeProvider], local_endpoints: None
) -> None:
    """The acceptance case on a reconciled registry (SQLite and PostgreSQL), with the
    routing-log writer: the issue's four counts from an OpenAI-compatible server, a
    circuit threshold of four, then one more call."""
    primary, document = _primary(fake, "openai-compatible")
    commit_documents(registry, document, model_doc("fallback", priority=10), rule_doc("think"))
    config = settings_module.load()
    engine = routing.RoutingEngine(
        config, Database(config.db_url), breakers=circuits.Breakers(failure_threshold=4)
    )
    try:
        engine.refresh()
        for literal in [*ABSURD, "1"]:  # the last one finds the circuit open
            primary.behaviour = primary.answering("usage.prompt_tokens", literal)
            assert ask(engine).model_id == "fallback"
        engine.flush_logs()
    finally:
        engine.close()
    assert primary.calls == 4
    rows = registry.sql(
        "SELECT model_id, success, error_kind, cost_usd, input_tokens, routing_decision "
        "FROM routing_logs ORDER BY timestamp"
    )
    failed = [r for r in rows if r[0] == "primary"]
    assert [(r[1], r[2], r[3], r[4]) for r in failed] == [(False, "bad_response", None, None)] * 4
    errors = [(r[5] if isinstance(r[5], dict) else json.loads(r[5]))["error"] for r in failed]
    assert [e.split("; ")[0] for e in errors] == [
        f"primary: the answer's usage.prompt_tokens is {shown}" for shown in ABSURD.values()
    ]
    served = [r for r in rows if r[0] == "fallback"]
    assert len(served) == 5 and all(r[1] and r[3] is not None and r[3] >= 0 for r in served)
    costs = registry.sql("SELECT metric_value FROM model_metrics WHERE metric_type = 'cost_usd'")
    assert all(float(c[0]) >= 0 for c in costs)
