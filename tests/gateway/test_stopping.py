"""A server told to stop (SIGTERM, as a service manager or a rolling deploy sends it)
while it streams an answer: the answer finishes, whole, through either SDK, and the
server exits 0 once it has. An answer cut short at a clean end of the body would read
as a complete, shorter one to the OpenAI SDK: the silent truncation callers of other
proxies complain of ("lost streams"). Told twice, it cuts the stream without its end,
which the SDK reports as an error, and exits."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import openai
import pytest

from tests.api.test_child_env import _descendants
from tests.gateway.callers import QUESTION
from tests.gateway.conftest import fake_model, fakes, serving

pytestmark = pytest.mark.slow  # a server process per test

REPLY = "Slow says: the sky is blue because air scatters the blue of sunlight most."
GAP_S = 0.15  # between two of the fake's chunks: the stream lasts about a second


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_a_stream_under_way_when_the_server_is_told_to_stop_finishes_whole(
    tmp_path: Path, sqlite_template: Path, sdk: str
) -> None:
    with fakes(("anthropic" if sdk == "openai" else "openai", REPLY)) as (slow,):
        slow.behaviour = f"slow-chunks:{GAP_S}"
        manifests: dict[str, str | bytes] = {
            "models/slow.yaml": fake_model("slow", slow, "{context: 0.5}")
        }
        with serving(tmp_path, sqlite_template, manifests) as gateway:
            stopped = threading.Event()

            def stop_once() -> None:
                if not stopped.is_set():
                    stopped.set()
                    gateway.process.send_signal(signal.SIGTERM)

            parts: list[str] = []
            if sdk == "openai":
                chunks = gateway.openai().chat.completions.create(
                    model="slow", messages=[{"role": "user", "content": QUESTION}], stream=True
                )
                for chunk in chunks:
                    if chunk.choices and chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
                        stop_once()  # after the first words
                finish = None
            else:
                with gateway.anthropic().messages.stream(
                    model="slow",
                    max_tokens=100,
                    messages=[{"role": "user", "content": QUESTION}],
                ) as stream:
                    for text in stream.text_stream:
                        parts.append(text)
                        stop_once()
                    finish = stream.get_final_message().stop_reason
            assert stopped.is_set()
            assert "".join(parts) == REPLY
            assert finish == ("end_turn" if sdk == "anthropic" else None)
            assert gateway.process.wait(timeout=30) == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_told_to_stop_twice_the_server_cuts_a_stream_and_the_sdk_says_so(
    tmp_path: Path, sqlite_template: Path, workers: str
) -> None:
    """With ``--workers 2`` the supervisor passes the second signal on to its workers."""
    with fakes(("anthropic", REPLY)) as (slow,):
        slow.behaviour = "slow-chunks:1.0"  # a stream of some twenty seconds
        manifests: dict[str, str | bytes] = {
            "models/slow.yaml": fake_model("slow", slow, "{context: 0.5}", timeoutMs="60000")
        }
        with serving(tmp_path, sqlite_template, manifests, "--workers", workers) as gateway:
            parts: list[str] = []
            chunks = gateway.openai().chat.completions.create(
                model="slow", messages=[{"role": "user", "content": QUESTION}], stream=True
            )
            # not a shorter answer: the SDK's connection error (an incomplete chunked body)
            with pytest.raises(openai.APIConnectionError):
                for chunk in chunks:
                    if chunk.choices and chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
                        if len(parts) == 1:
                            gateway.process.send_signal(signal.SIGTERM)  # it finishes ...
                            time.sleep(0.3)
                            gateway.process.send_signal(signal.SIGTERM)  # ... not now
            assert 0 < len("".join(parts)) < len(REPLY)
            assert gateway.process.wait(timeout=30) == 0
            assert slow.closed_at  # the provider's connection was closed, not left to run


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_signal_to_every_process_of_the_service_is_one_signal(
    tmp_path: Path, sqlite_template: Path, sig: signal.Signals
) -> None:
    """``--workers 2``, SIGTERM to the server and each of its processes at once (as
    systemd's default KillMode sends it, or a terminal's Ctrl-C reaches the whole
    group): the workers heed only their supervisor, which counts one signal, so the
    stream finishes whole rather than being cut as by a second."""
    with fakes(("anthropic", REPLY)) as (slow,):
        slow.behaviour = f"slow-chunks:{GAP_S}"
        manifests: dict[str, str | bytes] = {
            "models/slow.yaml": fake_model("slow", slow, "{context: 0.5}")
        }
        with serving(tmp_path, sqlite_template, manifests, "--workers", "2") as gateway:
            parts: list[str] = []
            chunks = gateway.openai().chat.completions.create(
                model="slow", messages=[{"role": "user", "content": QUESTION}], stream=True
            )
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
                    if len(parts) == 1:
                        every = [gateway.process.pid, *_descendants(gateway.process.pid)]
                        for pid in every:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(pid, sig)
            assert len(every) >= 3  # the supervisor and its two workers at least
            assert "".join(parts) == REPLY
            assert gateway.process.wait(timeout=30) == 0
