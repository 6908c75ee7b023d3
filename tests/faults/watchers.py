"""Run ``grove reconcile --watch`` as real processes and read their JSON log lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Event = dict[str, Any]


class WatchProcess:
    """One reconcile loop; its structured log lines arrive in ``events`` with a ``_t`` stamp."""

    def __init__(self, name: str, cwd: Path, env: dict[str, str], interval: str = "2s") -> None:
        self.name = name
        self.events: list[Event] = []
        self.other: list[str] = []
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reconciler",
                "reconcile",
                "--watch",
                "--interval",
                interval,
                "--log-format",
                "json",
            ],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            stamp = time.monotonic()
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                with self._lock:
                    self.other.append(line.rstrip())
                continue
            event["_t"] = stamp
            with self._lock:
                self.events.append(event)

    def matching(self, predicate: Callable[[Event], bool]) -> list[Event]:
        with self._lock:
            return [e for e in self.events if predicate(e)]

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.matching(predicate)
            if found:
                return found[0]
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(
            f"{self.name}: no matching event within {timeout}s; exit {self.process.poll()}; "
            f"last events: {self.events[-5:]}; other output: {self.other[-5:]}"
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        self._reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM, and the exit code once it stopped by itself."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._close()
        return code


def watch_env(repo: Path, db_url: str, data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROVE_")}
    env.update(
        GROVE_REPO=str(repo),
        GROVE_DB_URL=db_url,
        GROVE_DATA_DIR=str(data),
        GROVE_POLL_INTERVAL_S="0.5",
        GROVE_LEASE_TTL_S="3",
    )
    env.update(extra)
    return env
