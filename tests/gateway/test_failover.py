"""Issue 18's acceptance, when models fail: through both SDKs, a model that refuses
connections or answers 500 before streaming hands the call to its fallback (two
attempts, both routing-log rows); a model that dies mid-stream ends the stream with
an error event in the caller's format and nothing of another model after it; a
caller that hangs up mid-stream makes the provider see its connection closed at once;
a call no model could answer is a 502 in the caller's shape.

Each fault has a model per SDK, each called at most twice: three failures in a row
would open its circuit, and the next call would skip the model instead of trying it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import rule_yaml
from tests.gateway.callers import QUESTION, Answer
from tests.gateway.conftest import Fleet, closed_endpoint, fake_model, fakes, serving, wait_for

pytestmark = pytest.mark.slow  # a server process per module

BACKUP = "Backup says: the sky is blue because air scatters blue light most."
DYING = "Dying says: the sky is blue because of Rayleigh scattering, as every textbook says."
STALLING = "Stalling says: one moment..."
SDKS = ["openai", "anthropic"]
CONTEXT = "{context: 0.5}"  # no rule or capability route here picks one by itself


@pytest.fixture(scope="module")
def fleet(module_tmp: Path, sqlite_template: Path) -> Iterator[Fleet]:
    kinds = [
        ("openai", BACKUP),
        ("gemini", "Broken says: never seen."),
        ("anthropic", DYING),
        ("openai", STALLING),
    ]
    with fakes(*kinds) as (backup, broken, dying, stalling):
        broken.behaviour = "status:500"
        dying.behaviour = "die-after:2"
        stalling.behaviour = "stall-after:1"
        refusing = closed_endpoint()
        manifests: dict[str, str | bytes] = {
            "models/backup.yaml": fake_model("backup", backup, CONTEXT),
            "models/hopeless.yaml": fake_model("hopeless", dying, CONTEXT, endpoint=refusing),
            "rules/sturdy.yaml": rule_yaml(
                "sturdy", requires="[context]", chain="[broken-rule, backup]"
            ),
            "models/broken-rule.yaml": fake_model("broken-rule", broken, CONTEXT),
        }
        for sdk in SDKS:
            manifests |= {
                f"models/refusing-{sdk}.yaml": fake_model(
                    f"refusing-{sdk}", dying, CONTEXT, endpoint=refusing, fallbacks="[backup]"
                ),
                f"models/broken-{sdk}.yaml": fake_model(
                    f"broken-{sdk}", broken, CONTEXT, fallbacks="[backup]"
                ),
                f"models/dying-{sdk}.yaml": fake_model(
                    f"dying-{sdk}", dying, CONTEXT, fallbacks="[backup]"
                ),
                f"models/stalling-{sdk}.yaml": fake_model(f"stalling-{sdk}", stalling, CONTEXT),
            }
        by_name = {"backup": backup, "broken": broken, "dying": dying, "stalling": stalling}
        with serving(module_tmp, sqlite_template, manifests) as gateway:
            yield Fleet(gateway, by_name)


def _rows(fleet: Fleet, headers: Any, count: int) -> list[tuple[Any, ...]]:
    """The request's routing-log rows as (model, success, error kind, attempt, version),
    once all ``count`` are written (a stream's row comes when the stream ends)."""
    request_id = headers["x-request-id"]

    def written() -> list[dict[str, Any]] | None:
        rows = fleet.gateway.attempts(request_id)
        return rows if len(rows) >= count else None

    rows = wait_for(written, every=0.05) or fleet.gateway.attempts(request_id)
    return [
        (r["modelId"], r["success"], r["errorKind"], r["attempt"], r["modelVersion"]) for r in rows
    ]


def _assert_served_by_backup(answer: Answer) -> None:
    assert (answer.model, answer.text) == ("backup", BACKUP)
    assert answer.headers.get("x-grove-model") == "backup"
    assert answer.headers.get("x-grove-attempts") == "2"


# ---------------------------------------------------------------- failover before any byte


@pytest.mark.parametrize("sdk", SDKS)
def test_a_model_refusing_connections_fails_over_to_its_fallback(fleet: Fleet, sdk: str) -> None:
    caller = fleet.caller(sdk)
    whole = caller.ask(f"refusing-{sdk}")
    streamed = caller.stream(f"refusing-{sdk}")
    for answer in (whole, streamed):
        _assert_served_by_backup(answer)
        assert _rows(fleet, answer.headers, 2) == [
            (f"refusing-{sdk}", False, "connection_error", 1, "1"),
            ("backup", True, None, 2, "1"),
        ]
    assert len(streamed.pieces) > 1


@pytest.mark.parametrize("sdk", SDKS)
def test_a_model_answering_500_before_streaming_fails_over_to_its_fallback(
    fleet: Fleet, sdk: str
) -> None:
    caller = fleet.caller(sdk)
    broken = fleet.fakes["broken"]
    before = broken.calls
    whole = caller.ask(f"broken-{sdk}")
    streamed = caller.stream(f"broken-{sdk}")
    assert broken.calls == before + 2
    assert ":streamGenerateContent" in broken.requests[-1]["path"]  # asked to stream, refused
    for answer in (whole, streamed):
        _assert_served_by_backup(answer)
        assert _rows(fleet, answer.headers, 2) == [
            (f"broken-{sdk}", False, "server_error", 1, "1"),
            ("backup", True, None, 2, "1"),
        ]


def test_a_rule_fails_over_along_its_chain(fleet: Fleet) -> None:
    whole = fleet.caller("openai").ask("sturdy")
    streamed = fleet.caller("anthropic").stream("sturdy")
    for answer in (whole, streamed):
        _assert_served_by_backup(answer)
        assert answer.headers.get("x-grove-rule") == "sturdy"
        assert _rows(fleet, answer.headers, 2) == [
            ("broken-rule", False, "server_error", 1, "1"),
            ("backup", True, None, 2, "1"),
        ]


@pytest.mark.parametrize("sdk", SDKS)
def test_every_model_failing_is_a_502_in_the_callers_shape(fleet: Fleet, sdk: str) -> None:
    caller = fleet.caller(sdk)
    error: openai.APIStatusError | anthropic.APIStatusError
    if sdk == "openai":
        with pytest.raises(openai.InternalServerError) as failed:
            caller.ask("hopeless")
        error = failed.value
        assert set(error.response.json()) == {"error"}
        assert error.response.json()["error"]["message"]
    else:
        with pytest.raises(anthropic.APIStatusError) as refused:
            caller.stream("hopeless")  # no first byte: an HTTP error, not a stream
        error = refused.value
        assert error.response.json()["type"] == "error"
        assert error.response.json()["error"]["message"]
    assert error.status_code == 502
    assert _rows(fleet, error.response.headers, 1) == [
        ("hopeless", False, "connection_error", 1, "1")
    ]


# ---------------------------------------------------------------- after the first byte


def test_a_model_dying_mid_stream_ends_openais_stream_with_an_error_chunk(fleet: Fleet) -> None:
    backup = fleet.fakes["backup"]
    before = backup.calls
    raw = fleet.gateway.openai().chat.completions.with_raw_response.create(
        model="dying-openai",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
    )
    texts: list[str] = []
    with pytest.raises(openai.APIError) as ended:
        for chunk in raw.parse():
            texts.extend(c.delta.content or "" for c in chunk.choices)
    assert type(ended.value) is openai.APIError, "not an error event: the connection broke"
    assert ended.value.body, "the error chunk carries an error object"
    _assert_only_the_dying_models_text("".join(texts))
    assert backup.calls == before, "a second model was called mid-stream"
    assert raw.headers.get("x-grove-attempts") == "1"
    assert _rows(fleet, raw.headers, 1) == [("dying-openai", False, "connection_error", 1, "1")]


def test_a_model_dying_mid_stream_ends_anthropics_stream_with_an_error_event(
    fleet: Fleet,
) -> None:
    backup = fleet.fakes["backup"]
    before = backup.calls
    texts: list[str] = []
    client = fleet.gateway.anthropic()
    with (
        pytest.raises(anthropic.APIStatusError) as ended,
        client.messages.stream(
            model="dying-anthropic",
            max_tokens=100,
            messages=[{"role": "user", "content": QUESTION}],
        ) as stream,
    ):
        headers = stream.response.headers
        texts.extend(stream.text_stream)
    body = ended.value.body
    assert isinstance(body, dict) and body.get("type") == "error", body
    _assert_only_the_dying_models_text("".join(texts))
    assert backup.calls == before, "a second model was called mid-stream"
    assert headers.get("x-grove-attempts") == "1"
    assert _rows(fleet, headers, 1) == [("dying-anthropic", False, "connection_error", 1, "1")]


def _assert_only_the_dying_models_text(text: str) -> None:
    """The caller got the first two chunks the model sent, and nothing else."""
    assert text, "the model's first chunks never reached the caller"
    assert DYING.startswith(text), text
    assert len(text) < len(DYING)
    assert BACKUP not in text


# ---------------------------------------------------------------- a caller hanging up


def test_an_openai_client_hanging_up_closes_the_providers_connection_at_once(
    fleet: Fleet,
) -> None:
    stalling = fleet.fakes["stalling"]
    seen = len(stalling.closed_at)
    raw = fleet.gateway.openai().chat.completions.with_raw_response.create(
        model="stalling-openai",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
    )
    stream = raw.parse()
    first = next(
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    )
    hung_up = time.monotonic()
    stream.close()
    _assert_closed_upstream(stalling.closed_at, seen, hung_up)
    assert STALLING.startswith(first)
    assert _rows(fleet, raw.headers, 1) == [("stalling-openai", False, "cancelled", 1, "1")]


def test_an_anthropic_client_hanging_up_closes_the_providers_connection_at_once(
    fleet: Fleet,
) -> None:
    stalling = fleet.fakes["stalling"]
    seen = len(stalling.closed_at)
    with fleet.gateway.anthropic().messages.stream(
        model="stalling-anthropic",
        max_tokens=100,
        messages=[{"role": "user", "content": QUESTION}],
    ) as stream:
        headers = stream.response.headers
        first = next(iter(stream.text_stream))
        hung_up = time.monotonic()
    _assert_closed_upstream(stalling.closed_at, seen, hung_up)
    assert STALLING.startswith(first)
    assert _rows(fleet, headers, 1) == [("stalling-anthropic", False, "cancelled", 1, "1")]


def _assert_closed_upstream(closed_at: list[float], seen: int, hung_up: float) -> None:
    assert wait_for(lambda: len(closed_at) > seen, timeout=3), "the provider's call stayed open"
    took = closed_at[seen] - hung_up
    assert took < 0.1, f"the provider saw the hang-up {took * 1000:.0f} ms later"
