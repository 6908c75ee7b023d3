"""Benchmark: the console's server time for the fleet page and a model page, with 1,000 models
and a week of routing logs, against the JSON API listing the same models on the same server.

A fleet repository of ``--models`` mock models (bench/reconcile.py's), reconciled into a SQLite
registry; ``--rows`` routing-log rows spread over the last 7 days (a tenth of them on the model
whose page is timed); then a real server (uvicorn on loopback, the reconcile loop off) and one
signed-in client. Each page is fetched ``--runs`` times after two warm-ups; the median and p95
of the whole request on loopback are printed, and the ratio to ``GET /api/models`` (the 1,000
models as JSON, the same server, interleaved with the pages). Pages that do not exist yet are
reported as such. It asserts nothing.

Goals (issue 16): the fleet page under 50 ms median, a model page under 100 ms, on 2 cores.

    .venv/bin/python bench/console.py [--models 1000] [--rows 300000] [--runs 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconcile import build_repo

from reconciler import api
from reconciler.base import settings as settings_module
from reconciler.gitops import reconciling
from reconciler.store import migrating, routing_logs, tokens
from reconciler.store.engine import Database

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def fill_logs(db: Database, models: int, rows: int, hot: str) -> None:
    """``rows`` attempts over the last week: a tenth on ``hot``, the rest spread evenly."""
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)
    batch: list[routing_logs.Attempt] = []
    for n in range(rows):
        model_id = hot if n % 10 == 0 else f"m{rng.randrange(models):05d}"
        ok = rng.random() > 0.03
        batch.append(
            routing_logs.Attempt.of(
                request_id=str(uuid.UUID(int=rng.getrandbits(128))),
                model_id=model_id,
                task_type="task-1",
                capability_required="reasoning",
                latency_ms=rng.lognormvariate(5.5, 0.5),
                success=ok,
                attempt=1,
                error_kind=None if ok else "server_error",
                input_tokens=200,
                output_tokens=300,
                cost_usd=0.0004,
                reason="rule task-1: priority",
                chain=[model_id],
                rule_id="r0001",
                strategy="priority",
                revision=None,
                error=None if ok else "HTTP 500",
                timestamp=now - dt.timedelta(seconds=rng.uniform(0, 7 * 86400)),
            )
        )
        if len(batch) == 20_000:
            with db.transaction(write=True) as connection:
                routing_logs.write_batch(connection, batch)
            batch = []
    if batch:
        with db.transaction(write=True) as connection:
            routing_logs.write_batch(connection, batch)


def timed(client: httpx.Client, path: str) -> float:
    start = time.perf_counter()
    answer = client.get(path)
    elapsed = (time.perf_counter() - start) * 1000
    if answer.status_code != 200:
        raise LookupError(f"{path}: HTTP {answer.status_code}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repo = root / "fleet"
        repo.mkdir()
        build_repo(repo, args.models)
        os.environ.update(
            GROVE_REPO=str(repo),
            GROVE_DB_URL=f"sqlite:///{root / 'registry.db'}",
            GROVE_DATA_DIR=str(root / "data"),
            GROVE_RESOLVE_ENDPOINTS="false",
            GROVE_LOG_LEVEL="warning",
        )
        config = settings_module.load()
        db = Database(config.db_url)
        migrating.upgrade(db)
        started = time.perf_counter()
        reconciling.Reconciler(config, reconciling.open_source(config), db).reconcile(actor="bench")
        hot = "m00001"
        fill_logs(db, args.models, args.rows, hot)
        with db.transaction(write=True) as connection:
            token = tokens.create(connection, name="bench", role="operator", created_by="bench")
        db.dispose()
        setup_s = time.perf_counter() - started
        port = 18765 + os.getpid() % 1000
        server = uvicorn.Server(
            uvicorn.Config(api.asgi(config), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            report(f"http://127.0.0.1:{port}", token, hot, args, setup_s)
        finally:
            server.should_exit = True
            thread.join(timeout=20)


def report(url: str, token: str, hot: str, args: argparse.Namespace, setup_s: float) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        form = client.get("/login").text
        csrf = CSRF.search(form)
        assert csrf is not None
        client.post("/login", data={"token": token, "csrf": csrf.group(1)})
        api_headers = {"Authorization": f"Bearer {token}"}
        pages = {
            "fleet page (cards)": "/",
            "fleet page (table)": "/?view=table",
            "fleet page, filtered": "/?capability=reasoning&q=model+1",
            f"model page {hot}, 24h": f"/models/{hot}?window=24h",
            f"model page {hot}, 7d": f"/models/{hot}?window=7d",
        }
        print(
            f"console bench: {args.models} models, {args.rows:,} routing-log rows over 7 days "
            f"(setup {setup_s:.1f} s), {args.runs} runs after 2 warm-ups, SQLite, loopback"
        )
        baseline: list[float] = []
        print(f"{'page':34} {'median ms':>10} {'p95 ms':>8} {'x JSON list':>12}")
        results = {}
        for name, path in pages.items():
            try:
                for _ in range(2):
                    timed(client, path)
            except LookupError as exc:
                print(f"{name:34} {'not built':>10}  ({exc})")
                continue
            times = []
            for _ in range(args.runs):
                times.append(timed(client, path))
                start = time.perf_counter()
                client.get("/api/models?limit=1000", headers=api_headers)
                baseline.append((time.perf_counter() - start) * 1000)
            results[name] = times
        base = statistics.median(baseline) if baseline else float("nan")
        for name, times in results.items():
            median = statistics.median(times)
            p95 = statistics.quantiles(times, n=20)[-1] if len(times) >= 20 else max(times)
            print(f"{name:34} {median:10.1f} {p95:8.1f} {median / base:12.2f}")
        print(f"{'baseline GET /api/models?limit=1000':34} {base:10.1f}")


if __name__ == "__main__":
    main()
