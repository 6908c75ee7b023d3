"""The fault table: each failure of a provider, on a real loopback socket, each bounded in time.

Every case routes through a chain of [primary -> fallback]; a retryable fault
must be answered by the fallback, a client error must not fail over, and no
case may take longer than the primary's whole-call deadline plus a margin.
"""

from __future__ import annotations

import socket
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from reconciler.providers import transport
from reconciler.routing import engine as routing
from tests.routing.conftest import ask, model_doc, rule_doc
from tests.routing.fakes import FakeProvider

DEADLINE_MS = 1500
MARGIN_S = 0.5


@pytest.fixture
def pair(
    fake: Callable[[str], FakeProvider], engine_for: Callable[..., routing.RoutingEngine]
) -> Iterator[tuple[FakeProvider, FakeProvider, routing.RoutingEngine]]:
    primary = fake("openai")
    fallback = fake("anthropic", reply="from the fallback")
    engine = engine_for(
        model_doc("primary", primary, priority=90, timeoutMs=DEADLINE_MS),
        model_doc("fallback", fallback, priority=10),
        rule_doc("think"),
    )
    yield primary, fallback, engine


def _timed(engine: routing.RoutingEngine) -> tuple[routing.RoutingResult, float]:
    started = time.monotonic()
    result = ask(engine)
    return result, time.monotonic() - started


def _fails_over(
    engine: routing.RoutingEngine, primary: FakeProvider, behaviour: str, outcome: str
) -> tuple[routing.RoutingResult, float]:
    """The primary answers with ``behaviour``: the fallback answers, and the primary's
    attempt is recorded as ``outcome``. The result and how long the call took."""
    primary.behaviour = behaviour
    result, elapsed = _timed(engine)
    assert result.model_id == "fallback"
    assert result.attempts[0].outcome == outcome
    return result, elapsed


def _blocked_for_s(engine: routing.RoutingEngine, model_id: str) -> float:
    """How long the model's open circuit still keeps calls away, in seconds."""
    blocked = engine.breakers.blocked(engine.live_version(model_id))
    assert blocked is not None
    return float(blocked.split("for ")[1].split("s")[0])


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_fail_over(
    pair: tuple[FakeProvider, FakeProvider, routing.RoutingEngine], status: int
) -> None:
    primary, _, engine = pair
    primary.behaviour = f"status:{status}"
    result, elapsed = _timed(engine)
    assert result.model_id == "fallback"
    assert result.response.text == "from the fallback"
    assert [a.outcome for a in result.attempts] == ["server_error", "success"]
    assert elapsed < 1.0


def test_connection_refused_fails_over(
    pair: tuple[FakeProvider, FakeProvider, routing.RoutingEngine],
) -> None:
    primary, _, engine = pair
    primary.close()  # nothing listens on the port any more
    result, elapsed = _timed(engine)
    assert result.model_id == "fallback"
    assert result.attempts[0].outcome == "connection_error"
    assert elapsed < 1.0


@pytest.mark.slow
def test_a_connect_blackhole_is_cut_by_the_deadline(
    fake: Callable[[str], FakeProvider], engine_for: Callable[..., routing.RoutingEngine]
) -> None:
    """A listening socket that never accepts, its backlog full: connect() never completes."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(hole.getsockname())
        fillers.append(filler)
    try:
        port = hole.getsockname()[1]
        fallback = fake("anthropic", reply="from the fallback")
        dead = model_doc(
            "primary",
            None,
            priority=90,
            provider="openai-compatible",
            providerModel="x",
            endpoint=f"http://127.0.0.1:{port}/v1",
            timeoutMs=DEADLINE_MS,
        )
        engine = engine_for(dead, model_doc("fallback", fallback, priority=10), rule_doc("think"))
        result, elapsed = _timed(engine)
        assert result.model_id == "fallback"
        assert result.attempts[0].outcome == "timeout"
        assert result.attempts[0].latency_ms >= DEADLINE_MS * 0.9  # it waited for the deadline
        assert elapsed < DEADLINE_MS / 1000 + MARGIN_S
    finally:
        for filler in fillers:
            filler.close()
        hole.close()


@pytest.mark.slow
def test_headers_never_sent_is_cut_by_the_deadline(
    pair: tuple[FakeProvider, FakeProvider, routing.RoutingEngine],
) -> None:
    primary, _, engine = pair
    _, elapsed = _fails_over(engine, primary, "no-headers", "timeout")
    assert elapsed < DEADLINE_MS / 1000 + MARGIN_S


@pytest.mark.slow
def test_a_body_trickling_one_byte_a_second_is_cut_by_the_deadline(
    pair: tuple[FakeProvider, FakeProvider, routing.RoutingEngine],
) -> None:
    primary, _, engine = pair
    result, elapsed = _fails_over(engine, primary, "trickle", "timeout")
    assert result.attempts[0].latency_ms < DEADLINE_MS + MARGIN_S * 1000
    assert elapsed < DEADLINE_MS / 1000 + MARGIN_S


@pytest.mark.parametrize("behaviour", ["malformed", "html", "deep"])
def test_unusable_answers_fail_over(
    pair: tuple[FakeProvider, FakeProvider, routing.RoutingEngine], behaviour: str
) -> None:
    primary, _, engine = pair
    primary.behaviour = behaviour
    result, _ = _timed(engine)
    assert result.model_id == "fallback"
    assert result.attempts[0].outcome == "bad_response"


@pytest.mark.parametrize(
    "behaviour",
    ["huge", "endless"],  # 50 MB with a Content-Length; a body that ends when the server closes
)
def test_a_fifty_megabyte_body_is_aborted_at_the_cap(
    pair: tuple[FakeProvider, FakeProvider, routing.RoutingEngine], behaviour: str
) -> None:
    primary, _, engine = pair
    primary.behaviour = behaviour
    tracemalloc.start()
    result, _ = _timed(engine)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.model_id == "fallback"
    assert result.attempts[0].outcome == "bad_response"
    assert "larger than" in result.attempts[0].message
    assert peak < 3 * transport.MAX_RESPONSE_BYTES


def test_a_connection_cut_mid_body_fails_over(
    pair: tuple[FakeProvider, FakeProvider, routing.RoutingEngine],
) -> None:
    primary, _, engine = pair
    result, _ = _fails_over(engine, primary, "cut", "connection_error")
    assert result.attempts[0].message == "127.0.0.1: ClientPayloadError"


def test_a_key_with_a_line_break_is_never_sent(
    pair: tuple[FakeProvider, FakeProvider, routing.RoutingEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    primary, _, engine = pair
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-canary-4242\r\nX-Injected: yes")
    result, _ = _timed(engine)
    assert result.model_id == "fallback"
    assert result.attempts[0].outcome == "configuration"
    assert "canary" not in result.attempts[0].message
    assert "FAKE_OPENAI_KEY holds a line break" in result.attempts[0].message
    assert primary.calls == 0  # refused before anything was sent


def test_a_redirect_to_the_metadata_service_is_not_followed(
    pair: tuple[FakeProvider, FakeProvider, routing.RoutingEngine],
) -> None:
    primary, _, engine = pair
    result, _ = _fails_over(engine, primary, "redirect", "bad_response")
    assert "redirect 302 not followed" in result.attempts[0].message
    assert primary.calls == 1


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [("7", 6.0, 7.5), ("garbage", 29.0, 30.5), ("http-date", 9.0, 11.5), ("99999", 299.0, 300.5)],
)
def test_429_retry_after_opens_the_circuit_for_that_long(
    pair: tuple[FakeProvider, FakeProvider, routing.RoutingEngine],
    header: str,
    low: float,
    high: float,
) -> None:
    import email.utils

    primary, _, engine = pair
    value = (
        # 11 s ahead, in whole seconds (formatdate truncates): 10 to 11 s when sent
        email.utils.formatdate(time.time() + 11, usegmt=True) if header == "http-date" else header
    )
    primary.behaviour = f"429:{value}"
    result, _ = _timed(engine)
    assert result.model_id == "fallback"
    assert result.attempts[0].outcome == "rate_limit"
    assert (
        low <= _blocked_for_s(engine, "primary") <= high
    )  # garbage: the rule's cooldownS (30); huge: clamped to 300
    again = ask(engine)
    assert [a.outcome for a in again.attempts] == ["success"]
    assert again.routing_decision.reason.startswith("failover from primary: circuit open")
    excluded = {c.model_id: c for c in again.routing_decision.candidates}["primary"]
    assert not excluded.eligible
    assert primary.calls == 1  # zero attempts while open


def test_503_with_retry_after_opens_the_circuit_at_once(
    pair: tuple[FakeProvider, FakeProvider, routing.RoutingEngine],
) -> None:
    primary, _, engine = pair
    _fails_over(engine, primary, "503:12", "server_error")
    assert 11.0 <= _blocked_for_s(engine, "primary") <= 12.5
    ask(engine)
    assert primary.calls == 1  # the provider asked for 12 s: zero attempts meanwhile


def test_503_without_retry_after_waits_for_the_failure_threshold(
    pair: tuple[FakeProvider, FakeProvider, routing.RoutingEngine],
) -> None:
    primary, _, engine = pair
    primary.behaviour = "status:503"
    for expected_calls in (1, 2, 3):
        assert ask(engine).model_id == "fallback"
        assert primary.calls == expected_calls
    # the third failure in a row
    assert engine.breakers.blocked(engine.live_version("primary")) is not None
    ask(engine)
    assert primary.calls == 3


def test_a_client_error_does_not_fail_over(
    fake: Callable[[str], FakeProvider], engine_for: Callable[..., routing.RoutingEngine]
) -> None:
    primary = fake("openai")
    fallback = fake("anthropic")
    primary.behaviour = "status:422"
    engine = engine_for(
        model_doc("primary", primary, priority=90),
        model_doc("fallback", fallback, priority=10),
        rule_doc("think"),
    )
    with pytest.raises(routing.RoutingFailed) as failed:
        ask(engine)
    assert failed.value.client_error
    assert fallback.calls == 0
    assert engine.breakers.blocked(engine.live_version("primary")) is None  # not the model's fault


@pytest.mark.slow
def test_every_model_down_names_them_within_the_sum_of_deadlines(
    fake: Callable[[str], FakeProvider], engine_for: Callable[..., routing.RoutingEngine]
) -> None:
    servers = [fake("openai"), fake("anthropic"), fake("gemini")]
    for server in servers:
        server.behaviour = "no-headers"
    docs = [
        model_doc(f"m{i}", server, priority=100 - i, timeoutMs=500)
        for i, server in enumerate(servers)
    ]
    engine = engine_for(*docs, rule_doc("think"))
    started = time.monotonic()
    with pytest.raises(routing.RoutingFailed) as failed:
        ask(engine)
    elapsed = time.monotonic() - started
    assert str(failed.value) == "every model failed: m0 (timeout), m1 (timeout), m2 (timeout)"
    assert elapsed < 3 * 0.5 + MARGIN_S


def test_a_host_resolving_to_a_private_address_is_refused_at_connect_time(
    fake: Callable[[str], FakeProvider],
    engine_for: Callable[..., routing.RoutingEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = fake("openai")
    monkeypatch.setenv("GROVE_ALLOW_LOCAL_ENDPOINTS", "false")
    doc = model_doc("m", server)
    doc["payload"]["endpoint"] = f"https://localhost.localdomain.example:{server.port}/v1"
    engine = routing.RoutingEngine(
        __import__("reconciler.base.settings", fromlist=["load"]).load(), None, write_logs=False
    )
    from tests.routing.conftest import snapshot_of

    engine.use_snapshot(snapshot_of(doc, rule_doc("think")))
    monkeypatch.setattr(
        "socket.getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", server.port))],
    )
    try:
        with pytest.raises(routing.RoutingFailed) as failed:
            ask(engine)
        assert failed.value.attempts[0].outcome == "configuration"
        assert "loopback, private or link-local" in failed.value.attempts[0].message
        assert server.calls == 0
    finally:
        engine.close()
