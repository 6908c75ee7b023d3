"""Real Grove servers (``python -m reconciler.api``, the reconcile loop in each) on the
canary fleet: one, or several replicas sharing one registry, each with its own data
folder (its own clone), as on separate machines."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from reconciler.store import tokens
from reconciler.store.engine import Database
from tests.api.conftest import free_port
from tests.api.test_processes import _env, _wait_for
from tests.rollouts.conftest import Canary

FAST = {
    "GROVE_ANALYSIS_INTERVAL_S": "0.25",
    "GROVE_POLL_INTERVAL_S": "0.2",
    "GROVE_LEASE_TTL_S": "3",
    "GROVE_ALLOW_LOCAL_ENDPOINTS": "true",
}


@dataclasses.dataclass
class Replica:
    url: str
    process: subprocess.Popen[str]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=30)


@dataclasses.dataclass
class Served:
    canary: Canary
    replicas: list[Replica]
    token: str

    def client(self, index: int = 0) -> httpx.Client:
        return httpx.Client(
            base_url=self.replicas[index].url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    def execute(self, client: httpx.Client, **body: Any) -> dict[str, Any]:
        answer = client.post(
            "/api/routing/execute", json={"taskType": "think", "prompt": "hi", **body}
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def wait_until(check: Callable[[], Any], timeout: float = 30, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {check}")
        time.sleep(every)


@contextlib.contextmanager
def serving(
    canary: Canary,
    tmp_path: Path,
    replicas: int = 1,
    each: Callable[[int], dict[str, str]] | None = None,
    **env: str,
) -> Iterator[Served]:
    """``replicas`` servers on the canary fleet's registry; ``each(index)`` adds to one's
    environment (a failpoint, say)."""
    db = Database(canary.settings.db_url)
    with db.transaction(write=True) as connection:
        token = tokens.create(connection, name="rollout-op", role="operator", created_by="test")
    db.dispose()
    started: list[Replica] = []
    try:
        for index in range(replicas):
            port = free_port()
            environment = _env(
                GROVE_REPO=str(canary.bare),
                GROVE_DB_URL=canary.settings.db_url,
                GROVE_DATA_DIR=str(tmp_path / f"replica-{index}"),
                **{**FAST, **env, **(each(index) if each else {})},
            )
            process = subprocess.Popen(
                [sys.executable, "-m", "reconciler.api", "--port", str(port), "--interval", "1s"],
                cwd=tmp_path,
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            started.append(Replica(f"http://127.0.0.1:{port}", process))
        for replica in started:
            _wait_for(f"{replica.url}/openapi.json", replica.process)
        yield Served(canary, started, token)
    finally:
        for replica in started:
            replica.kill()
