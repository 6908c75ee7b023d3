"""Issue 13: no child process of a running server has a provider key in its environment.

A real ``grove serve`` (API and reconcile loop) started with provider keys in its
environment; after a write-back and routed calls, the git processes (GitPython's
long-lived ``cat-file --batch`` among them) and the routing-log writer exist, and
``/proc/PID/environ`` of every descendant is read.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.base import childenv
from tests.api.conftest import free_port
from tests.api.test_processes import _fleet_and_token, _wait_for
from tests.conftest import Registry

QUIET: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")


def _descendants(root: int) -> dict[int, tuple[str, bytes]]:
    """pid -> (command line, environment) of every live descendant of ``root``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                try:
                    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    found[pid] = (
                        command.decode(errors="replace"),
                        Path(f"/proc/{pid}/environ").read_bytes(),
                    )
                except OSError:
                    continue
                frontier.append(pid)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # processes, not the database
def test_no_child_of_a_running_server_has_a_provider_key(
    registry: Registry, tmp_path: Path
) -> None:
    canary = f"sk-canary-{secrets.token_hex(16)}"
    keys = {"OPENAI_API_KEY": canary, "ANTHROPIC_API_KEY": canary, "FLEET_MODEL_KEY": canary}
    env, token, _ = _fleet_and_token(registry, tmp_path, "children", **keys)
    port = free_port()
    command = [sys.executable, "-m", "reconciler", "serve", "--port", str(port)]  # one worker
    server = subprocess.Popen(command, cwd=tmp_path, env=env, **QUIET)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        _wait_for(f"{url}/api/status", server)
        registered = httpx.post(
            f"{url}/api/models/register",
            headers=headers,
            timeout=60,
            json={
                "id": "keyed",
                "name": "Keyed",
                "provider": "openai-compatible",
                "providerModel": "keyed-1",
                "endpoint": "https://inference.example.com/v1",
                "capabilities": ["speed"],  # the rule routed to needs reasoning: never called
                "credentials": {"env": "FLEET_MODEL_KEY"},
            },
        )
        assert registered.status_code == 201, registered.text
        call = {"taskType": "think", "prompt": "hi"}
        routed = [
            httpx.post(f"{url}/api/routing/execute", json=call, headers=headers, timeout=30)
            for _ in range(3)  # rows for the writer
        ]
        assert [answer.status_code for answer in routed] == [200] * 3, routed[-1].text
        deadline = time.monotonic() + 30
        while True:  # the writer starts with the first batch; cat-file with the first read
            children = _descendants(server.pid)
            commands = " | ".join(command for command, _ in children.values())
            if "reconciler.runtime.logwriter" in commands and "cat-file --batch" in commands:
                break
            assert time.monotonic() < deadline, f"not all children started: {commands}"
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    leaking = [command for command, environ in children.values() if canary.encode() in environ]
    assert not leaking, f"children with a provider key in their environment: {leaking}"
    assert canary not in err


def test_a_child_environment_is_the_allow_list_and_what_the_caller_adds() -> None:
    source = {
        "PATH": "/usr/bin",
        "LC_CTYPE": "C.UTF-8",
        "COVERAGE_PROCESS_CONFIG": "{}",
        "OPENAI_API_KEY": "sk-x",
        "GROVE_WEBHOOK_SECRET": "s",
        "GROVE_DB_URL": "postgresql://u:p@h/d",
        "PGPASSWORD": "p",
        "PROMETHEUS_MULTIPROC_DIR": "/tmp/m",
        "SSH_AUTH_SOCK": "/tmp/agent",
    }
    git = childenv.build(childenv.GIT, {"LC_ALL": "C"}, source=source)
    assert git == {
        "PATH": "/usr/bin",
        "LC_CTYPE": "C.UTF-8",
        "COVERAGE_PROCESS_CONFIG": "{}",
        "SSH_AUTH_SOCK": "/tmp/agent",
        "LC_ALL": "C",
    }
    writer = childenv.build(childenv.PYTHON, source=source)
    assert writer == {
        "PATH": "/usr/bin",
        "LC_CTYPE": "C.UTF-8",
        "COVERAGE_PROCESS_CONFIG": "{}",
        "PGPASSWORD": "p",  # libpq's own, for a database URL without its password
    }
