"""Every route x method x role (``client`` included), generated from the OpenAPI document; and
the other endpoints."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server

# What each route needs besides a token, to get past validation to the handler.
SAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/models/register"): {
        "json": {"name": "Role Check", "provider": "mock", "capabilities": ["speed"]}
    },
    ("get", "/api/models/discover"): {"params": {"capability": "reasoning"}},
    ("patch", "/api/models/{model_id}"): {"json": {"payload": {"priority": 77}}},
    ("post", "/api/routing/execute"): {"json": {"taskType": "think", "prompt": "hi"}},
}
WRITES = {"post", "patch", "delete", "put"}
# Lifting a quarantine is an admin's decision (DESIGN section 6): an operator gets 403.
ADMIN_ONLY = {("delete", "/api/quarantine/{object_id}/{version}")}
# Signed with HMAC instead of a token; the probes need none (tests/api/test_probes.py).
OPEN = {("post", "/api/hooks/git"), ("get", "/healthz"), ("get", "/readyz")}
# Tokens of this role may call the data plane and nothing else, not even a read.
CLIENT_REFUSAL = (
    "the client role may only call the data plane (POST /api/routing/execute and /v1/*)"
)

# A test of something no database takes part in runs on SQLite only.
ONE_DATABASE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _data_plane(method: str, path: str) -> bool:
    """The routes a client token may call (and a viewer's may not), DESIGN section 6."""
    return (method, path) == ("post", "/api/routing/execute") or path.startswith("/v1/")


def _routes(server: Server) -> list[tuple[str, str]]:
    with server.client("viewer") as client:
        document = client.get("/openapi.json").json()
    return sorted(
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if (method, path) not in OPEN
    )


def _call(client: httpx.Client, method: str, path: str, **extra: Any) -> httpx.Response:
    sample = dict(SAMPLES.get((method, path), {}))
    sample.update(extra)
    target = path.replace("{model_id}", "beta").replace("{object_id}", "beta")
    target = target.replace("{version}", "1")
    if method == "get" and path == "/api/events":
        with client.stream("GET", target) as response:
            if response.status_code != 200:
                response.read()  # a problem document, not a stream
            return response
    return client.request(method.upper(), target, **sample)


def test_the_route_list_covers_the_design(shared_server: Server) -> None:
    routes = set(_routes(shared_server))
    assert {
        ("post", "/api/models/register"),
        ("get", "/api/models/discover"),
        ("get", "/api/models/{model_id}"),
        ("patch", "/api/models/{model_id}"),
        ("delete", "/api/models/{model_id}"),
        ("post", "/api/models/{model_id}/disable"),
        ("post", "/api/models/{model_id}/enable"),
        ("get", "/api/models/{model_id}/metrics"),
        ("get", "/api/routing/recommend"),
        ("post", "/api/routing/execute"),
        ("get", "/api/routing/logs"),
        ("get", "/api/models/health"),
        ("get", "/api/status"),
        ("get", "/api/plan"),
        ("post", "/api/reconcile"),
        ("get", "/api/events"),
        ("get", "/metrics"),
        ("get", "/api/models"),
        ("post", "/api/models/{model_id}/rollback"),
        ("get", "/api/rules"),
        ("post", "/api/rules"),
        ("get", "/api/rules/{rule_id}"),
        ("patch", "/api/rules/{rule_id}"),
        ("delete", "/api/rules/{rule_id}"),
        ("get", "/api/rollouts"),
        ("get", "/api/rollouts/{model_id}"),
        ("post", "/api/rollouts/{model_id}/promote"),
        ("post", "/api/rollouts/{model_id}/abort"),
        ("get", "/api/quarantine"),
        ("delete", "/api/quarantine/{object_id}/{version}"),
    } <= routes


@pytest.mark.slow
def test_every_route_method_and_role(server: Server) -> None:
    failures = []
    for method, path in _routes(server):
        write = method in WRITES
        with server.client() as anonymous:
            response = _call(anonymous, method, path)
            if response.status_code != 401:
                failures.append((method, path, "none", response.status_code))
        with server.client("viewer") as viewer:
            response = _call(viewer, method, path)
            if write or _data_plane(method, path):
                wrong = response.status_code != 403
            else:  # a read is served: neither refused nor a server error
                wrong = response.status_code in (401, 403) or response.status_code >= 500
            if wrong:
                failures.append((method, path, "viewer", response.status_code))
        for role in ("operator", "admin"):
            with server.client(role) as client:
                response = _call(client, method, path)
                if role == "operator" and (method, path) in ADMIN_ONLY:
                    wrong = response.status_code != 403
                else:
                    wrong = response.status_code in (401, 403) or response.status_code >= 500
                if wrong:
                    failures.append((method, path, role, response.status_code))
        with server.client("client") as client:
            response = _call(client, method, path)
            if _data_plane(method, path):
                wrong = response.status_code in (401, 403) or response.status_code >= 500
            else:  # every other route, reads included: 403, saying why
                wrong = (
                    response.status_code != 403
                    or response.headers["content-type"] != "application/problem+json"
                    or not response.json()["detail"].startswith(CLIENT_REFUSAL)
                )
            if wrong:
                failures.append((method, path, "client", response.status_code))
    assert failures == []


@pytest.mark.parametrize(
    ("method", "path"), [("patch", "/api/models/{model_id}"), ("delete", "/api/models/{model_id}")]
)
def test_force_needs_admin(server: Server, method: str, path: str) -> None:
    with server.client("operator") as operator:
        assert _call(operator, method, path, params={"force": "true"}).status_code == 403
    with server.client("admin") as admin:
        forced = _call(admin, method, path, params={"force": "true"})
        assert forced.status_code not in (401, 403) and forced.status_code < 500, forced.text


def test_an_admin_patch_with_force_applies_what_the_checks_refuse(server: Server) -> None:
    """A content change that keeps the version is refused (P001); force applies it and
    the lifecycle history records it as forced."""
    change = {"payload": {"priority": 51}, "version": "1"}
    with server.client("operator") as operator:
        refused = operator.patch("/api/models/beta", json=change)
        assert refused.status_code == 409
        assert [v["code"] for v in refused.json()["violations"]] == ["P001"]
    with server.client("admin") as admin:
        forced = admin.patch("/api/models/beta", params={"force": "true"}, json=change)
        assert forced.status_code == 200, forced.text
        assert forced.json()["applied"] is True
        assert admin.get("/api/models/beta").json()["priority"] == 51
    assert server.log()[0].startswith("admin-token|")
    forced_rows = server.registry.sql(
        "SELECT object_id FROM lifecycle_events WHERE forced"
        if "postgresql" in server.registry.url
        else "SELECT object_id FROM lifecycle_events WHERE forced = 1"
    )
    assert ("beta",) in [tuple(row) for row in forced_rows]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer nonsense",
        "Basic dXNlcjpwYXNz",
        "Bearer grove_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_every_401_is_the_same(shared_server: Server, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    with httpx.Client(base_url=shared_server.url) as client:
        response = client.get("/api/status", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "code": "unauthorized",
        "detail": "a valid bearer token is required",
        "errors": [],
        "violations": [],
        "attempts": [],
    }


def test_a_revoked_token_is_refused(server: Server, grove: Any) -> None:
    assert grove("token", "revoke", "viewer-token").code == 0
    with server.client("viewer") as client:
        assert client.get("/api/status").status_code == 401


def test_routing_endpoints(server: Server) -> None:
    with server.client("operator") as client:
        decision = client.get("/api/routing/recommend", params={"taskType": "think"}).json()
        assert decision["reason"].startswith("priority match: alpha")
        executed = client.post("/api/routing/execute", json={"taskType": "think", "prompt": "hi"})
        assert executed.status_code == 200, executed.text
        assert executed.json()["modelId"] == "alpha"
        rows = client.get("/api/routing/logs", params={"modelId": "alpha"}).json()
        assert rows and rows[0]["modelId"] == "alpha" and rows[0]["success"] is True
        metrics = client.get("/api/models/alpha/metrics", params={"window": "1h"}).json()
        assert metrics["requests"] == 1 and 0 < metrics["successRate"] <= 1
        assert client.get("/api/models/alpha/metrics", params={"window": "1y"}).status_code == 422
        none = client.post("/api/routing/execute", json={"taskType": "nope", "prompt": "x"})
        assert none.status_code == 422 and none.json()["code"] == "no-route"


@ONE_DATABASE  # the process's counters, not the database
def test_metrics_count_each_routed_call_per_model(server: Server) -> None:
    """/metrics: a routed call adds one request (by outcome) and one latency observation
    for its model. (The registry is the process's: compare before and after.)"""
    from prometheus_client.parser import text_string_to_metric_families

    def samples(client: httpx.Client) -> dict[tuple[str, str], float]:
        text = client.get("/metrics").text
        return {
            (sample.name, sample.labels.get("model", "")): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.labels.get("outcome", "success") == "success"
        }

    with server.client("operator") as client:
        before = samples(client)
        executed = client.post("/api/routing/execute", json={"taskType": "think", "prompt": "hi"})
        assert executed.status_code == 200 and executed.json()["modelId"] == "alpha"
        after = samples(client)
    for name in ("grove_model_requests_total", "grove_model_latency_seconds_count"):
        assert after[(name, "alpha")] - before.get((name, "alpha"), 0.0) == 1.0, name


def test_status_plan_reconcile_health_and_metrics(server: Server) -> None:
    with server.client("operator") as client:
        assert client.get("/api/status").json()["sync"] == "Synced"
        assert client.get("/api/plan").json()["changes"] == []
        assert client.post("/api/reconcile").json()["outcome"] == "in-sync"
        health = client.get("/api/models/health").json()
        assert health["status"] == "healthy" and health["serial"] == 1
        text = client.get("/metrics").text
        assert "grove_routing_decision_seconds" in text


@pytest.mark.slow
def test_events_stream_lifecycle_changes(server: Server) -> None:
    received: list[dict[str, Any]] = []
    connected = threading.Event()

    def listen() -> None:
        with server.client("viewer") as client, client.stream("GET", "/api/events") as stream:
            event = None
            for line in stream.iter_lines():
                if line == ": connected":
                    connected.set()
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "lifecycle":
                    received.append(json.loads(line[6:]))
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()

    # the stream is subscribed and the hub has read the table's head (at its first poll):
    # the next row is news to it
    assert connected.wait(timeout=15)
    hub = server.app.state.services.hub
    deadline = time.monotonic() + 15
    while hub._last_id is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hub._last_id is not None
    with server.client("operator") as client:
        assert client.post("/api/models/gamma/disable").status_code == 200
    thread.join(timeout=15)
    assert received and received[0]["type"] == "model_disabled"
    assert received[0]["objectId"] == "gamma"


@ONE_DATABASE  # the hub's slots, not the database
def test_event_streams_are_capped_per_token(server: Server) -> None:
    import asyncio
    import contextlib

    from reconciler.api.hub import MAX_STREAMS_PER_TOKEN

    def headers(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {server.tokens[role]}"}

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=server.url,
                    timeout=30,
                    limits=httpx.Limits(max_connections=MAX_STREAMS_PER_TOKEN + 10),
                )
            )

            readers = []  # a line iterator that is dropped closes its stream: keep them

            async def open_stream(role: str) -> httpx.Response:
                request = client.build_request("GET", "/api/events", headers=headers(role))
                response = await client.send(request, stream=True)
                if response.status_code == 200:  # the stream counts once it has started
                    lines = response.aiter_lines()
                    assert await anext(lines) == ": connected"
                    readers.append(lines)
                return response

            # a burst, all at once: the slots are taken before any stream starts
            burst = await asyncio.gather(
                *(open_stream("viewer") for _ in range(MAX_STREAMS_PER_TOKEN + 5))
            )
            opened = [r for r in burst if r.status_code == 200]
            assert len(opened) == MAX_STREAMS_PER_TOKEN
            assert sorted({r.status_code for r in burst}) == [200, 429]
            for response in burst:
                if response.status_code != 200:
                    await response.aclose()
            refused = await open_stream("viewer")
            assert refused.status_code == 429
            assert refused.headers["content-type"] == "application/problem+json"
            assert (await refused.aread()) and refused.json()["code"] == "too-many-streams"
            other = await open_stream("admin")  # another token is not affected
            assert other.status_code == 200
            await other.aclose()
            await opened.pop().aclose()
            for _ in range(100):  # the server notices the closed stream
                again = await open_stream("viewer")
                if again.status_code == 200:
                    await again.aclose()
                    break
                await again.aclose()
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("a closed stream was never given back")
            for response in opened:
                await response.aclose()

    asyncio.run(scenario())


@pytest.mark.slow
@ONE_DATABASE  # git fetches, not the database
def test_plan_previews_fetch_the_remote_at_most_every_few_seconds(
    remote_server: Server, tmp_path: Path
) -> None:
    interval = 2.0  # the server's is 5 s: the same behaviour, a shorter wait
    remote_server.app.state.services.previews.min_interval_s = interval
    with remote_server.client("viewer") as client:
        assert client.get("/api/plan").status_code == 200  # fetched
        away = tmp_path / "moved-away.git"
        remote_server.bare.rename(away)
        try:
            for _ in range(5):  # within the interval: no fetch, so the missing remote is unseen
                answer = client.get("/api/plan")
                assert answer.status_code == 200 and answer.json()["changes"] == []
            time.sleep(interval + 0.2)
            gone = client.get("/api/plan")  # the interval is over: this one fetches, and fails
            assert gone.status_code in (502, 503), gone.text
            assert gone.headers["content-type"] == "application/problem+json"
            again = client.get("/api/plan")  # the failure holds for the interval: no new fetch
            assert again.status_code == gone.status_code
            assert again.json()["detail"] == gone.json()["detail"]
        finally:
            away.rename(remote_server.bare)
        time.sleep(interval + 0.2)
        assert client.get("/api/plan").status_code == 200


@ONE_DATABASE  # the signature check, not the database
def test_the_git_webhook_checks_the_signature_before_anything(server: Server) -> None:
    body = b'{"ref": "refs/heads/main"}'
    good = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    with httpx.Client(base_url=server.url) as client:
        bad = client.post(
            "/api/hooks/git", content=body, headers={"X-Hub-Signature-256": "sha256=00"}
        )
        assert bad.status_code == 401
        garbage = client.post(
            "/api/hooks/git", content=b"\xff{not json", headers={"X-Hub-Signature-256": "sha256=00"}
        )
        assert garbage.status_code == 401
        ok = client.post("/api/hooks/git", content=body, headers={"X-Hub-Signature-256": good})
        assert ok.status_code == 202
        assert ok.json() == {"triggered": 1}


def test_callers_waiting_on_a_failing_plan_fetch_share_its_failure() -> None:
    """Ten viewers asking while the git host hangs: one fetch, one wait, ten answers."""
    from concurrent.futures import ThreadPoolExecutor

    from reconciler.api.deps import PreviewFetches
    from reconciler.base import errors

    class HangingSource:  # stands in for a git host that times out
        fetches = 0

        def fetch(self) -> None:
            HangingSource.fetches += 1
            time.sleep(0.5)
            raise errors.SourceUnavailable("git fetch failed for https://git.example/f.git")

        def resolve(self, ref: str) -> str:
            raise AssertionError("never resolved after a failed fetch")

    class Reconciler:
        source = HangingSource()

    previews = PreviewFetches(min_interval_s=30)

    def ask(_: int) -> float:
        started = time.monotonic()
        with pytest.raises(errors.SourceUnavailable):
            previews.revision(Reconciler(), "HEAD")  # type: ignore[arg-type]
        return time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        waits = list(pool.map(ask, range(10)))
    assert HangingSource.fetches == 1
    assert time.monotonic() - started < 1.5  # not ten timeouts one after another
    assert max(waits) < 1.5
