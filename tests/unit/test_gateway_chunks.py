"""The OpenAI dialect's stream chunks: rendered from a frame made once per stream, each
one byte for byte the chunk object rendered whole, in the same key order."""

from __future__ import annotations

import json
import time
import types
from typing import Any, cast

import pytest

from reconciler.gateway import openai
from reconciler.providers.base import FinishReason
from reconciler.routing import engine as routing


def _whole(head: dict[str, Any], delta: dict[str, Any], finish: str | None, usage: bool) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    body = {**head, "choices": [choice], **({"usage": None} if usage else {})}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize(
    ("delta", "finish"),
    [
        ({"role": "assistant", "content": "", "refusal": None}, None),
        ({"content": 'quotes " and \\ and \u00e9 and \U0001f600'}, None),
        ({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {}}]}, None),
        ({}, FinishReason.STOP),
        ({}, FinishReason.TOOL_CALLS),
    ],
)
def test_a_chunk_is_the_whole_object_rendered(
    delta: dict[str, Any], finish: FinishReason | None, include_usage: bool
) -> None:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body.update(stream=True, stream_options={"include_usage": include_usage})
    parsed = openai.parse(json.dumps(body).encode())
    stream = cast(routing.RoutedStream, types.SimpleNamespace(request_id='r"1', model_id="m\u00e9"))
    chunks = openai._Chunks(stream, parsed)
    head = dict(chunks.head)
    created = head.pop("created")
    assert isinstance(created, int) and abs(created - time.time()) < 5
    assert head == {
        "id": 'chatcmpl-r"1',
        "object": "chat.completion.chunk",
        "model": "m\u00e9",
        "system_fingerprint": None,
    }
    rendered = chunks.chunk(delta, finish)
    assert rendered == _whole(chunks.head, delta, finish and finish.value, include_usage)
    parsed_back = json.loads(rendered.removeprefix(b"data: "))
    assert list(parsed_back) == ["id", "object", "created", "model", "system_fingerprint"] + (
        ["choices", "usage"] if include_usage else ["choices"]
    )
