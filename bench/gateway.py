"""Benchmark: the gateway's ``POST /v1/chat/completions`` beside a direct call and LiteLLM's proxy.

Every server is a process of its own on loopback, apart from this one, the load
client (aiohttp, on uvloop when installed), so that none shares the client's CPU:

- the fake provider: an OpenAI-compatible server written on raw asyncio (no
  framework, so the baseline is as cheap as a server gets), answering a fixed
  ``chat.completion`` or, for ``stream: true``, a server-sent-event stream of
  a role chunk and the first word at once, then after ``--gap-ms`` four more
  words, the finish chunk, a usage chunk when ``stream_options.include_usage``
  asks for one, and ``data: [DONE]`` (the gap makes a proxy that holds chunks
  back show it in its time to the first one);
- Grove: ``python -m reconciler.api --no-loop`` (what ``grove serve`` runs) on a
  temporary SQLite fleet with one openai-compatible model, ``fast``, pointing at
  the fake, called with a ``client`` token and ``"model": "fast"`` (a model id);
- LiteLLM's proxy, when installed (``$BENCH_LITELLM`` or
  ``/work/litellm-venv/bin/litellm``; see bench/README.md for how), with one
  model group ``fake`` routed to ``openai/fake`` on the same fake, a master key,
  no database, telemetry off and ``LITELLM_OFFLINE_MODE`` (nothing fetched).

The same client, the same body (``max_tokens`` 8, one user message) and the same
fake for all three; measured in one run:

1. One connection each, one call at a time, interleaved in blocks of ``--block``
   calls (direct, Grove, LiteLLM in turn, the order rotating), after a warm-up:
   p50 and p99 of each, and what Grove and LiteLLM add to the direct call's.
   Also each server's CPU per call (from /proc), a figure that moves less than
   latency on a shared machine.
2. Streaming the same way: time to the first chunk carrying text, added to the
   direct stream's; every stream is checked to join to the same text and end
   with ``[DONE]``.
3. Requests per second at ``--concurrency`` connections sending as fast as the
   answers come back, ``--seconds`` each, direct, Grove and LiteLLM back to
   back, ``--repeat`` rounds, the median reported. The direct figure is the
   ceiling of this client and fake on this machine, not the fake's alone.

Goals (issue 18), on this 2-core machine: Grove's added p50 at most a third of
LiteLLM's; Grove's throughput at least twice LiteLLM's; Grove's added time to the
first chunk under 1 ms at p50. A server that is absent or does not answer is
skipped with a line saying why, and the rest is measured.

    .venv/bin/python bench/gateway.py [--quick] [--calls 2000] [--seconds 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import api as bench_api  # bench/api.py, beside this file (bench/ is on sys.path when run)
import httpx

GROVE_CLI = [sys.executable, "-m", "reconciler"]
LITELLM_DEFAULT = "/work/litellm-venv/bin/litellm"
LITELLM_KEY = "sk-bench-" + "0123456789abcdef" * 2  # a local proxy's master key, not a secret
STREAM_TEXT = "Hello from the fake provider"
ADDED_P50_GOAL = 1 / 3  # Grove's added p50 against LiteLLM's
THROUGHPUT_GOAL = 2.0  # Grove's requests a second against LiteLLM's
TTFC_GOAL_MS = 1.0  # Grove's added time to the first chunk, p50
MS = 1000.0

FAKE = r"""
import asyncio, json, sys

GAP_S = float(sys.argv[1])
ANSWER = json.dumps({"id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
    "model": "fake", "choices": [{"index": 0, "message": {"role": "assistant",
    "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()
PLAIN = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
         % len(ANSWER)) + ANSWER
BAD = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
WORDS = ["Hello", " from", " the", " fake", " provider"]

def event(data):
    line = b"data: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(line), line)

def chunk(delta, finish=None, **extra):
    choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else []
    return event(json.dumps({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
        "created": 0, "model": "fake", "choices": choices, **extra}).encode())

FIRST = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
         b"transfer-encoding: chunked\r\n\r\n"
         + chunk({"role": "assistant", "content": ""}) + chunk({"content": WORDS[0]}))
REST = b"".join(chunk({"content": word}) for word in WORDS[1:]) + chunk({}, "stop")
USAGE = chunk(None, usage={"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10})
END = event(b"[DONE]") + b"0\r\n\r\n"


class Provider(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":  # no client here sends one
                    self.transport.write(BAD)
                    self.transport.close()
                    return
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            self.answer(body)

    def answer(self, body):
        try:
            request = json.loads(body)
        except ValueError:
            request = {}
        if not request.get("stream"):
            self.transport.write(PLAIN)
            return
        usage = bool((request.get("stream_options") or {}).get("include_usage"))
        self.transport.write(FIRST)
        if GAP_S > 0:
            asyncio.get_running_loop().call_later(GAP_S, self.finish, usage)
        else:
            self.finish(usage)

    def finish(self, usage):
        if not self.transport.is_closing():
            self.transport.write(REST + (USAGE if usage else b"") + END)


async def serve():
    server = await asyncio.get_running_loop().create_server(
        Provider, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

try:
    import uvloop
    uvloop.run(serve())
except ImportError:
    asyncio.run(serve())
"""


# ---------------------------------------------------------------- the servers


@dataclasses.dataclass
class Target:
    """One way to ``/v1/chat/completions``: where, with which credential and model name."""

    name: str
    url: str
    headers: dict[str, str]
    model: str
    pid: int | None = None  # the server's process, for its CPU time

    def body(self, *, stream: bool) -> bytes:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 8,
        }
        if stream:
            request.update(stream=True, stream_options={"include_usage": True})
        return json.dumps(request).encode()


def without_proxies(env: dict[str, str]) -> dict[str, str]:
    """``env`` without proxy settings: every call here stays on loopback."""
    return {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}


def start(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def ready(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> str | None:
    """None once ``url`` answers; else why not (the process died, or it took too long),
    with the last line it wrote (its log goes with the temporary folder)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with status {process.returncode}: {last_line(log)}"
        try:
            httpx.get(url, timeout=1)
            return None
        except httpx.TransportError:
            time.sleep(0.2)
    return f"did not answer {url} within {seconds:.0f} s: {last_line(log)}"


def last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else "no output"


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_fake(gap_ms: float) -> tuple[subprocess.Popen[str], str]:
    """The fake provider in a child process; returns it and its base URL (``.../v1``)."""
    child = subprocess.Popen(
        [sys.executable, "-c", FAKE, str(gap_ms / MS)],
        stdout=subprocess.PIPE,
        text=True,
        env=without_proxies(dict(os.environ)),
    )
    assert child.stdout is not None
    port = int(child.stdout.readline())
    return child, f"http://127.0.0.1:{port}/v1"


def start_grove(
    tmp: Path, provider: str, workers: int, profile: Path | None
) -> tuple[subprocess.Popen[bytes] | None, Target | str]:
    """Grove on a fleet of one model, ``fast``, at the fake, and a client token."""
    fleet = {"models/fast.yaml": bench_api.model("fast", 0, provider)}
    try:
        env = without_proxies(bench_api.prepare_fleet(tmp, fleet))
        token = subprocess.run(
            [*GROVE_CLI, "token", "create", "--role", "client", "--name", "bench-client"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except subprocess.CalledProcessError as exc:
        output = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        last = output.strip().splitlines()[-1:] or ["no output"]
        command = " ".join(str(part) for part in exc.cmd[1:5])
        return None, f"Grove: skipped, {command} failed: {last[0][:300]}"
    port = bench_api.free_port()
    server = [sys.executable, "-m", "reconciler.api", "--port", str(port), "--no-loop"]
    if profile is not None:  # one worker under cProfile; it writes the file at a clean exit
        server[1:1] = ["-m", "cProfile", "-o", str(profile)]
    process = start([*server, "--workers", str(workers)], env, tmp / "grove.log")
    base = f"http://127.0.0.1:{port}"
    problem = ready(base, process, tmp / "grove.log", 120)
    if problem:
        return process, f"Grove: skipped, the server {problem}"
    auth = {"Authorization": f"Bearer {token}"}
    return process, Target("grove", f"{base}/v1/chat/completions", auth, "fast", process.pid)


LITELLM_CONFIG = """\
model_list:
  - model_name: fake
    litellm_params:
      model: openai/fake
      api_base: {provider}
      api_key: sk-dummy
litellm_settings:
  telemetry: false
general_settings:
  master_key: {key}
"""


def start_litellm(
    tmp: Path, provider: str, workers: int, executable: str | None
) -> tuple[subprocess.Popen[bytes] | None, Target | str]:
    """LiteLLM's proxy on the fake, or why not (absent, or it did not start)."""
    if executable is None:
        return None, "LiteLLM: skipped (--no-litellm)"
    if not Path(executable).exists():
        return None, (
            f"LiteLLM: skipped, no proxy at {executable} (set BENCH_LITELLM; bench/README.md"
            " says how to install it)"
        )
    config = tmp / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(provider=provider, key=LITELLM_KEY))
    env = without_proxies(dict(os.environ))
    env.update(
        LITELLM_LOG="ERROR",
        LITELLM_OFFLINE_MODE="true",  # nothing fetched: cost map, blog posts, templates
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    port = bench_api.free_port()
    argv = [executable, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        argv += ["--num_workers", str(workers)]
    log = tmp / "litellm.log"
    process = start(argv, env, log, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    problem = ready(f"{base}/health/liveliness", process, log, 180)
    if problem:
        return process, f"LiteLLM: skipped, the proxy {problem}"
    auth = {"Authorization": f"Bearer {LITELLM_KEY}"}
    return process, Target("litellm", f"{base}/v1/chat/completions", auth, "fake", process.pid)


# ---------------------------------------------------------------- the client


class Failed(Exception):
    """A call that did not answer as the fake would: the run is not measuring what it says."""


async def call(session: aiohttp.ClientSession, target: Target, body: bytes) -> float:
    """One non-streaming call; its latency, send to the whole answer."""
    started = time.perf_counter()
    async with session.post(target.url, data=body, headers=target.headers) as response:
        payload = await response.read()
        elapsed = time.perf_counter() - started
    if response.status != 200:
        raise Failed(f"{target.name}: HTTP {response.status} {payload[:200]!r}")
    return elapsed


async def stream(session: aiohttp.ClientSession, target: Target, body: bytes) -> float:
    """One streaming call; the time to the first chunk that carries text. The stream is
    read to its end and must join to the fake's text and end with ``data: [DONE]``."""
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    done = False
    async with session.post(target.url, data=body, headers=target.headers) as response:
        if response.status != 200:
            raise Failed(f"{target.name}: HTTP {response.status} {(await response.read())[:200]!r}")
        async for line in response.content:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            for choice in json.loads(data).get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if first is None:
                        first = time.perf_counter() - started
                    parts.append(text)
    if first is None or not done or "".join(parts) != STREAM_TEXT:
        raise Failed(
            f"{target.name}: stream {''.join(parts)!r}, [DONE] {'seen' if done else 'missing'}"
        )
    return first


Caller = Callable[[aiohttp.ClientSession, Target, bytes], Awaitable[float]]


def session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=60),
        headers={"Content-Type": "application/json"},  # as the SDKs send it
    )


async def interleaved(
    targets: list[Target], caller: Caller, calls: int, warmup: int, block: int, *, streaming: bool
) -> tuple[dict[str, list[float]], dict[str, float | None]]:
    """``calls`` calls to each target on one kept-alive connection of its own, one call
    at a time, in blocks of ``block`` calls to one target, the targets in turn (the
    order rotating each round): the machine's drift reaches all of them alike, and
    each is measured warm (one call at a time between LiteLLM's, which spends 10 ms
    and more of CPU a call, a fast path runs with its caches cold: Grove's added p50
    measured call by call was twice what it is in blocks). Returns each target's
    figures, and the CPU seconds each target's server spent per call."""
    sessions = [session(1) for _ in targets]
    bodies = [target.body(stream=streaming) for target in targets]
    figures: dict[str, list[float]] = {target.name: [] for target in targets}
    try:
        for _ in range(warmup):
            for sess, target, body in zip(sessions, targets, bodies, strict=True):
                await caller(sess, target, body)
        before = {t.name: bench_api.cpu_seconds(t.pid) if t.pid else None for t in targets}
        order = list(range(len(targets)))
        for first in range(0, calls, block):
            turn = (first // block) % len(order)
            for k in order[turn:] + order[:turn]:
                for _ in range(min(block, calls - first)):
                    figures[targets[k].name].append(
                        await caller(sessions[k], targets[k], bodies[k])
                    )
        after = {t.name: bench_api.cpu_seconds(t.pid) if t.pid else None for t in targets}
    finally:
        for sess in sessions:
            await sess.close()
    cpu: dict[str, float | None] = {}
    for name, spent in before.items():
        end = after[name]
        # the fake behind "direct" serves every target's calls, the others their own
        served = calls * len(targets) if name == "direct" else calls
        cpu[name] = (end - spent) / served if spent is not None and end is not None else None
    return figures, cpu


@dataclasses.dataclass
class Rate:
    """One closed-loop run: answers, failures, how long, and each answer's latency."""

    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


async def closed_loop(target: Target, seconds: float, concurrency: int) -> Rate:
    """``concurrency`` connections each sending the next call as soon as the last one is
    answered, for ``seconds`` after the connections are open."""
    body = target.body(stream=False)
    latencies: list[float] = []
    errors = 0
    async with session(concurrency) as sess:
        await asyncio.gather(*(call(sess, target, body) for _ in range(concurrency)))
        end = time.perf_counter() + seconds

        async def connection() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                try:
                    latencies.append(await call(sess, target, body))
                except (Failed, aiohttp.ClientError, TimeoutError):
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Rate(len(latencies), errors, elapsed, latencies)


def run(coroutine: Awaitable[Any]) -> Any:
    try:
        import uvloop  # installed with uvicorn[standard]: a lighter load client
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    return uvloop.run(coroutine)  # type: ignore[arg-type]


def probe(target: Target) -> str | None:
    """None when ``target`` answers a plain and a streaming call as the fake would."""

    async def both() -> None:
        async with session(1) as sess:
            await call(sess, target, target.body(stream=False))
            await stream(sess, target, target.body(stream=True))

    try:
        run(both())
    except (Failed, aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return f"{target.name}: skipped, a first call failed: {exc}"
    return None


# ---------------------------------------------------------------- the report


pct = bench_api.pct


def latency_table(
    title: str, figures: dict[str, list[float]], cpu: dict[str, float | None]
) -> None:
    print(title)
    for name, values in figures.items():
        p50, p99 = pct(values, 0.5) * MS, pct(values, 0.99) * MS
        line = f"  {name:<8} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms"
        if name != "direct":
            added50, added99 = added(figures, name, 0.5), added(figures, name, 0.99)
            line += f"   added p50 {added50:7.3f} ms  p99 {added99:7.3f} ms"
        if cpu.get(name) is not None:
            what = "the fake's" if name == "direct" else "server"
            line += f"   {what} CPU {cpu[name] * MS:6.3f} ms/call"  # type: ignore[operator]
        print(line)


def added(figures: dict[str, list[float]], name: str, q: float = 0.5) -> float | None:
    """What ``name`` adds to the direct call at quantile ``q``, in ms (None: not measured)."""
    if name not in figures:
        return None
    return (pct(figures[name], q) - pct(figures["direct"], q)) * MS


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def goals(
    plain: dict[str, list[float]], streams: dict[str, list[float]], rates: dict[str, float]
) -> None:
    print("goals (issue 18):")
    grove, litellm = added(plain, "grove"), added(plain, "litellm")
    if grove is None or litellm is None:
        print("  added p50 <= 1/3 of LiteLLM's: not measured (needs both Grove and LiteLLM)")
    else:
        share = grove / litellm if litellm > 0 else float("inf")
        print(
            f"  added p50: Grove {grove:.3f} ms, LiteLLM {litellm:.3f} ms, Grove/LiteLLM"
            f" {share:.3f} (goal <= {ADDED_P50_GOAL:.3f}): {verdict(share <= ADDED_P50_GOAL)}"
        )
    if "grove" not in rates or "litellm" not in rates:
        print("  throughput >= 2x LiteLLM's: not measured (needs both Grove and LiteLLM)")
    else:
        times = rates["grove"] / rates["litellm"]
        print(
            f"  throughput: Grove {rates['grove']:.0f} req/s, LiteLLM {rates['litellm']:.0f}"
            f" req/s, {times:.2f}x (goal >= {THROUGHPUT_GOAL:.0f}x):"
            f" {verdict(times >= THROUGHPUT_GOAL)}"
        )
    ttfc = added(streams, "grove")
    if ttfc is None:
        print("  time to first chunk added < 1 ms p50: not measured (Grove did not stream)")
    else:
        print(
            f"  time to first chunk added: Grove p50 {ttfc:.3f} ms (goal < {TTFC_GOAL_MS:.0f} ms):"
            f" {verdict(ttfc < TTFC_GOAL_MS)}"
        )


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="one connection: calls per server")
    parser.add_argument("--stream-calls", type=int, default=1000, help="streams per server")
    parser.add_argument("--warmup", type=int, default=200, help="calls per server before timing")
    parser.add_argument(
        "--block", type=int, default=100, help="calls to one server before the next's turn"
    )
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput: seconds a run")
    parser.add_argument("--repeat", type=int, default=3, help="throughput: rounds of the three")
    parser.add_argument("--gap-ms", type=float, default=2.0, help="fake: first word to the rest")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes, Grove's and LiteLLM's"
    )
    parser.add_argument(
        "--litellm",
        default=os.environ.get("BENCH_LITELLM", LITELLM_DEFAULT),
        help="LiteLLM's proxy executable ($BENCH_LITELLM)",
    )
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument(
        "--profile", type=Path, help="run Grove under cProfile (one worker) and print its top calls"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of a few seconds (besides start-up)"
    )
    args = parser.parse_args()
    if args.quick:
        args.calls, args.stream_calls, args.warmup, args.block = 200, 100, 20, 20
        args.seconds, args.repeat = 1.0, 1
    if args.profile is not None and args.workers != 1:
        parser.error("--profile needs --workers 1")
    return args


def main() -> None:
    args = options()
    tmp = Path(tempfile.mkdtemp(prefix="grove-bench-gateway-"))
    fake, provider = start_fake(args.gap_ms)
    processes: list[subprocess.Popen[bytes]] = []
    skipped: list[str] = []
    try:
        targets = [
            Target(
                "direct",
                f"{provider}/chat/completions",
                {"Authorization": "Bearer sk-fake"},
                "fake",
                fake.pid,
            )
        ]
        grove_tmp = tmp / "grove"
        grove_tmp.mkdir()
        for process, outcome in (
            start_grove(grove_tmp, provider, args.workers, args.profile),
            start_litellm(tmp, provider, args.workers, None if args.no_litellm else args.litellm),
        ):
            if process is not None:
                processes.append(process)
            if isinstance(outcome, str):
                skipped.append(outcome)
            elif (problem := probe(outcome)) is not None:
                skipped.append(problem)
            else:
                targets.append(outcome)
        measure(args, targets, skipped)
    finally:
        for process in processes:
            stop(process)
        fake.terminate()
        fake.wait(timeout=30)
        if args.profile is not None:
            top_calls(args.profile)
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args: argparse.Namespace, targets: list[Target], skipped: list[str]) -> None:
    print(f"cpus={os.cpu_count()}  load average {os.getloadavg()[0]:.2f} at the start")
    for reason in skipped:
        print(reason)
    names = ", ".join(t.name for t in targets)
    plain, cpu = run(
        interleaved(targets, call, args.calls, args.warmup, args.block, streaming=False)
    )
    latency_table(
        f"one connection each, {args.calls:,} calls each, interleaved in blocks of {args.block}"
        f" ({names}), not streaming:",
        plain,
        cpu,
    )
    streams, stream_cpu = run(
        interleaved(targets, stream, args.stream_calls, args.warmup, args.block, streaming=True)
    )
    latency_table(
        f"streaming, {args.stream_calls:,} streams each, the same way: time to the first text chunk"
        f" (the fake sends the rest {args.gap_ms:g} ms later):",
        streams,
        stream_cpu,
    )
    rounds: dict[str, list[Rate]] = {t.name: [] for t in targets}
    for _ in range(args.repeat):
        for target in targets:
            rounds[target.name].append(run(closed_loop(target, args.seconds, args.concurrency)))
    print(
        f"{args.concurrency} connections as fast as answers come, {args.seconds:g} s a run,"
        f" {args.repeat} round(s) of {names} back to back (median round; latency of that round):"
    )
    rates: dict[str, float] = {}
    for name, runs in rounds.items():
        middle = sorted(runs, key=lambda r: r.per_second)[len(runs) // 2]
        rates[name] = middle.per_second
        every = " / ".join(f"{r.per_second:.0f}" for r in runs)
        errors = sum(r.errors for r in runs)
        print(
            f"  {name:<8} {middle.per_second:8.0f} req/s  (rounds {every})"
            f"  p50 {pct(middle.latencies, 0.5) * MS:6.2f} ms  p99"
            f" {pct(middle.latencies, 0.99) * MS:6.2f} ms  errors {errors}"
        )
    for name, rate in rates.items():
        if name != "direct":
            print(f"  {name} / direct: {rate / rates['direct']:.3f}")
    goals(plain, streams, rates)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


def top_calls(profile: Path) -> None:
    """Where Grove's time went: its own functions by time spent inside them, then
    Grove's code by cumulative time (start-up included; the calls dominate a full run)."""
    import pstats

    if not profile.exists():
        print(f"no profile at {profile} (Grove did not exit cleanly)")
        return
    print(f"Grove under cProfile ({profile}):")
    stats = pstats.Stats(str(profile))
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats("reconciler", 30)


if __name__ == "__main__":
    main()
