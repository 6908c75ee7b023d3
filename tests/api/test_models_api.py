"""The models API against a real server: the brief's check, writes as commits, hostile input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Server
from tests.conftest import FleetRepo, model_yaml

BRIEF_BODY = {
    "name": "Test Model",
    "provider": "test",
    "capabilities": ["reasoning", "creativity"],
    "endpoint": "https://api.test.com/v1",
}


def test_the_brief_register_then_discover(server: Server) -> None:
    with server.client("operator") as client:
        refused = client.post("/api/models/register", json=BRIEF_BODY)
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["code"] == "invalid-model"
        assert problem["errors"] == [
            {
                "path": "provider",
                "message": "Input should be 'anthropic', 'google', 'openai', "
                "'openai-compatible' or 'mock'",
            }
        ]
        created = client.post(
            "/api/models/register", json={**BRIEF_BODY, "provider": "openai-compatible"}
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert (body["change"], body["applied"]) == ("created", True)
        assert body["model"]["id"] == "test-model"
        found = client.get("/api/models/discover", params={"capability": "reasoning"})
        assert found.status_code == 200
        ids = [m["id"] for m in found.json()]
        assert "test-model" in ids
        assert found.json()[ids.index("test-model")]["name"] == "Test Model"
    assert server.log()[0] == "operator-token|grove: register AIModel test-model (version 1)"


def test_read_patch_disable_enable_and_remove_are_commits(server: Server) -> None:
    with server.client("operator") as client:
        model = client.get("/api/models/beta")
        assert model.status_code == 200
        assert model.json()["manifest"]["payload"]["priority"] == 50
        patched = client.patch("/api/models/beta", json={"payload": {"priority": 55}})
        assert patched.status_code == 200, patched.text
        assert patched.json()["model"]["version"] == "2"
        assert client.post("/api/models/gamma/disable").json()["change"] == "disabled"
        assert client.get("/api/models/gamma").json()["state"] == "disabled"
        assert client.post("/api/models/gamma/enable").json()["change"] == "enabled"
        refused = client.delete("/api/models/gamma")
        assert refused.status_code == 409
        assert refused.json()["violations"][0]["code"] == "P006"
        assert client.delete("/api/models/gamma", params={"force": "true"}).status_code == 403
    with server.client("admin") as admin:
        forced = admin.delete("/api/models/gamma", params={"force": "true"})
        assert forced.status_code == 200, forced.text
        assert admin.get("/api/models/gamma").status_code == 404
    subjects = [line.split("|", 1)[1] for line in server.log()[:5]]
    assert subjects == [
        "grove: remove AIModel gamma",
        "grove: enable AIModel gamma",
        "grove: disable AIModel gamma",
        "grove: update AIModel beta (version 2)",
        "fleet",
    ]


def test_a_refused_change_commits_nothing(shared_server: Server) -> None:
    before = shared_server.log()
    with shared_server.client("operator") as client:
        response = client.patch(
            "/api/models/beta", json={"payload": {"priority": 51}, "version": "1"}
        )
        assert response.status_code == 409, response.text
        assert response.json()["violations"][0]["code"] == "P001"
    assert shared_server.log() == before


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("http://169.254.169.254/", "must use https://"),
        ("https://169.254.169.254/", "is a cloud metadata service"),
        ("https://127.0.0.1/", "address 127.0.0.1 is loopback, private or link-local"),
        ("https://2130706433/", "address 127.0.0.1 is loopback, private or link-local"),
        ("https://[::ffff:127.0.0.1]/", "is loopback, private or link-local"),
        ("https://user@api.example.com/", "must not carry credentials"),
        ("ftp://api.example.com/", "must use https://"),
    ],
)
def test_hostile_endpoints_are_refused_and_change_nothing(
    shared_server: Server, endpoint: str, why: str
) -> None:
    before = shared_server.log(), shared_server.registry.content_hash()
    with shared_server.client("operator") as client:
        response = client.post(
            "/api/models/register",
            json={**BRIEF_BODY, "provider": "openai-compatible", "endpoint": endpoint},
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid-model"
    assert response.json()["errors"][0]["path"] == "endpoint"
    assert why in response.json()["errors"][0]["message"]  # refused by the rule that applies
    assert (shared_server.log(), shared_server.registry.content_hash()) == before


def test_bodies_over_the_cap_and_deep_json_are_refused(shared_server: Server) -> None:
    before = shared_server.log(), shared_server.registry.content_hash()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap must hold while reading
        yield b"{"
        for _ in range(100):
            yield b" " * (1024 * 1024)
        yield b"}"

    with shared_server.client("operator") as client:
        big = client.post(
            "/api/models/register",
            content=b"{" + b" " * (100 * 1024 * 1024) + b"}",
            headers={"Content-Type": "application/json"},
        )
        streamed = client.post(
            "/api/models/register", content=chunks(), headers={"Content-Type": "application/json"}
        )
        deep = client.post(
            "/api/models/register",
            content=b"[" * 100_000 + b"]" * 100_000,
            headers={"Content-Type": "application/json"},
        )
    for refused, status, code in (
        (big, 413, "too-large"),
        (streamed, 413, "too-large"),
        (deep, 422, "too-deep"),
    ):
        assert refused.status_code == status
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == code
    assert "content-length" not in streamed.request.headers
    assert (shared_server.log(), shared_server.registry.content_hash()) == before


def test_strict_bodies_name_the_field(shared_server: Server) -> None:
    with shared_server.client("operator") as client:
        response = client.post("/api/models/register", json={**BRIEF_BODY, "priority": "9"})
        assert response.status_code == 422
        assert response.json()["errors"][0]["path"] == "priority"
        unknown = client.post("/api/models/register", json={**BRIEF_BODY, "baseUrl": "x"})
        assert unknown.status_code == 422
        assert unknown.json()["errors"][0]["path"] == "baseUrl"


def test_markup_in_a_name_is_stored_as_text(server: Server) -> None:
    with server.client("operator") as client:
        name = "<script>alert(1)</script>"
        created = client.post(
            "/api/models/register",
            json={**BRIEF_BODY, "provider": "openai-compatible", "name": name, "id": "xss"},
        )
        assert created.status_code == 201, created.text
        read = client.get("/api/models/xss")
        assert read.headers["content-type"] == "application/json"  # JSON, never rendered HTML
        assert read.json()["name"] == name
    committed = server.registry.fleet.git(
        "--git-dir", str(server.bare), "show", "HEAD:manifests/models/xss.yaml"
    )
    assert name in committed  # kept as text, not escaped or stripped in the manifest


@pytest.mark.parametrize("value", ["' OR 1=1 --", "beta'; DROP TABLE model_registry; --"])
def test_sql_in_query_parameters_changes_nothing(shared_server: Server, value: str) -> None:
    before = shared_server.registry.content_hash()
    with shared_server.client("viewer") as client:
        logs = client.get("/api/routing/logs", params={"modelId": value})
        assert logs.status_code == 200 and logs.json() == []  # a string, matched as one
        missing = client.get(f"/api/models/{value}")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        bad = client.get("/api/models/discover", params={"capability": value})
        assert bad.status_code == 422 and bad.json()["code"] == "invalid-request"
        assert client.get("/api/models/beta").status_code == 200
    assert shared_server.registry.content_hash() == before


def test_a_literal_key_in_a_register_body_is_refused_without_echo(shared_server: Server) -> None:
    canary = "sk-canary-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    with shared_server.client("operator") as client:
        response = client.post(
            "/api/models/register",
            json={**BRIEF_BODY, "provider": "openai-compatible", "name": canary},
        )
    assert response.status_code == 422
    assert response.json()["code"] == "literal-secret"
    assert canary not in response.text
    rows = shared_server.registry.sql("SELECT meta, payload FROM model_registry")
    assert canary not in json.dumps([[str(v) for v in row] for row in rows])


@pytest.mark.slow
def test_fifty_concurrent_registers_are_all_commits_and_history_is_linear(server: Server) -> None:
    def register(i: int) -> int:
        with server.client("operator") as client:
            return client.post(
                "/api/models/register",
                json={**BRIEF_BODY, "provider": "openai-compatible", "name": f"Model {i}"},
            ).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(register, range(50)))
    assert set(codes) <= {201, 409}
    created = codes.count(201)
    assert created == 50
    subjects = [line.split("|", 1)[1] for line in server.log()]
    registered = [s for s in subjects if s.startswith("grove: register")]
    assert len(registered) == 50
    live = server.registry.live()
    assert all(f"AIModel/model-{i}" in live for i in range(50))
    merges = FleetLog(server).git("rev-list", "--merges", "--count", "HEAD")
    assert merges == "0"


class FleetLog:
    def __init__(self, server: Server) -> None:
        self.server = server

    def git(self, *args: str) -> str:
        import subprocess

        return subprocess.run(
            ["git", *args], cwd=self.server.bare, capture_output=True, text=True, check=True
        ).stdout.strip()


def test_model_endpoints_do_not_reach_routing_rules(shared_server: Server) -> None:
    before = shared_server.log()
    with shared_server.client("operator") as client:
        response = client.post("/api/models/think/disable")
    assert response.status_code == 404
    assert shared_server.log() == before


def test_a_label_key_that_is_a_secret_is_not_echoed(shared_server: Server) -> None:
    canary = "sk-canary-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    with shared_server.client("operator") as client:
        response = client.post(
            "/api/models/register",
            json={**BRIEF_BODY, "provider": "openai-compatible", "labels": {canary: "x"}},
        )
    assert response.status_code == 422
    assert response.json()["code"] == "literal-secret"
    assert canary not in response.text


def test_a_refusal_already_at_head_does_not_block_other_writes(
    server: Server, tmp_path: Path
) -> None:
    """Someone pushed a change the reconciler refuses (beta edited without a version bump);
    an API write to another model still commits, and says it was not applied."""
    clone = FleetRepo(tmp_path / "clone")
    clone.git("pull", "-q", str(server.bare), "main")
    clone.commit("edit beta in place", {"models/beta.yaml": model_yaml("beta", priority="51")})
    clone.git("push", "-q", str(server.bare), "HEAD:main")
    with server.client("operator") as client:
        response = client.post(
            "/api/models/register",
            json={**BRIEF_BODY, "provider": "openai-compatible", "id": "delta"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["applied"] is False
        # the new change itself is still checked: an in-place edit of alpha is refused
        refused = client.patch(
            "/api/models/alpha", json={"payload": {"priority": 91}, "version": "1"}
        )
        assert refused.status_code == 409
        assert [v["code"] for v in refused.json()["violations"]] == ["P001"]
    assert server.log()[0].endswith("grove: register AIModel delta (version 1)")


def test_a_name_resolving_to_a_private_address_is_refused_at_registration(
    resolving_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    answers = {"api.inside.example": "10.0.0.5", "api.metadata.example": "169.254.169.254"}

    real = socket.getaddrinfo

    def resolve(host: str, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, *args, **kwargs)  # the test's own client on 127.0.0.1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], 443))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    before = resolving_server.log(), resolving_server.registry.content_hash()
    with resolving_server.client("operator") as client:
        for host, reason in (
            ("api.inside.example", "loopback, private or link-local"),
            ("api.metadata.example", "cloud metadata service"),
        ):
            refused = client.post(
                "/api/models/register",
                json={
                    **BRIEF_BODY,
                    "provider": "openai-compatible",
                    "endpoint": f"https://{host}/v1",
                },
            )
            assert refused.status_code == 422
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "endpoint-not-allowed"
            assert reason in refused.json()["detail"]
    assert (resolving_server.log(), resolving_server.registry.content_hash()) == before


def test_a_resolver_that_hangs_does_not_hold_registration(
    resolving_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """getaddrinfo has no timeout: registration waits RESOLVE_TIMEOUT_S at most, then goes
    on as for an unresolvable name (the connect-time check guards every call)."""
    import socket
    import threading
    import time

    from reconciler.api.routes import models as fleet

    released = threading.Event()
    real = socket.getaddrinfo

    def hang(host: str, *args: Any, **kwargs: Any) -> Any:
        if host != "api.slow-dns.example":
            return real(host, *args, **kwargs)
        released.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    monkeypatch.setattr(fleet, "RESOLVE_TIMEOUT_S", 0.3)
    try:
        with resolving_server.client("operator") as client:
            started = time.monotonic()
            created = client.post(
                "/api/models/register",
                json={
                    **BRIEF_BODY,
                    "name": "Slow DNS",
                    "provider": "openai-compatible",
                    "endpoint": "https://api.slow-dns.example/v1",
                },
            )
            waited = time.monotonic() - started
        assert created.status_code == 201, created.text
        assert created.json()["model"]["id"] == "slow-dns"
        print(f"registered {waited:.2f}s after the request, the resolver still hanging")
        assert not released.is_set()
    finally:
        released.set()
