"""Benchmark: reconcile fleets of 100 to 100,000 models on SQLite and PostgreSQL.

For each size and backend, in this process, through the same Reconciler the
CLI uses (so Python start-up is not counted; the watch loop pays it once):

- cold apply: an empty registry to the whole fleet (plan + apply);
- no-op: reconcile the same revision again;
- one change: a commit that bumps one model's version, reconciled (the median
  of ``--repeats``; a new Reconciler each cycle, as the CLI makes one, in one
  process, as the loop is: the fleet it kept from the last plan is reused);
- full: the same one change planned with ``full=True`` (every file read from
  git and checked against every live object: the loop's periodic full check).

Generating the fleet and its git repository is not timed. Baseline, measured in
the same run: parsing every manifest of the fleet with plain ``yaml.safe_load``
(LibYAML) and nothing else, i.e. the floor of a reconciler that re-reads
everything each cycle. Goals: no-op < 50 ms and one change < 500 ms at 1,000
models, cold apply of 1,000 < 3 s on SQLite, and 10,000 costing at most 12
times 1,000 (issue 3); a one-model change at 10,000 at most twice the 1,000
figure and under 100 ms on SQLite (issue 15). Fleets over the default caps
(50,000 files) are read with the caps raised.

    .venv/bin/python bench/reconcile.py [--sizes 100,1000,10000,100000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.base import settings
from reconciler.gitops import fleets, reconciling
from reconciler.store import migrating
from reconciler.store.engine import Database

GIT = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@grove.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@grove.invalid",
}
CAPS = ("reasoning", "creativity", "precision", "speed", "context")
PG_ADMIN = os.environ.get(
    "GROVE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def model(i: int, version: int = 1) -> str:
    caps = ", ".join(f"{c}: {((i * 7 + k * 13) % 90 + 10) / 100:.2f}" for k, c in enumerate(CAPS))
    fallback = f"\n  fallbacks: [m{i + 1:05d}]" if i % 3 == 1 else ""
    meta = f'{{id: m{i:05d}, type: AIModel, version: "{version}", labels: {{team: t{i % 10}}}}}'
    pricing = f"{{inputPerMTok: {i % 5 + 0.5}, outputPerMTok: 2}}"
    return (
        f"meta: {meta}\n"
        f"payload:\n  name: Model {i}\n  provider: mock\n  capabilities: {{{caps}}}\n"
        f"  contextWindow: {32000 + i}\n  pricing: {pricing}\n"
        f"  priority: {i % 1000}{fallback}\n"
    )


def rule(j: int) -> str:
    strategy = ("priority", "latency", "cost", "balanced")[j % 4]
    return (
        f'meta: {{id: r{j:04d}, type: RoutingRule, version: "1"}}\n'
        f"payload:\n  taskType: task-{j}\n  requires: [{CAPS[j % 5]}]\n  minScore: 0.3\n"
        f"  strategy: {strategy}\n"
    )


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=root,
        env={**os.environ, **GIT},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def build_repo(root: Path, models: int) -> None:
    (root / "manifests" / "models").mkdir(parents=True)
    (root / "manifests" / "rules").mkdir(parents=True)
    for i in range(models):
        (root / "manifests" / "models" / f"m{i:05d}.yaml").write_text(model(i))
    for j in range(max(1, models // 10)):
        (root / "manifests" / "rules" / f"r{j:04d}.yaml").write_text(rule(j))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "fleet")


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def cycle(
    config: settings.Settings, db: Database, *, full: bool = False
) -> reconciling.CycleOutcome:
    reconciler = reconciling.Reconciler(config, reconciling.open_source(config), db)
    return reconciler.reconcile(actor="bench", full=full)


def run_size(root: Path, models: int, url: str, repeats: int) -> dict[str, float]:
    caps = {"max_files": max(50_000, models * 2)}
    config = settings.load(repo=str(root), db_url=url, data_dir=str(root.parent / "data"), **caps)
    db = Database(url)
    migrating.upgrade(db)
    fleets.forget()  # nothing kept from another size or backend
    cold = timed(lambda: cycle(config, db))
    noop = [timed(lambda: cycle(config, db)) for _ in range(repeats)]
    ones = []
    for k in range(repeats + 1):
        target = root / "manifests" / "models" / f"m{k:05d}.yaml"
        target.write_text(model(k, version=2 + k))
        git(root, "commit", "-q", "-am", f"bump m{k:05d}")
        full = k == repeats  # the last change: planned from everything
        started = time.perf_counter()
        outcome = cycle(config, db, full=full)
        ones.append(time.perf_counter() - started)
        assert outcome.state == "applied", outcome
    db.dispose()
    return {
        "cold": cold,
        "noop": statistics.median(noop),
        "one": statistics.median(ones[:-1]),
        "full": ones[-1],
    }


def parse_baseline(root: Path) -> float:
    files = sorted((root / "manifests").rglob("*.yaml"))
    return timed(lambda: [yaml.load(p.read_bytes(), Loader=yaml.CSafeLoader) for p in files])


def postgres_url() -> tuple[str, Callable[[], None]] | None:
    try:
        import psycopg

        name = f"grove_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # the benchmark just reports why
        print(f"PostgreSQL skipped: {exc}".splitlines()[0])
        return None

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[tuple[str, int], dict[str, float]] = {}
    baselines: dict[int, float] = {}
    backends = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    for models in sizes:
        for backend in backends:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp) / "fleet"
                build_repo(root, models)
                baselines.setdefault(models, parse_baseline(root))
                if backend == "sqlite":
                    url, cleanup = f"sqlite:///{tmp}/registry.db", None
                else:
                    found = postgres_url()
                    if found is None:
                        continue
                    url, cleanup = found
                try:
                    results[(backend, models)] = run_size(root, models, url, args.repeats)
                finally:
                    if cleanup:
                        cleanup()
            r = results[(backend, models)]
            print(
                f"{backend:<10} {models:>6} models: cold apply {r['cold'] * 1000:8.0f} ms   "
                f"no-op {r['noop'] * 1000:7.1f} ms   one change {r['one'] * 1000:7.1f} ms   "
                f"full {r['full'] * 1000:8.0f} ms   "
                f"(parse-all baseline {baselines[models] * 1000:6.0f} ms)",
                flush=True,
            )
    print()
    for backend in backends:
        for small_size, big_size in ((1000, 10000), (10000, 100000)):
            if (backend, small_size) not in results or (backend, big_size) not in results:
                continue
            small, big = results[(backend, small_size)], results[(backend, big_size)]
            ratios = {key: big[key] / small[key] for key in ("cold", "noop", "one", "full")}
            print(
                f"{backend}: {big_size:,} / {small_size:,} cost ratio: "
                f"cold {ratios['cold']:.1f}x, no-op {ratios['noop']:.1f}x, "
                f"one change {ratios['one']:.1f}x, full {ratios['full']:.1f}x"
                + (" (goals: cold <= 12x, one change <= 2x)" if small_size == 1000 else "")
            )
        if (backend, 1000) in results:
            r = results[(backend, 1000)]
            print(
                f"{backend} at 1,000: no-op {r['noop'] * 1000:.1f} ms (goal < 50), one change "
                f"{r['one'] * 1000:.1f} ms (goal < 500), cold {r['cold']:.2f} s"
                + (" (goal < 3 s)" if backend == "sqlite" else "")
                + f"; one change is {baselines[1000] / r['one']:.1f}x faster than re-parsing all"
            )
        for size in (10000, 100000):
            if (backend, size) in results:
                r = results[(backend, size)]
                print(
                    f"{backend} at {size:,}: one change {r['one'] * 1000:.1f} ms"
                    + (" (goal < 100)" if backend == "sqlite" and size == 10000 else "")
                    + f", cold {r['cold']:.1f} s, full check of one change {r['full']:.1f} s; "
                    f"one change is {baselines[size] / r['one']:.0f}x faster than re-parsing all"
                )


if __name__ == "__main__":
    main()
