"""Benchmark: the HTTP API's added cost on a routed call, and discover throughput.

Three processes on loopback: a fake OpenAI-compatible provider (uvicorn, a
fixed chat-completions answer), a Grove server (``python -m reconciler.api``,
SQLite, one registered model pointing at the fake, 1,000 more models for
discover), and this process as the load generator (wrk when installed, else an
async httpx client; aiohttp for the paced runs), separate from both servers.

Measured in the same run, against the same fake provider:
- baseline: ``POST /v1/chat/completions`` straight to the provider;
- Grove: ``POST /api/routing/execute`` (token check, routing decision, the
  call with its deadline and size cap, the routing log row queued);
- ``GET /api/models/discover?capability=reasoning`` with 1,000 models.

Three views of the added cost: one client sending requests one after another
(what Grove adds to a single call, no queueing); 50 connections offering a
fixed 1,000 requests per second between them (open loop: each request is sent
at its time, whatever the previous one did), the goal's load, run ``--repeat``
times per worker count, each right after a direct run at the same load that
serves as its baseline (the machine's speed drifts within minutes), with the
median reported; and 50
connections sending as fast as answers come back (throughput; at that load the
latency is mostly time spent queued). Grove runs on one worker process and on
two (``grove serve --workers 2``). The one-client run also reports the CPU a
call costs Grove (the server and its routing-log writer, read from ``/proc``)
against what the same call costs the fake provider: the figure that decides how
much load one worker takes, and one that moves less than latency when the
machine is busy.

Goals (issue 6): under 1 ms added at p50 and under 5 ms at p99, over 1,000
routed requests per second, on this 2-core machine.

    .venv/bin/python bench/api.py [--concurrency 50] [--rate 1000] [--seconds 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
GIT = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "b@grove.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "b@grove.invalid",
}

PROVIDER = textwrap.dedent("""
    import json, sys, uvicorn
    ANSWER = json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": ANSWER})
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error",
                access_log=False)
""")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def model(ident: str, i: int, endpoint: str | None) -> str:
    body = {
        "meta": {"id": ident, "type": "AIModel", "version": "1"},
        "payload": {
            "name": ident,
            "priority": 1000 if endpoint else i % 900,
            "capabilities": {"reasoning": 0.5 + (i % 50) / 100, "speed": 0.7},
        },
    }
    if endpoint:
        body["payload"].update(
            provider="openai-compatible", providerModel="fake", endpoint=endpoint, timeoutMs=10000
        )
    else:
        body["payload"]["provider"] = "mock"
    return json.dumps(body)


def prepare(tmp: Path, provider_url: str) -> dict[str, str]:
    files = {"models/fast.yaml": model("fast", 0, provider_url)}
    files.update({f"models/m{i:04d}.yaml": model(f"m{i:04d}", i, None) for i in range(1000)})
    files["rules.yaml"] = json.dumps(
        {
            "meta": {"id": "bench", "type": "RoutingRule", "version": "1"},
            "payload": {"taskType": "bench", "requires": ["reasoning"], "chain": ["fast"]},
        }
    )
    return prepare_fleet(tmp, files)


def prepare_fleet(tmp: Path, files: dict[str, str]) -> dict[str, str]:
    """A fleet repository of ``files`` (under ``manifests/``), a SQLite registry
    reconciled to it, and an operator token: the environment of a Grove server on
    them (GROVE_* and BENCH_TOKEN)."""
    repo = tmp / "fleet"
    for name, text in files.items():
        target = repo / "manifests" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "fleet"]):
        subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT}, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROVE_")}
    env.update(
        GROVE_REPO=str(repo),
        GROVE_DB_URL=f"sqlite:///{tmp}/registry.db",
        GROVE_DATA_DIR=str(tmp / "data"),
        GROVE_ALLOW_LOCAL_ENDPOINTS="true",
        GROVE_RESOLVE_ENDPOINTS="false",
    )
    grove = [sys.executable, "-m", "reconciler"]
    subprocess.run([*grove, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run([*grove, "reconcile"], env=env, check=True, capture_output=True)
    token = subprocess.run(
        [*grove, "token", "create", "--role", "operator", "--name", "bench"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    env["BENCH_TOKEN"] = token
    return env


async def load(
    url: str, body: dict | None, headers: dict[str, str], requests: int, concurrency: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:

        async def worker(count: int) -> None:
            for _ in range(count):
                started = time.perf_counter()
                if body is None:
                    response = await client.get(url)
                else:
                    response = await client.post(url, json=body)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(f"{url}: HTTP {response.status_code} {response.text[:200]}")

        for _ in range(2):  # warm the pools
            await worker(1)
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, elapsed


def wrk(
    url: str, body: dict | None, headers: dict[str, str], seconds: int, concurrency: int, tmp: Path
) -> tuple[float, float, float]:
    """p50 and p99 in seconds and requests per second, measured by wrk (a C load generator)."""
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    if body is not None:
        lines += [
            'wrk.method = "POST"',
            'wrk.headers["Content-Type"] = "application/json"',
            f"wrk.body = [[{json.dumps(body)}]]",
        ]
    script = tmp / f"wrk-{time.monotonic_ns()}.lua"
    script.write_text("\n".join(lines) + "\n")
    subprocess.run(
        ["wrk", "-t2", f"-c{concurrency}", "-d2s", "-s", str(script), url],
        check=True,
        capture_output=True,
    )  # warm-up
    out = subprocess.run(
        ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"{url}: errors during the run:\n{out}")

    def latency(label: str) -> float:
        value = next(line.split()[1] for line in out.splitlines() if line.strip().startswith(label))
        for unit, scale in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
            if value.endswith(unit):
                return float(value[: -len(unit)]) * scale
        raise ValueError(value)

    rate = float(
        next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec"))
    )
    return latency("50%"), latency("99%"), rate


async def paced(
    url: str, body: dict, headers: dict[str, str], rate: float, seconds: float, concurrency: int
) -> tuple[list[float], int]:
    """Open-loop load: ``rate`` requests per second spread evenly over ``concurrency``
    kept-alive connections, each request sent at a fixed time (not when the previous one
    came back). Returns each request's latency, send to full answer, and how many were
    sent more than a millisecond late (a sign the load generator or the server fell behind)."""
    import aiohttp

    data = json.dumps(body).encode()
    sent_headers = {**headers, "Content-Type": "application/json"}
    latencies: list[float] = []
    late = 0
    interval = concurrency / rate  # between two requests of one connection
    count = int(rate * seconds / concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send() -> float:
            started = time.perf_counter()
            async with session.post(url, data=data, headers=sent_headers) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"{url}: HTTP {response.status}")
            return time.perf_counter() - started

        async def connection(offset: float, start: float) -> None:
            nonlocal late
            for i in range(count):
                due = start + offset + i * interval
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                elif wait < -0.001:
                    late += 1
                latencies.append(await send())

        await asyncio.gather(*(send() for _ in range(concurrency)))  # open the connections
        start = time.perf_counter() + 0.05
        await asyncio.gather(
            *(connection(k * interval / concurrency, start) for k in range(concurrency))
        )
    return latencies, late


def run_paced(
    url: str, body: dict, headers: dict[str, str], rate: float, seconds: float, concurrency: int
) -> tuple[list[float], int]:
    try:
        import uvloop  # installed with uvicorn[standard]: a lighter load generator
    except ImportError:  # pragma: no cover
        return asyncio.run(paced(url, body, headers, rate, seconds, concurrency))
    return uvloop.run(paced(url, body, headers, rate, seconds, concurrency))


def summary(latencies: list[float], elapsed: float) -> tuple[float, float, float]:
    return pct(latencies, 0.5), pct(latencies, 0.99), len(latencies) / elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def sequential(url: str, body: dict, headers: dict[str, str], count: int) -> list[float]:
    """Latencies of ``count`` requests sent one after another on one kept-alive connection."""
    with httpx.Client(headers=headers, timeout=30) as client:
        for _ in range(100):  # warm up
            client.post(url, json=body)
        latencies = []
        for _ in range(count):
            started = time.perf_counter()
            response = client.post(url, json=body)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"{url}: HTTP {response.status_code} {response.text[:200]}")
    return latencies


def cpu_seconds(pid: int) -> float | None:
    """CPU time of a process and its live children (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except OSError:
        return None
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) or 0.0 for child in children)


def with_cpu(pid: int, run: Callable[[], list[float]]) -> tuple[float | None, list[float]]:
    """``run()``'s result, and the CPU seconds process ``pid`` spent meanwhile."""
    before = cpu_seconds(pid)
    result = run()
    after = cpu_seconds(pid)
    return (after - before if before is not None and after is not None else None), result


GROVE_API = [sys.executable, "-m", "reconciler.api"]


def start_grove(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [*GROVE_API, "--port", str(port), "--no-loop", "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(f"http://127.0.0.1:{port}")
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10, help="wrk: seconds per run")
    parser.add_argument("--httpx", action="store_true", help="load from httpx even if wrk exists")
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="open-loop runs: requests per second offered"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="open-loop runs per worker count (the VM is noisy)"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="grove-bench-api-"))
    provider_port = free_port()
    provider_process = subprocess.Popen([sys.executable, "-c", PROVIDER, str(provider_port)])
    use_wrk = bool(shutil.which("wrk")) and not args.httpx
    tool = "wrk" if use_wrk else "httpx (install Debian's wrk for a lighter load generator)"

    def under_load(url: str, body: dict | None, headers: dict[str, str]) -> tuple[float, ...]:
        if use_wrk:
            return wrk(url, body, headers, args.seconds, args.concurrency, tmp)
        return summary(*asyncio.run(load(url, body, headers, args.requests, args.concurrency)))

    grove_cpu = provider_cpu = None
    rows: list[tuple[str, tuple[float, ...]]] = []
    open_loop: list[tuple[str, list[float], list[float], int]] = []
    try:
        provider = f"http://127.0.0.1:{provider_port}"
        wait_for(provider)
        env = prepare(tmp, f"{provider}/v1")
        auth = {"Authorization": f"Bearer {env['BENCH_TOKEN']}"}
        chat = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        execute = {"taskType": "bench", "prompt": "hi", "maxTokens": 8}
        direct_url = f"{provider}/v1/chat/completions"
        pacing = (args.rate, float(args.seconds), args.concurrency)
        for workers in (1, 2):
            port = free_port()
            grove_process = start_grove(env, port, workers)
            grove = f"http://127.0.0.1:{port}"
            try:
                if workers == 1:
                    provider_cpu, one_direct = with_cpu(
                        provider_process.pid,
                        functools.partial(sequential, direct_url, chat, {}, 2000),
                    )
                    routed_url = f"{grove}/api/routing/execute"
                    grove_cpu, one_grove = with_cpu(
                        grove_process.pid,
                        functools.partial(sequential, routed_url, execute, auth, 2000),
                    )
                    direct = under_load(direct_url, chat, {})
                    rows.append(("direct to provider", direct))
                for _ in range(args.repeat):  # each routed run beside a direct run of its own
                    baseline, _ = run_paced(direct_url, chat, {}, *pacing)
                    routed_run = run_paced(f"{grove}/api/routing/execute", execute, auth, *pacing)
                    open_loop.append((f"execute, {workers} worker(s)", baseline, *routed_run))
                routed = under_load(f"{grove}/api/routing/execute", execute, auth)
                found = under_load(f"{grove}/api/models/discover?capability=reasoning", None, auth)
                rows.append((f"execute, {workers} worker(s)", routed))
                rows.append((f"discover 1,001, {workers} w", found))
            finally:
                stop(grove_process)
    finally:
        stop(provider_process)
        shutil.rmtree(tmp, ignore_errors=True)
    ms = 1000.0
    added50 = (pct(one_grove, 0.5) - pct(one_direct, 0.5)) * ms
    added99 = (pct(one_grove, 0.99) - pct(one_direct, 0.99)) * ms
    print(f"cpus={os.cpu_count()}")
    print("one client, 2,000 requests one after another (no queueing):")
    for label, values in (("direct", one_direct), ("grove", one_grove)):
        p50, p99 = pct(values, 0.5) * ms, pct(values, 0.99) * ms
        print(f"  {label:<7} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    print(f"  added   p50 {added50:6.2f} ms  p99 {added99:6.2f} ms   (goal < 1 ms p50, < 5 ms p99)")
    if grove_cpu is not None and provider_cpu:
        # the same 2,000 calls: the provider's CPU is the machine's yardstick
        per_call = grove_cpu / (len(one_grove) + 100) * ms  # + the warm-up calls
        provider_per_call = provider_cpu / (len(one_direct) + 100) * ms
        print(
            f"  CPU per call: grove {per_call:.2f} ms (server and its routing-log writer),"
            f" provider {provider_per_call:.2f} ms, ratio {per_call / provider_per_call:.1f}x"
        )
    print(
        f"{args.concurrency} connections, {args.rate:,.0f} requests/s offered for {args.seconds} s"
        " (open loop, aiohttp client; latency from send to full answer), each routed run"
        " right after a direct one:"
    )
    added_by_label: dict[str, list[tuple[float, float]]] = {}
    for label, baseline, values, late in open_loop:
        p50, p99 = pct(values, 0.5), pct(values, 0.99)
        base50, base99 = pct(baseline, 0.5), pct(baseline, 0.99)
        added_by_label.setdefault(label, []).append(((p50 - base50) * ms, (p99 - base99) * ms))
        print(
            f"  {label:<22} p50 {p50 * ms:6.2f} ms  p99 {p99 * ms:6.2f} ms"
            f"  (direct {base50 * ms:4.2f} / {base99 * ms:4.2f})"
            f"  added p50 {(p50 - base50) * ms:5.2f} ms  p99 {(p99 - base99) * ms:6.2f} ms"
            f"  ({late} of {len(values)} sent late)"
        )
    for label, added in added_by_label.items():
        middle = statistics.median(a for a, _ in added), statistics.median(b for _, b in added)
        print(
            f"  {label:<22} median of {len(added)}: added p50 {middle[0]:5.2f} ms"
            f"  p99 {middle[1]:6.2f} ms   (goal < 1 ms p50, < 5 ms p99)"
        )
    print(f"{args.concurrency} concurrent connections, as fast as they go, load from {tool}:")
    for label, (p50, p99, rate) in rows:
        print(f"  {label:<26} p50 {p50 * ms:7.2f} ms  p99 {p99 * ms:7.2f} ms  {rate:8.0f} req/s")
    best = max(rate for label, (_, _, rate) in rows if label.startswith("execute"))
    print(
        f"grove: up to {best:.0f} routed req/s (goal > 1,000), "
        f"{best / rows[0][1][2]:.3f}x the provider's own rate on this machine"
    )


if __name__ == "__main__":
    main()
