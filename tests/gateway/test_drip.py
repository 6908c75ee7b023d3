"""A provider that drips its stream slowly, each chunk well inside the idle deadline:
the caller gets every word as it comes and the whole answer, through either SDK, and
the attempt is one routing-log row, a success whose latency is the whole stream's
(docs/gateway.md, streaming)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.gateway.callers import QUESTION
from tests.gateway.conftest import fake_model, fakes, serving, wait_for
from tests.routing.fakes import PIECES

pytestmark = pytest.mark.slow  # a server process

REPLY = "Drip says: the sky is blue because air scatters the blue of sunlight most."
GAP_S = 0.2  # between two of the fake's events: the stream lasts about a second


def test_a_slow_drip_reaches_the_caller_word_by_word_and_is_logged_as_one_success(
    tmp_path: Path, sqlite_template: Path
) -> None:
    with fakes(("anthropic", REPLY), ("openai", REPLY)) as (claude, compatible):
        claude.behaviour = compatible.behaviour = f"slow-chunks:{GAP_S}"
        manifests: dict[str, str | bytes] = {
            "models/drip-claude.yaml": fake_model("drip-claude", claude, "{context: 0.5}"),
            "models/drip-compatible.yaml": fake_model(
                "drip-compatible", compatible, "{speed: 0.5}"
            ),
        }
        with serving(tmp_path, sqlite_template, manifests) as gateway:
            # the OpenAI SDK to the Anthropic model, the Anthropic SDK to the other
            arrivals: list[float] = []
            parts: list[str] = []
            raw = gateway.openai().chat.completions.with_raw_response.create(
                model="drip-claude",
                messages=[{"role": "user", "content": QUESTION}],
                stream=True,
            )
            for chunk in raw.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
                    arrivals.append(time.monotonic())
            assert "".join(parts) == REPLY
            # word by word, not held back and sent at the end
            assert arrivals[-1] - arrivals[0] >= (PIECES - 2) * GAP_S
            openai_id = raw.headers["x-request-id"]
            assert raw.headers["x-grove-attempts"] == "1"

            with gateway.anthropic().messages.stream(
                model="drip-compatible",
                max_tokens=100,
                messages=[{"role": "user", "content": QUESTION}],
            ) as stream:
                text = "".join(stream.text_stream)
                final = stream.get_final_message()
                anthropic_id = stream.response.headers["x-request-id"]
            assert text == REPLY and final.stop_reason == "end_turn"

            for request_id in (openai_id, anthropic_id):
                assert wait_for(lambda rid=request_id: gateway.attempts(rid), every=0.05)
                [row] = gateway.attempts(request_id)
                assert row["success"] is True and row["errorKind"] is None
                assert row["latencyMs"] >= (PIECES - 2) * GAP_S * 1000  # the whole stream's
