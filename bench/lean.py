"""Benchmark: what the lean handler of ``POST /api/routing/execute`` saves per call.

One process, one app (``reconciler.api.asgi``, SQLite, one ``mock`` model so no
socket is opened), called directly as ASGI (no server, no network), so what is
measured is the application: body limits, routing, FastAPI or the lean handler,
the token check (cached), the routing decision, the call, the routing-log row
queued. The same calls alternate in blocks between the lean handler (the
default) and FastAPI's generic handler (``app.state.lean_routes = False``),
``--rounds`` times; CPU time per call (``time.process_time``) for each, and
their ratio. bench/api.py measures the whole server, network and all.

    .venv/bin/python bench/lean.py [--calls 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import api as bench_api  # bench/api.py, beside this file (bench/ is on sys.path when run)

from reconciler import api
from reconciler.base import settings

MODEL = {
    "meta": {"id": "fast", "type": "AIModel", "version": "1"},
    "payload": {"name": "fast", "provider": "mock", "capabilities": {"reasoning": 0.9}},
}
RULE = {
    "meta": {"id": "bench", "type": "RoutingRule", "version": "1"},
    "payload": {"taskType": "bench", "requires": ["reasoning"], "chain": ["fast"]},
}
BODY = json.dumps({"taskType": "bench", "prompt": "hi", "maxTokens": 8}).encode()


def prepare(tmp: Path) -> str:
    """bench/api.py's fleet set-up, with one mock model; this process's environment
    becomes the server's. Returns the operator token."""
    files = {"fast.yaml": json.dumps(MODEL), "rule.yaml": json.dumps(RULE)}
    env = bench_api.prepare_fleet(tmp, files)
    os.environ.update({k: v for k, v in env.items() if k.startswith("GROVE_")})
    return env["BENCH_TOKEN"]


async def lifespan(app: Any) -> tuple[asyncio.Queue[dict[str, Any]], asyncio.Task[None]]:
    """Start the app's lifespan as a server would; put ``lifespan.shutdown`` to end it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"].endswith("failed"):
            raise SystemExit(f"lifespan: {message}")

    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    task = asyncio.create_task(app(scope, inbox.get, send))
    await started.wait()
    return inbox, task


async def call(app: Any, token: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/routing/execute",
        "raw_path": b"/api/routing/execute",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def run(calls: int, rounds: int, token: str) -> dict[str, list[float]]:
    outer = api.asgi(settings.load())
    inbox, task = await lifespan(outer)
    per_call: dict[str, list[float]] = {"lean": [], "fastapi": []}
    try:
        for _ in range(200):  # warm up both
            for on in (True, False):
                outer.app.state.lean_routes = on
                assert await call(outer, token) == 200
        for _ in range(rounds):
            for label, on in (("lean", True), ("fastapi", False)):
                outer.app.state.lean_routes = on
                started = time.process_time()
                for _ in range(calls):
                    status = await call(outer, token)
                    if status != 200:
                        raise SystemExit(f"{label}: HTTP {status}")
                per_call[label].append((time.process_time() - started) / calls)
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await task
    return per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="grove-bench-lean-") as tmp:
        token = prepare(Path(tmp))
        per_call = asyncio.run(run(args.calls, args.rounds, token))
    us = 1e6
    print(f"{args.rounds} rounds of {args.calls:,} calls each, alternating; CPU per call:")
    for label, values in per_call.items():
        print(
            f"  {label:<8} median {statistics.median(values) * us:7.1f} us"
            f"  (rounds: {', '.join(f'{v * us:.1f}' for v in values)})"
        )
    lean, fastapi = (statistics.median(per_call[k]) for k in ("lean", "fastapi"))
    print(
        f"lean / fastapi: {lean / fastapi:.3f}x; saved {(fastapi - lean) * us:.1f} us per call"
        " (the application only: bench/api.py measures the server)"
    )


if __name__ == "__main__":
    main()
