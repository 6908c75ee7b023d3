"""Real processes against real databases: SIGKILL inside the apply, and racing reconcilers.

Each apply is a separate ``grove`` process, started ahead with its imports done and
told to go when its round begins (`Warm`: half a second of Python start-up, a round,
off the path the test waits on). Failpoints (GROVE_FAILPOINT_*) make
the process touch a file once it holds the apply lock and pause 1 ms per
write, so the random kill lands inside the transaction most of the time; the
others land just before or just after it, which must be just as safe.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import model_yaml
from tests.reconciling.conftest import Registry

MODELS = 200
KILLS = 15


def _fleet_files(version: int) -> dict[str, str]:
    return {
        f"models/m{i:03d}.yaml": model_yaml(
            f"m{i:03d}", priority=str((i * 7 + version) % 1000)
        ).replace('version: "1"', f'version: "{version}"')
        for i in range(MODELS)
    }


def _grove_process(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ``grove ARGS`` (``sys.argv[1:]``), run once a line "go" arrives on stdin; the modules
# an apply and a reconcile load are imported before that. Its stdin closed without "go",
# it exits 0 having done nothing.
_WARM = """
import sys

import git
import sqlalchemy.dialects.postgresql.psycopg
import sqlalchemy.dialects.sqlite

import reconciler.gitops.applying
import reconciler.gitops.reconciling
import reconciler.sources.git
import reconciler.store.registry
from reconciler import cli

if sys.stdin.readline() == "go\\n":
    sys.exit(cli.run(sys.argv[1:]))
"""


class Warm:
    """A ``grove`` process started now, its imports done, that runs when told to go."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WARM, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def go(self) -> subprocess.Popen[str]:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        return self.process

    def cancel(self) -> None:
        """Not wanted after all: its stdin closed (by communicate), it exits having run
        nothing."""
        self.process.communicate(timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(600)  # 15 grove processes per backend: 20-55 s beside -n 2
def test_sigkill_during_apply_leaves_old_or_new_never_a_mix(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("GROVE_TEST_SEED", time.time_ns() % 10**6))
    chance = random.Random(seed)
    registry.fleet.commit("v1", _fleet_files(1))
    assert registry.run("reconcile").code == 0
    env = {
        **os.environ,
        "GROVE_FAILPOINT_APPLY_LOCKED_MARK": str(tmp_path / "locked"),
        "GROVE_FAILPOINT_APPLY_WRITE_MS": "1",
    }
    outcomes: Counter[str] = Counter()
    ready = Warm(["apply"], env, tmp_path)
    try:
        for round_ in range(KILLS):
            old = registry.content_hash()
            old_revision = registry.revisions()[-1]
            revision = registry.fleet.commit(f"v{round_ + 2}", _fleet_files(round_ + 2))
            marker = tmp_path / "locked"
            marker.unlink(missing_ok=True)
            process = ready.go()
            deadline = time.monotonic() + 60
            while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(chance.uniform(0, 0.5))
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
            ready = Warm(["apply"], env, tmp_path)  # the next round's, starting meanwhile
            after_kill = registry.content_hash()
            result = registry.run("reconcile")
            assert result.code == 0, result.out + result.err
            new = registry.content_hash()
            assert new != old
            assert after_kill in (old, new), f"round {round_} (seed {seed}): a mixed registry"
            if after_kill == old:
                outcomes["rolled back"] += 1
                assert "Applied 200 change(s)" in result.out
            else:
                outcomes["committed"] += 1
                assert "In sync" in result.out
            revisions = registry.revisions()
            assert revisions[-1] == revision
            assert revisions.count(revision) == 1
            assert old_revision in revisions
    finally:
        ready.cancel()
    with capsys.disabled():
        print(f"\n{KILLS} kills on {registry.url.split(':')[0]} (seed {seed}): {dict(outcomes)}")
    assert outcomes["rolled back"] >= KILLS // 4  # most kills landed inside the transaction


@pytest.mark.slow
def test_three_reconcilers_at_once_apply_exactly_once(registry: Registry, tmp_path: Path) -> None:
    env = dict(os.environ)
    for round_ in range(3):
        revision = registry.fleet.commit(
            f"round {round_}",
            {f"models/r{round_}-{i}.yaml": model_yaml(f"r{round_}-{i}") for i in range(30)},
        )
        processes = [_grove_process(["reconcile"], env, tmp_path) for _ in range(3)]
        results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
        codes = [code for code, _, _ in results]
        assert codes == [0, 0, 0], results
        outputs = [out for _, out, _ in results]
        applied = [o for o in outputs if "Applied 30 change(s)" in o]
        others = [o for o in outputs if "already applied" in o or "In sync" in o]
        assert len(applied) == 1, outputs
        assert len(others) == 2, outputs
        assert registry.revisions().count(revision) == 1
        assert all(not err.strip() for _, _, err in results), results
    assert len(registry.live()) == 90
