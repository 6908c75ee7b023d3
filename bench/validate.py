"""Benchmark: ``grove validate`` on a generated fleet of 1,000 models and 200 rules.

Runs the real command as a separate process (start-up included), several
times, and prints wall time, objects per second and peak memory (max RSS of
the child). In the same run it measures two baselines on the same files so
the figures can be read as ratios on this machine:

- ``python -c pass``: the floor any Python CLI pays to start;
- plain ``yaml.safe_load`` of every file with LibYAML and no checks at all:
  what "just parsing" costs.

Goal (issue 2): the whole grove validate process under 1.5 s and 150 MB.

    .venv/bin/python bench/validate.py [--models 1000] [--rules 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CAPS = ("reasoning", "creativity", "precision", "speed", "context")


def write_fleet(root: Path, models: int, rules: int) -> None:
    (root / "models").mkdir(parents=True)
    (root / "rules").mkdir(parents=True)
    for i in range(models):
        caps = "\n".join(
            f"    {c}: {((i * 7 + k * 13) % 100) / 100:.2f}" for k, c in enumerate(CAPS)
        )
        fallback = f"  fallbacks: [m{i + 1:05d}]\n" if i + 1 < models and i % 3 else ""
        mock = i % 4 == 0
        provider = (
            "  provider: mock\n  mock: {latencyMs: 10, failureRate: 0.0, reply: ok}\n"
            if mock
            else "  provider: openai-compatible\n  providerModel: model-x\n"
            "  endpoint: https://inference.example.com/v1\n  credentials: {env: INFERENCE_KEY}\n"
        )
        (root / "models" / f"m{i:05d}.yaml").write_text(
            "# yaml-language-server: $schema=../../schemas/AIModel.schema.json\n"
            f'meta:\n  id: m{i:05d}\n  type: AIModel\n  version: "{i % 9 + 1}"\n'
            f"  labels: {{team: t{i % 10}}}\n"
            f"payload:\n  name: Model {i}\n{provider}"
            f"  capabilities:\n{caps}\n  contextWindow: {32000 + i}\n"
            f"  pricing: {{inputPerMTok: {i % 5 + 0.5}, outputPerMTok: {i % 7 + 1.5}}}\n"
            f"  priority: {i % 1000}\n{fallback}  timeoutMs: 20000\n"
            "  slo: {minSuccessRate: 0.98, maxP95LatencyMs: 8000, minSamples: 50, windowS: 600}\n"
        )
    strategies = ("priority", "latency", "cost", "balanced")
    for j in range(rules):
        cap = CAPS[j % len(CAPS)]
        strategy = strategies[j % 4]
        weights = (
            "  weights: {capability: 0.6, latency: 0.2, cost: 0.2}\n"
            if strategy == "balanced"
            else ""
        )
        (root / "rules" / f"r{j:04d}.yaml").write_text(
            "# yaml-language-server: $schema=../../schemas/RoutingRule.schema.json\n"
            f'meta: {{id: r{j:04d}, type: RoutingRule, version: "1"}}\n'
            f"payload:\n  taskType: task-{j}\n  requires: [{cap}]\n  minScore: 0.5\n"
            f"  strategy: {strategy}\n{weights}"
            "  failover: {maxAttempts: 3, cooldownS: 30}\n"
        )


def timed(command: list[str], runs: int) -> tuple[list[float], float, int]:
    """Wall times, max RSS in MiB (largest child so far) and the last exit code."""
    times: list[float] = []
    code = 0
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
        code = done.returncode
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return times, peak_mib, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    grove = str(Path(sys.executable).parent / "grove")
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Path(tmp) / "fleet"
        write_fleet(fleet, args.models, args.rules)
        objects = args.models + args.rules
        size = sum(p.stat().st_size for p in fleet.rglob("*.yaml"))
        kib = size / 1024
        cpus = os.cpu_count()
        print(f"fleet: {args.models} models + {args.rules} rules, {kib:.0f} KiB, cpus={cpus}")

        floor, _, _ = timed([sys.executable, "-c", "pass"], args.runs)
        parse_only = (
            "import sys, pathlib, yaml\n"
            "for p in sorted(pathlib.Path(sys.argv[1]).rglob('*.yaml')):\n"
            "    yaml.load(p.read_bytes(), Loader=yaml.CSafeLoader)\n"
        )
        baseline, base_rss, _ = timed([sys.executable, "-c", parse_only, str(fleet)], args.runs)
        grove_times, grove_rss, code = timed([grove, "validate", str(fleet)], args.runs)
        if code != 0:
            raise SystemExit(f"grove validate exited {code} on the generated fleet")

    def line(label: str, times: list[float]) -> str:
        return (
            f"{label:<34} median {statistics.median(times) * 1000:7.1f} ms"
            f"   min {min(times) * 1000:7.1f} ms"
        )

    print(line("python -c pass (start-up floor)", floor))
    print(line("yaml.safe_load of every file", baseline) + f"   max RSS <= {base_rss:.0f} MiB")
    print(
        line("grove validate (whole process)", grove_times) + f"   max RSS <= {grove_rss:.0f} MiB"
    )
    median = statistics.median(grove_times)
    print(f"objects per second (whole process): {objects / median:,.0f}")
    print(
        f"ratio grove validate / parse-only baseline: {median / statistics.median(baseline):.2f}x"
    )
    verdict = "met" if median < 1.5 and grove_rss < 150 else "NOT met"
    print(f"goal: < 1500 ms and < 150 MiB -> {verdict}")
    alias_bomb(args.runs)


def alias_bomb(runs: int) -> None:
    """The billion-laughs file of the hostile corpus, refused in-process: time and memory."""
    import tracemalloc

    from reconciler.base import settings
    from reconciler.gitops import validating

    bomb = Path(__file__).resolve().parent.parent / "tests/loading/hostile/alias_bomb.yaml"
    config = settings.load()
    validating.validate_paths([str(bomb)], config)  # warm the imports
    times = []
    for _ in range(max(runs, 20)):
        started = time.perf_counter()
        report = validating.validate_paths([str(bomb)], config)
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    validating.validate_paths([str(bomb)], config)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    codes = sorted({d.code for d in report.errors})
    print(
        f"alias bomb ({bomb.stat().st_size} bytes, 10^9 expansions): refused with {codes} in "
        f"median {statistics.median(times) * 1000:.2f} ms, peak {peak / 1024:.0f} KiB "
        "(goal < 100 ms, < 20 MB)"
    )


if __name__ == "__main__":
    main()
