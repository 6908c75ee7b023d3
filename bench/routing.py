"""Benchmark: the router's decision latency, call overhead and failover time, against LiteLLM.

Four measurements, on generated fleets whose models can all serve the rules
(varied capability scores, priorities with ties, prices, timeouts and
fallbacks), with every model pointing at an OpenAI-compatible fake server on
loopback (``tests.routing.fakes.FakeProvider``, run in a child process so its
threads do not share this process's GIL with the code under test):

1. Decision latency of ``RoutingEngine.get_routing_decision`` for fleets of
   10, 100 and 1,000 models, for the priority, cost and latency strategies
   (latency with observed p95s fed for three models in four; LiteLLM's
   latency-based strategy below starts with none): p50 and p99 of
   ``time.perf_counter_ns`` around each call, thousands per size, after
   warm-up. Goal: p99 under 25 µs at every size, and flat as the fleet grows
   (read here as p50 at 1,000 at most 2x p50 at 10).
2. Baseline, same fleets: LiteLLM's Router with as many deployments in one
   model group (``openai/`` provider, ``api_base`` the loopback server),
   timing its pure selection, ``await router.select(group, kwargs)`` and the
   sync ``router.get_available_deployment(model=group)``, with its default
   simple-shuffle and its cost-based and latency-based strategies. Ratios use
   the faster of LiteLLM's two calls. The issue measured LiteLLM 1.110.2 at
   about 90 µs (10 deployments) and 4 ms (1,000), over 50 ms for cost-based at
   1,000. Goal: Grove at least 100 times faster at 1,000 models (speed-up =
   LiteLLM p50 / Grove p50).
3. Added cost of ``execute_with_failover`` over a direct ``aiohttp`` POST (the
   HTTP client Grove's providers use) of the same body to the same server (all
   pooled keep-alive clients in one event loop, calls interleaved): median and
   p99 per call. Goal: added median under 300 µs. A direct
   ``httpx.AsyncClient`` POST and LiteLLM's ``Router.acompletion`` on the same
   server are shown for reference.
4. Time to the fallback's answer when the primary's endpoint is a closed
   loopback port (connection refused) and the fallback is healthy, with the
   primary's circuit reset before every call so each call really meets the
   refused connection first. Goal: under 5 ms. Baseline: LiteLLM's Router with
   the same two endpoints as two model groups, ``fallbacks`` from primary to
   backup, ``num_retries=0`` and cooldowns disabled (so it too meets the
   refused port on every call).

5. Canary selection: what an open rollout adds to routing one request, the
   decision plus the version of the first attempt (``engine._versions``: the
   CRC-32 of the request id against the canary's weight), on the same fleet
   with every model under rollout and with none, interleaved, p50 and p99 of
   each and the difference. Goal: under 1 µs added.

Grove is measured before LiteLLM is imported, so nothing LiteLLM starts or
patches at import runs during Grove's figures. No network beyond loopback is
used: ``LITELLM_LOCAL_MODEL_COST_MAP=True`` keeps LiteLLM's cost map local, and
a guard in this process refuses (and counts) any socket connection or name
lookup that is not loopback.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/routing.py [--sizes 10,100,1000] [--decisions 3000] [--calls 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import ipaddress
import logging
import math
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.base import settings
from reconciler.manifests import kinds as manifests
from reconciler.routing import engine as routing
from reconciler.routing import snapshots
from tests.routing.conftest import ENV, model_doc, rule_doc, snapshot_of
from tests.routing.fakes import KEYS

ROOT = Path(__file__).resolve().parent.parent

STRATEGIES = ("priority", "cost", "latency")
LITELLM_STRATEGIES = {
    "priority": "simple-shuffle",
    "cost": "cost-based-routing",
    "latency": "latency-based-routing",
}
CAPS = ("creativity", "precision", "speed", "context")
GROUP = "fleet"
PROMPT = "hello"
MAX_TOKENS = 16
MESSAGES = [{"role": "user", "content": PROMPT}]
DECISION_GOAL_US = 25.0
SPEEDUP_GOAL = 100.0
OVERHEAD_GOAL_US = 300.0
FAILOVER_GOAL_MS = 5.0
SERVER_CHILD = (
    "import sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from tests.routing.fakes import FakeProvider\n"
    "server = FakeProvider('openai')\n"
    "print(server.port, flush=True)\n"
    "sys.stdin.read()\n"
    "server.close()\n"
)


# ---------------------------------------------------------------- loopback only


class Guard:
    """Refuses, and remembers, any connection or name lookup that leaves loopback."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self._connect = socket.socket.connect
        self._connect_ex = socket.socket.connect_ex
        self._getaddrinfo = socket.getaddrinfo

    def install(self) -> None:
        guard = self

        def connect(sock: socket.socket, address: Any) -> None:
            guard.check(address)
            guard._connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            guard.check(address)
            return guard._connect_ex(sock, address)

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host is not None and not _loopback_name(host):
                guard.refused.append(f"lookup {host!r}")
                raise socket.gaierror(socket.EAI_NONAME, "bench: only loopback names")
            return guard._getaddrinfo(host, *args, **kwargs)

        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo

    def check(self, address: Any) -> None:
        if isinstance(address, tuple) and not _loopback_name(address[0]):
            self.refused.append(f"connect {address[0]}:{address[1]}")
            raise OSError(101, "bench: only loopback connections")


def _loopback_name(host: Any) -> bool:
    text = host.decode() if isinstance(host, bytes) else str(host)
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@contextmanager
def fake_server() -> Iterator[str]:
    """The OpenAI-compatible FakeProvider in a child process; yields its base URL."""
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER_CHILD, str(ROOT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------- fleets


@dataclasses.dataclass(frozen=True)
class Spec:
    ident: str
    priority: int
    capabilities: dict[str, float]
    input_per_m: float
    output_per_m: float
    timeout_ms: int
    context_window: int
    fallbacks: tuple[str, ...]
    p95_ms: float | None  # observed latency fed to the engine, None: never observed
    provider_model: str


def fleet(size: int, *, seed: int = 5, max_priority: int = 1000) -> list[Spec]:
    rng = random.Random(seed)
    idents = [f"m{i:04d}" for i in range(size)]
    specs = []
    for number, ident in enumerate(idents):
        capabilities = {"reasoning": round(rng.uniform(0.5, 1.0), 2)}  # all serve minScore 0.5
        for cap in CAPS:
            if rng.random() < 0.7:
                capabilities[cap] = round(rng.uniform(0.1, 1.0), 2)
        price = round(rng.uniform(0.1, 15.0), 2)
        others = [i for i in idents if i != ident]
        fallbacks = tuple(rng.sample(others, min(2, len(others)))) if rng.random() < 0.3 else ()
        specs.append(
            Spec(
                ident=ident,
                priority=min(max_priority, 10 * rng.randint(0, 100)),  # ties, as in real fleets
                capabilities=capabilities,
                input_per_m=price,
                output_per_m=round(price * rng.choice((2, 3, 4, 5)), 2),
                timeout_ms=rng.choice((10_000, 20_000, 30_000, 60_000)),
                context_window=rng.choice((8_192, 32_768, 128_000, 200_000, 1_000_000)),
                fallbacks=fallbacks,
                p95_ms=round(rng.uniform(150, 4000), 1) if rng.random() < 0.75 else None,
                provider_model=f"model-{number % 20}",
            )
        )
    return specs


def grove_doc(spec: Spec, url: str) -> dict[str, Any]:
    return model_doc(
        spec.ident,
        SimpleNamespace(kind="openai", url=url),  # type: ignore[arg-type]
        priority=spec.priority,
        capabilities=spec.capabilities,
        providerModel=spec.provider_model,
        pricing={"inputPerMTok": spec.input_per_m, "outputPerMTok": spec.output_per_m},
        timeoutMs=spec.timeout_ms,
        contextWindow=spec.context_window,
        fallbacks=list(spec.fallbacks),
    )


def rules() -> list[dict[str, Any]]:
    return [
        rule_doc(f"route-{strategy}", requires=["reasoning"], minScore=0.5, strategy=strategy)
        for strategy in STRATEGIES
    ]


def engine_for(documents: list[dict[str, Any]]) -> routing.RoutingEngine:
    engine = routing.RoutingEngine(settings.load(), None, write_logs=False)
    engine.use_snapshot(snapshot_of(*documents))
    return engine


def litellm_deployment(spec: Spec, url: str, group: str = GROUP) -> dict[str, Any]:
    return {
        "model_name": group,
        "litellm_params": {
            "model": f"openai/{spec.provider_model}",
            "api_base": url,
            "api_key": KEYS["openai"],
            "input_cost_per_token": spec.input_per_m / 1e6,
            "output_cost_per_token": spec.output_per_m / 1e6,
            "timeout": spec.timeout_ms / 1000,
        },
        "model_info": {"id": spec.ident},
    }


# ---------------------------------------------------------------- statistics


@dataclasses.dataclass(frozen=True)
class Series:
    samples_ns: list[int]

    @property
    def n(self) -> int:
        return len(self.samples_ns)

    def pct_us(self, q: float) -> float:
        ordered = sorted(self.samples_ns)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] / 1000

    @property
    def p50_us(self) -> float:
        return statistics.median(self.samples_ns) / 1000

    @property
    def p99_us(self) -> float:
        return self.pct_us(0.99)

    def text(self, unit: str = "us") -> str:
        scale = 1000 if unit == "ms" else 1
        return (
            f"p50 {self.p50_us / scale:9.{2 if unit == 'ms' else 1}f} {unit}  "
            f"p99 {self.p99_us / scale:9.{2 if unit == 'ms' else 1}f} {unit}  (n={self.n})"
        )


def sample_sync(call: Callable[[], object], *, count: int, budget_s: float, warmup: int) -> Series:
    for _ in range(warmup):
        call()
    samples: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(budget_s * 1e9)
    while len(samples) < count:
        started = clock()
        call()
        ended = clock()
        samples.append(ended - started)
        if ended > deadline and len(samples) >= 20:
            break
    return Series(samples)


async def sample_async(
    call: Callable[[], Awaitable[object]], *, count: int, budget_s: float, warmup: int
) -> Series:
    for _ in range(warmup):
        await call()
    samples: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(budget_s * 1e9)
    while len(samples) < count:
        started = clock()
        await call()
        ended = clock()
        samples.append(ended - started)
        if ended > deadline and len(samples) >= 20:
            break
    return Series(samples)


# ---------------------------------------------------------------- 1. Grove decisions


def grove_decisions(
    sizes: list[int], url: str, count: int, budget_s: float
) -> dict[tuple[int, str], Series]:
    print("1. Grove decisions: RoutingEngine.get_routing_decision, one rule per strategy")
    results: dict[tuple[int, str], Series] = {}
    for size in sizes:
        specs = fleet(size)
        engine = engine_for([*(grove_doc(s, url) for s in specs), *rules()])
        for spec in specs:
            if spec.p95_ms is not None:
                key = engine.live_version(spec.ident)  # latencies belong to versions
                for k in range(20):
                    engine.stats.add(key, spec.p95_ms * (0.6 + 0.02 * k))
        started = time.perf_counter()
        engine.table()
        built_ms = (time.perf_counter() - started) * 1000
        print(f"   {size:>5} models: routing table built from the snapshot in {built_ms:.1f} ms")
        for strategy in STRATEGIES:
            request = routing.TaskRequest(task_type=f"route-{strategy}")
            decision = engine.get_routing_decision(request)
            # The chain holds maxAttempts + 2 models at most; the rest are explained on demand.
            assert decision.model_id is not None and decision.chain, decision.reason
            assert len(decision.candidates) == size
            series = sample_sync(
                functools.partial(engine.get_routing_decision, request),
                count=count,
                budget_s=budget_s,
                warmup=min(200, count),
            )
            results[(size, strategy)] = series
            print(f"   {size:>5} models  {strategy:<8}  {series.text()}", flush=True)
    return results


# ---------------------------------------------------------------- 5. canary selection


def canary_selection(url: str, size: int, count: int) -> tuple[Series, Series]:
    """Decision + first version, for a fleet with every model split 10 % to a canary
    and for the same fleet with none, interleaved (the same request ids for both)."""
    documents = [*(grove_doc(s, url) for s in fleet(size)), *rules()]
    plain = engine_for(documents)
    split = engine_for(documents)
    current = split.snapshots.current if split.snapshots else split._fixed
    canaries = {}
    for ident, model in current.models.items():
        document = manifests.to_document(model)
        document["meta"]["version"] = "0"  # the stable version: another content
        stable = manifests.parse_document(document, allow_local_endpoints=True)
        assert isinstance(stable, manifests.AIModel)
        canaries[ident] = snapshots.Canary(stable, 10)
    split.use_snapshot(dataclasses.replace(current, canaries=MappingProxyType(canaries)))
    assert len(split.table().splits) == size and not plain.table().splits
    request_ids = [str(uuid.uuid4()) for _ in range(4096)]
    request = routing.TaskRequest(task_type="route-priority")

    def first(engine: routing.RoutingEngine, request_id: str) -> object:
        decision = engine.get_routing_decision(request)
        table = engine.table()
        return next(routing._versions(decision.chain, table, table.splits, request_id))

    samples: dict[bool, list[int]] = {False: [], True: []}
    clock = time.perf_counter_ns
    canary_share = 0
    for i in range(count + 500):
        request_id = request_ids[i % len(request_ids)]
        for engine, key in ((plain, False), (split, True))[:: 1 if i % 2 else -1]:
            started = clock()
            chosen = first(engine, request_id)
            elapsed = clock() - started
            if i >= 500:  # after warm-up
                samples[key].append(elapsed)
                if key:
                    canary_share += chosen[2].version != "0"  # type: ignore[index]
    print(f"   canary share of the first attempts: {100 * canary_share / count:.1f} % (weight 10)")
    return Series(samples[False]), Series(samples[True])


# ---------------------------------------------------------------- 3. call overhead


async def call_overhead(
    url: str, size: int, calls: int
) -> tuple[Series, Series, Series, dict[str, Any], str]:
    """Interleaved: direct aiohttp and httpx POSTs and execute_with_failover (rotating order)."""
    engine = engine_for([*(grove_doc(s, url) for s in fleet(size)), *rules()])
    request = routing.TaskRequest(task_type="route-priority", prompt=PROMPT, max_tokens=MAX_TOKENS)
    primary = engine.table().models[engine.get_routing_decision(request).model_id or ""]
    payload = {
        "model": primary.payload.provider_model,
        "messages": MESSAGES,
        "max_tokens": MAX_TOKENS,
    }
    headers = {"Authorization": f"Bearer {KEYS['openai']}"}
    endpoint = f"{url}/chat/completions"
    aiohttp_ns: list[int] = []
    httpx_ns: list[int] = []
    grove_ns: list[int] = []
    clock = time.perf_counter_ns
    async with (
        aiohttp.ClientSession() as session,
        httpx.AsyncClient(trust_env=False, timeout=60.0) as client,
    ):

        async def direct_aiohttp() -> str:
            async with session.post(endpoint, json=payload, headers=headers) as response:
                response.raise_for_status()
                answer = await response.json()
            return str(answer["choices"][0]["message"]["content"])

        async def direct_httpx() -> str:
            response = await client.post(endpoint, json=payload, headers=headers)
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"])

        async def grove() -> str:
            return (await engine.execute_with_failover(request)).text

        order = [(direct_aiohttp, aiohttp_ns), (direct_httpx, httpx_ns), (grove, grove_ns)]
        try:
            for _ in range(min(200, calls)):
                for call, _samples in order:
                    await call()
            for i in range(calls):
                for call, samples in order[i % 3 :] + order[: i % 3]:
                    started = clock()
                    text = await call()
                    samples.append(clock() - started)
                    assert text == "fake answer", text
        finally:
            await engine.providers.aclose()
    return Series(aiohttp_ns), Series(httpx_ns), Series(grove_ns), payload, primary.id


# ---------------------------------------------------------------- 4. failover


async def failover_time(url: str, calls: int) -> tuple[Series, Series]:
    """Primary on a refused port, healthy fallback; the primary's circuit reset each call."""
    refused = f"http://127.0.0.1:{closed_port()}/v1"
    others = fleet(10, seed=7, max_priority=900)[2:]
    documents = [
        grove_doc(
            dataclasses.replace(fleet(1)[0], ident="primary", priority=1000, fallbacks=()),
            refused,
        ),
        grove_doc(dataclasses.replace(fleet(1)[0], ident="fallback", priority=990), url),
        *(grove_doc(s, url) for s in others),
        *rules(),
    ]
    engine = engine_for(documents)
    request = routing.TaskRequest(task_type="route-priority", prompt=PROMPT, max_tokens=MAX_TOKENS)
    assert engine.get_routing_decision(request).chain[:2] == ("primary", "fallback")

    primary = engine.live_version("primary")  # circuits belong to versions

    async def once() -> None:
        engine.breakers.success(primary)
        response = await engine.execute_with_failover(request)
        assert response.model_id == "fallback", response.model_id

    async with aiohttp.ClientSession() as session:

        async def refused_alone() -> None:
            try:
                async with session.post(f"{refused}/chat/completions", json={}):
                    pass
            except aiohttp.ClientConnectorError:
                return
            raise AssertionError("the closed port answered")

        try:
            grove = await sample_async(once, count=calls, budget_s=60, warmup=20)
            connect = await sample_async(refused_alone, count=calls, budget_s=60, warmup=20)
        finally:
            await engine.providers.aclose()
    return grove, connect


# ---------------------------------------------------------------- 2. LiteLLM


def load_litellm() -> Any:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    try:
        import litellm
    except ImportError:
        return None
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    litellm.disable_hf_tokenizer_download = True
    litellm.success_callback = []
    litellm.failure_callback = []
    litellm.callbacks = []
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return litellm


def litellm_version() -> str:
    from importlib.metadata import version

    return version("litellm")


async def litellm_picks(
    litellm: Any, sizes: list[int], url: str, count: int, budget_s: float
) -> dict[tuple[int, str], tuple[Series, Series | None, float]]:
    print(f"2. LiteLLM {litellm_version()} Router picks, one model group of N deployments")
    results: dict[tuple[int, str], tuple[Series, Series | None, float]] = {}
    for size in sizes:
        model_list = [litellm_deployment(s, url) for s in fleet(size)]
        for strategy in STRATEGIES:
            name = LITELLM_STRATEGIES[strategy]
            started = time.perf_counter()
            router = litellm.Router(model_list=model_list, routing_strategy=name, num_retries=0)
            built_s = time.perf_counter() - started
            picked = await router.select(GROUP, {"messages": MESSAGES})
            assert picked["model_info"]["id"].startswith("m"), picked
            selected = await sample_async(
                lambda router=router: router.select(GROUP, {"messages": MESSAGES}),
                count=count,
                budget_s=budget_s,
                warmup=5,
            )
            sync: Series | None
            try:
                router.get_available_deployment(model=GROUP, messages=MESSAGES)
            except Exception as exc:
                sync = None
                why = f"sync pick n/a ({type(exc).__name__})"
            else:
                sync = sample_sync(
                    lambda router=router: router.get_available_deployment(
                        model=GROUP, messages=MESSAGES
                    ),
                    count=count,
                    budget_s=budget_s,
                    warmup=5,
                )
                why = ""
            results[(size, strategy)] = (selected, sync, built_s)
            print(
                f"   {size:>5} deployments  {name:<22} select {selected.text()}"
                f"   (Router built in {built_s:.2f} s)",
                flush=True,
            )
            print(
                f"   {'':>5}              {'':<22} sync   "
                + (sync.text() if sync is not None else why),
                flush=True,
            )
            router.retire()
    return results


async def litellm_calls(litellm: Any, url: str, calls: int) -> tuple[Series, Series]:
    """LiteLLM's acompletion on a healthy deployment, and its fallback from a refused port."""
    spec = fleet(1)[0]
    refused = f"http://127.0.0.1:{closed_port()}/v1"
    router = litellm.Router(
        model_list=[
            litellm_deployment(spec, refused, "primary"),
            litellm_deployment(dataclasses.replace(spec, ident="backup"), url, "backup"),
        ],
        fallbacks=[{"primary": ["backup"]}],
        num_retries=0,
        disable_cooldowns=True,
    )

    def call(group: str) -> Callable[[], Awaitable[None]]:
        async def once() -> None:
            response = await router.acompletion(
                model=group, messages=MESSAGES, max_tokens=MAX_TOKENS
            )
            assert response.choices[0].message.content == "fake answer"

        return once

    try:
        healthy = await sample_async(call("backup"), count=calls, budget_s=30, warmup=10)
        failover = await sample_async(call("primary"), count=calls, budget_s=30, warmup=10)
    finally:
        router.retire()
        try:
            from litellm.llms.custom_httpx.async_client_cleanup import (
                close_litellm_async_clients,
            )

            await close_litellm_async_clients()
        except Exception as exc:  # cleanup only
            print(f"   (LiteLLM clients not closed: {type(exc).__name__})")
    return healthy, failover


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--decisions", type=int, default=3000, help="per size and strategy")
    parser.add_argument("--decision-budget-s", type=float, default=15.0)
    parser.add_argument("--picks", type=int, default=2000, help="LiteLLM picks per series")
    parser.add_argument("--pick-budget-s", type=float, default=3.0)
    parser.add_argument("--calls", type=int, default=3000, help="calls for the overhead")
    parser.add_argument("--failovers", type=int, default=300)
    parser.add_argument("--no-litellm", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    guard = Guard()
    guard.install()
    os.environ["GROVE_ALLOW_LOCAL_ENDPOINTS"] = "true"
    os.environ.pop(routing.OVERRIDE_VARIABLE, None)
    os.environ[ENV["openai"]] = KEYS["openai"]
    print(
        f"python {platform.python_version()}, cpus={os.cpu_count()}, "
        f"{platform.machine()}, fake OpenAI server in a child process on loopback"
    )

    with tempfile.TemporaryDirectory(prefix="grove-bench-") as data, fake_server() as url:
        os.environ["GROVE_DATA_DIR"] = data  # the engines have no database: nothing is written
        decisions = grove_decisions(sizes, url, args.decisions, args.decision_budget_s)
        print()
        print("3. Call overhead: execute_with_failover vs a direct aiohttp POST, same server")
        overheads = {}
        # The largest fleet pays its decision on every call: fewer calls there.
        plan = {min(sizes): args.calls, max(sizes): max(100, args.calls // 6)}
        for size, calls in plan.items():
            direct, via_httpx, grove, payload, primary = asyncio.run(
                call_overhead(url, size, calls)
            )
            overheads[size] = (direct, grove)
            print(f"   fleet of {size} (primary {primary}, body {payload})")
            print(f"   direct aiohttp session.post      {direct.text()}")
            print(f"   direct httpx.AsyncClient.post    {via_httpx.text()}")
            print(f"   Grove execute_with_failover      {grove.text()}")
            print(
                f"   added: median {grove.p50_us - direct.p50_us:7.1f} us, "
                f"p99 {grove.p99_us - direct.p99_us:7.1f} us",
                flush=True,
            )
        print()
        print("4. Failover: primary on a refused loopback port, healthy fallback")
        failover, connect = asyncio.run(failover_time(url, args.failovers))
        print(f"   refused connect alone (aiohttp) {connect.text('ms')}")
        print(f"   Grove answer from the fallback  {failover.text('ms')}", flush=True)

        print()
        print("5. Canary selection: decision + first version, every model under rollout vs none")
        canary_cost: dict[int, tuple[Series, Series]] = {}
        for size in sizes:
            without, with_split = canary_selection(url, size, args.decisions)
            canary_cost[size] = (without, with_split)
            print(f"   {size:>5} models  no rollout   {without.text()}")
            print(f"   {size:>5} models  all split    {with_split.text()}")
            print(
                f"   {size:>5} models  added: p50 {with_split.p50_us - without.p50_us:6.2f} us, "
                f"p99 {with_split.p99_us - without.p99_us:6.2f} us (goal: p50 under 1 us)",
                flush=True,
            )

        litellm = None if args.no_litellm else load_litellm()
        picks: dict[tuple[int, str], tuple[Series, Series | None, float]] = {}
        lite_calls: tuple[Series, Series] | None = None
        print()
        if litellm is None:
            print("2. LiteLLM skipped (not installed: pip install -e '.[bench]', or --no-litellm)")
        else:
            picks = asyncio.run(litellm_picks(litellm, sizes, url, args.picks, args.pick_budget_s))
            print()
            print("   LiteLLM calls on the same server, for parts 3 and 4")
            lite_calls = asyncio.run(litellm_calls(litellm, url, args.failovers))
            print(f"   acompletion, healthy deployment  {lite_calls[0].text('ms')}")
            print(f"   acompletion, fallback from refused primary  {lite_calls[1].text('ms')}")

    summary(sizes, decisions, picks, overheads, failover, lite_calls)
    print(f"non-loopback connections or lookups refused by the guard: {len(guard.refused)}")
    for line in guard.refused[:10]:
        print(f"   {line}")


def summary(
    sizes: list[int],
    decisions: dict[tuple[int, str], Series],
    picks: dict[tuple[int, str], tuple[Series, Series | None, float]],
    overheads: dict[int, tuple[Series, Series]],
    failover: Series,
    lite_calls: tuple[Series, Series] | None,
) -> None:
    print()
    print("Summary")
    for strategy in STRATEGIES:
        for size in sizes:
            grove = decisions[(size, strategy)]
            line = (
                f"   {strategy:<8} {size:>5} models: Grove p50 {grove.p50_us:8.1f} us "
                f"p99 {grove.p99_us:8.1f} us"
            )
            if (size, strategy) in picks:
                selected, sync, _ = picks[(size, strategy)]
                best = min(
                    [selected] + ([sync] if sync is not None else []), key=lambda s: s.p50_us
                )
                line += (
                    f" | LiteLLM {LITELLM_STRATEGIES[strategy]} p50 {best.p50_us:9.1f} us"
                    f" | Grove/LiteLLM {grove.p50_us / best.p50_us:7.4f}"
                    f" (speed-up {best.p50_us / grove.p50_us:6.1f}x)"
                )
            print(line)
    worst = max(decisions.values(), key=lambda s: s.p99_us)
    verdict = "met" if worst.p99_us < DECISION_GOAL_US else "NOT met"
    print(
        f"goal decision p99 < {DECISION_GOAL_US:g} us at every size: worst "
        f"{worst.p99_us:.1f} us -> {verdict}"
    )
    if len(sizes) > 1:
        small, big = min(sizes), max(sizes)
        for strategy in STRATEGIES:
            growth = decisions[(big, strategy)].p50_us / decisions[(small, strategy)].p50_us
            flat = "flat" if growth <= 2 else "NOT flat"
            print(f"   {strategy:<8} p50 at {big} / p50 at {small}: {growth:.1f}x -> {flat}")
    if picks and 1000 in sizes:
        speedups = []
        for strategy in STRATEGIES:
            selected, sync, _ = picks[(1000, strategy)]
            best = min([selected] + ([sync] if sync is not None else []), key=lambda s: s.p50_us)
            speedups.append(best.p50_us / decisions[(1000, strategy)].p50_us)
        verdict = "met" if min(speedups) >= SPEEDUP_GOAL else "NOT met"
        print(
            f"goal Grove >= {SPEEDUP_GOAL:g}x faster than LiteLLM at 1,000 models: "
            + ", ".join(f"{s}: {x:.1f}x" for s, x in zip(STRATEGIES, speedups, strict=True))
            + f" -> {verdict}"
        )
    for size, (direct, grove) in overheads.items():
        added = grove.p50_us - direct.p50_us
        verdict = "met" if added < OVERHEAD_GOAL_US else "NOT met"
        print(
            f"goal added median < {OVERHEAD_GOAL_US:g} us over direct aiohttp (fleet of {size}): "
            f"{added:.1f} us -> {verdict}"
        )
    if lite_calls is not None:
        direct = overheads[min(overheads)][0]
        print(
            f"   (LiteLLM acompletion adds {lite_calls[0].p50_us - direct.p50_us:.0f} us "
            "over the same direct aiohttp median)"
        )
    verdict = "met" if failover.p99_us / 1000 < FAILOVER_GOAL_MS else "NOT met"
    print(
        f"goal failover answer < {FAILOVER_GOAL_MS:g} ms (judged on p99): "
        f"median {failover.p50_us / 1000:.2f} ms, "
        f"p99 {failover.p99_us / 1000:.2f} ms -> {verdict}"
        + (
            f"; LiteLLM median {lite_calls[1].p50_us / 1000:.2f} ms "
            f"({lite_calls[1].p50_us / failover.p50_us:.1f}x Grove's)"
            if lite_calls is not None
            else ""
        )
    )


if __name__ == "__main__":
    main()
