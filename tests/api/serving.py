"""A real Grove server process (``python -m reconciler.api``) on a loopback port, for the
tests of what only a whole process shows: signals, timeouts, load."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.api.conftest import free_port
from tests.api.test_processes import _fleet_and_token, _wait_for
from tests.conftest import Registry


@dataclasses.dataclass
class Process:
    url: str
    port: int
    token: str  # an operator's
    process: subprocess.Popen[str]
    env: dict[str, str]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, str]:
        """Send ``sig``; the exit code and what the server wrote on stderr."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err


@contextlib.contextmanager
def api_process(registry: Registry, tmp_path: Path, *args: str, **env: str) -> Iterator[Process]:
    """The small fleet, an operator token and a server with ``args`` (``--no-loop``,
    ``--workers 2``) and ``env`` (GROVE_*), answering; stopped at the end."""
    environment, token, _ = _fleet_and_token(registry, tmp_path, "tester", **env)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler.api", "--port", str(port), *args],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = Process(f"http://127.0.0.1:{port}", port, token, process, environment)
    try:
        _wait_for(f"{server.url}/openapi.json", process)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=60)
