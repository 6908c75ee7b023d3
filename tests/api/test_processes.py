"""``grove up`` and ``grove serve`` as real processes; a server killed mid-burst loses no
acknowledged write."""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import free_port
from tests.conftest import REPO_ROOT, Registry, running


def _wait_for(url: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until ``url`` answers; fails at once, with what it said, if ``process`` exits.
    (Starting a server with two workers, each importing the app under coverage, beside
    another test worker, took over 30 s once on a slow day.)"""
    deadline = time.monotonic() + timeout
    address = httpx.URL(url)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"the server exited with {process.returncode}: {err[-2000:]}")
        try:
            # a bare connect until the port listens (an httpx.get makes a client and its
            # TLS context each time: about 20 ms of CPU a try), then the request itself
            with socket.create_connection((address.host, address.port or 80), timeout=1):
                pass
            httpx.get(url, timeout=1)
            return
        except (OSError, httpx.TransportError):
            time.sleep(0.02)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROVE_")}
    env.update(GROVE_RESOLVE_ENDPOINTS="false", **extra)
    return env


def _fleet_and_token(
    registry: Registry, tmp_path: Path, token_name: str, **extra: str
) -> tuple[dict[str, str], str, Path]:
    """The small fleet in a bare repository, the environment of a server on it, an
    operator token, and the repository."""
    from reconciler.store import tokens
    from reconciler.store.engine import Database
    from tests.reconciling.conftest import small_fleet

    registry.fleet.commit("fleet", small_fleet())
    bare = tmp_path / "fleet.git"
    registry.fleet.git("clone", "-q", "--bare", str(registry.fleet.root), str(bare))
    env = _env(
        GROVE_REPO=str(bare),
        GROVE_DB_URL=registry.url,
        GROVE_DATA_DIR=str(tmp_path / "data"),
        **extra,
    )
    db = Database(registry.url)
    with db.transaction(write=True) as connection:
        token = tokens.create(connection, name=token_name, role="operator", created_by="test")
    db.dispose()
    return env, token, bare


@pytest.mark.slow
def test_grove_up_seeds_migrates_prints_a_token_once_and_serves(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "manifests", tmp_path / "manifests")
    port = free_port()
    command = [sys.executable, "-m", "reconciler", "up", "--port", str(port)]
    first = subprocess.Popen(
        command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout is not None
        assert select.select([first.stdout], [], [], 120)[0], "grove up printed nothing"
        announced = first.stdout.readline()
        # printed once the server listens: a request sent at once is answered
        status = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=10)
        # the CLI exec'd the server: the token it printed is on neither's command line
        seen_by_ps = Path(f"/proc/{first.pid}/cmdline").read_bytes()
        environment = Path(f"/proc/{first.pid}/environ").read_bytes()
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
    rest, err = first.stdout.read(), first.stderr.read()  # type: ignore[union-attr]
    first.stdout.close()  # type: ignore[union-attr]
    first.stderr.close()  # type: ignore[union-attr]
    assert first.returncode == 0, err
    assert announced == f"Grove is up at http://127.0.0.1:{port}\n"
    assert status.status_code == 401  # it answered (no token sent)
    out = announced + rest
    assert out.count("Grove is up") == 1
    assert f"  console: http://127.0.0.1:{port}/ (sign in with" in out  # issue 16
    token = re.search(r"admin token \(shown once, keep it\): (grove_\S+)", out)
    assert token is not None
    assert token.group(1).encode() not in seen_by_ps + environment
    assert (tmp_path / ".grove" / "fleet.git").is_dir()
    assert (tmp_path / ".grove" / "registry.db").is_file()
    second = subprocess.Popen(
        command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/api/status", second)
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        found = httpx.get(
            f"http://127.0.0.1:{port}/api/models/discover",
            params={"capability": "reasoning"},
            headers=headers,
            timeout=10,
        )
        assert found.status_code == 200
        assert "claude-sonnet" in [m["id"] for m in found.json()]
    finally:
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=30)
    assert "printed at the first run" in out
    assert token.group(1) not in out


@pytest.mark.slow
def test_a_server_that_cannot_start_still_shows_what_it_was_to_announce(tmp_path: Path) -> None:
    """grove up makes its admin token once and hands the announcement to the server: a
    server that never listens (its port taken since grove up checked) must not lose it."""
    announcement = "Grove is up at http://127.0.0.1:1\n  admin token (shown once): grove_x_y\n"
    read, write = os.pipe()
    os.write(write, announcement.encode())
    os.close(write)
    try:
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = taken.getsockname()[1]
            run = _api_on(port, tmp_path, "--no-loop", "--announce-fd", str(read), fds=(read,))
    finally:
        os.close(read)
    assert run.returncode != 0
    assert run.stdout == ""
    assert f"grove: the server did not start; it would have said:\n{announcement}" in run.stderr


@pytest.mark.slow
def test_grove_up_on_a_port_in_use_fails_in_one_line_before_anything_starts(
    tmp_path: Path,
) -> None:
    shutil.copytree(REPO_ROOT / "manifests", tmp_path / "manifests")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "up", "--port", str(port)],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert done.stdout == ""  # no "Grove is up", no token printed for a server that never ran
    assert done.stderr == (
        f"grove: 127.0.0.1:{port} is already in use (another grove up or serve?); "
        "stop it or pick another --port\n"
    )
    assert not (tmp_path / ".grove").exists()


@pytest.mark.slow
def test_a_server_killed_mid_burst_loses_no_acknowledged_write(
    registry: Registry, tmp_path: Path
) -> None:
    env, token, bare = _fleet_and_token(registry, tmp_path, "burst")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "serve", "--port", str(port), "--no-loop"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer(worker: int) -> None:
        i = 0
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            while not stop.is_set():
                ident = f"w{worker}-{i}"
                i += 1
                try:
                    response = client.post(
                        "/api/models/register",
                        json={
                            "id": ident,
                            "name": ident,
                            "provider": "mock",
                            "capabilities": ["speed"],
                        },
                    )
                except httpx.TransportError:
                    return
                if response.status_code == 201:
                    acknowledged.append(ident)

    try:
        _wait_for(f"http://127.0.0.1:{port}/api/status", server)
        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate(timeout=10)
    assert len(acknowledged) >= 5
    files = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "HEAD"],
        cwd=bare,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for ident in acknowledged:
        assert f"manifests/models/{ident}.yaml" in files
    # restarted (with its reconcile loop), the server serves every acknowledged model
    # and takes writes again: nothing the kill left behind (a lock, a half-made commit
    # in its clone) stands in the way
    restarted = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/api/status", restarted)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            deadline = time.monotonic() + 60
            missing = list(acknowledged)
            while missing and time.monotonic() < deadline:
                missing = [i for i in missing if client.get(f"/api/models/{i}").status_code != 200]
                time.sleep(0.2)
            assert missing == []
            again = client.post(
                "/api/models/register",
                json={
                    "id": "after-restart",
                    "name": "after",
                    "provider": "mock",
                    "capabilities": ["speed"],
                },
            )
            assert again.status_code == 201, again.text
    finally:
        restarted.send_signal(signal.SIGTERM)
        _, err = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, err
    live = registry.live()
    assert all(f"AIModel/{ident}" in live for ident in [*acknowledged, "after-restart"])


def _serve_two_workers(env: dict[str, str], cwd: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "serve", "--port", str(port), "--workers", "2"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_serve_with_two_workers_answers_metrics_for_the_whole_server(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``grove serve --workers 2``: whichever worker answers ``/metrics`` counts every
    routed call of both workers and the reconcile cycles of the parent process."""
    from prometheus_client.parser import text_string_to_metric_families

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    # TMPDIR: where the server makes its shared metrics folder
    env, token, _ = _fleet_and_token(registry, tmp_path, "metrics", TMPDIR=str(scratch))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # the fleet applied before the server starts (in this process: a Python start fewer)
    monkeypatch.setenv("GROVE_REPO", env["GROVE_REPO"])
    assert registry.run("reconcile").code == 0
    port = free_port()
    server = _serve_two_workers(env, tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}

    def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
        # a new connection each time: either worker may answer
        text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
        return {
            family.name: [(sample.labels, sample.value) for sample in family.samples]
            for family in text_string_to_metric_families(text)
        }

    try:
        _wait_for(f"{url}/api/status", server)
        _both_listening(server.pid, port)  # else the first one up may take every call
        calls = 20
        for _ in range(calls):  # each on a new connection, so both workers take some
            answer = httpx.post(
                f"{url}/api/routing/execute",
                json={"taskType": "think", "prompt": "hi"},
                headers=headers,
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
        assert next(p.name for p in scratch.iterdir()).startswith("grove-metrics-")
        deadline = time.monotonic() + 20
        while True:
            families = scrape()
            cycles = sum(v for _, v in families.get("grove_reconcile_cycles", []))
            if cycles >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert cycles >= 1, "the parent's reconcile loop is not in a worker's /metrics"
        for _ in range(8):
            families = scrape()
            requests = [
                value
                for labels, value in families["grove_model_requests"]
                if labels.get("outcome") == "success"
            ]
            assert sum(requests) == calls
            serials = {labels["pid"] for labels, _ in families["grove_registry_state_serial"]}
            assert len(serials) == 3, serials  # the parent and the two workers
        # and both workers did route calls: each process's counters are a file of its own
        served = _successes_per_process(next(scratch.iterdir()))
        assert sorted(served) == sorted(int(w) for w in serials if int(w) != server.pid)
        assert all(count > 0 for count in served.values()) and sum(served.values()) == calls
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert list(scratch.iterdir()) == []  # the shared metrics folder is removed at exit


def _successes_per_process(folder: Path) -> dict[int, float]:
    """Successful model calls by process, from prometheus-client's multiprocess files."""
    from prometheus_client.multiprocess import MultiProcessCollector

    served: dict[int, float] = {}
    for path in folder.glob("counter_*.db"):
        count = sum(
            sample.value
            for metric in MultiProcessCollector.merge([str(path)])
            if metric.name == "grove_model_requests"
            for sample in metric.samples
            if sample.labels.get("outcome") == "success"
        )
        if count:
            served[int(path.stem.split("_")[1])] = count
    return served


def _both_listening(pid: int, port: int) -> list[int]:
    """The two workers of server ``pid``, once each listens on its own socket: from then
    on the kernel spreads new connections over both (a connection to a worker still
    starting waits in its socket's backlog)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = _workers(pid)
        if len(workers) == 2 and all(_sockets(w, port, "0A") == 1 for w in workers):
            break
        time.sleep(0.1)
    assert len(workers) == 2 and all(_sockets(w, port, "0A") == 1 for w in workers)
    return workers


def _workers(pid: int) -> list[int]:
    """The worker processes of server ``pid`` (spawned children; not the resource tracker
    or a git command of the loop)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
    return found


def _sockets(pid: int, port: int, state: str) -> int:
    """How many TCP sockets on local ``port`` in ``state`` (01 established, 0A listening)
    process ``pid`` holds (Linux)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = str(fd.readlink())
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == state and fields[9] in inodes:
                count += 1
    return count


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # processes, not the database
def test_workers_share_connections_and_a_killed_worker_is_replaced(
    registry: Registry, tmp_path: Path
) -> None:
    """``--workers 2``: each worker has its own SO_REUSEPORT socket, so 40 connections
    opened at once are spread over both (one shared socket gave one worker nearly all);
    a worker killed after start-up is started again and the server keeps answering."""
    env, token, _ = _fleet_and_token(registry, tmp_path, "workers")
    port = free_port()
    server = _serve_two_workers(env, tmp_path, port)
    url = f"http://127.0.0.1:{port}/api/status"
    try:
        _wait_for(url, server)
        workers = _both_listening(server.pid, port)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                held = [_sockets(worker, port, "01") for worker in workers]
                if sum(held) == 40:
                    break
                time.sleep(0.1)
            assert sum(held) == 40, held
            assert min(held) >= 8, f"connections per worker: {held}"
        finally:
            for client in clients:
                client.close()
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = _workers(server.pid)
            replaced = len(now) == 2 and workers[0] not in now
            if replaced and all(_sockets(w, port, "0A") == 1 for w in now):  # the new one too
                break
            time.sleep(0.2)
        assert len(now) == 2 and workers[0] not in now, now
        assert all(_sockets(w, port, "0A") == 1 for w in now), "the new worker does not listen"
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(10):  # new connections: some reach the new worker
            assert httpx.get(url, headers=headers, timeout=10).status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert "worker-restarted" in err


def _api_on(
    port: int, tmp_path: Path, *args: str, fds: tuple[int, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``python -m reconciler.api --port PORT ARGS`` on an unmigrated registry, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler.api", "--port", str(port), *args],
        pass_fds=fds,
        cwd=tmp_path,
        env=_env(GROVE_DB_URL=f"sqlite:///{tmp_path}/empty.db", GROVE_REPO=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_workers_on_a_port_in_use_exit_1_and_start_nothing(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        run = _api_on(port, tmp_path, "--workers", "2")
    assert run.returncode == 1, run.stderr
    assert "cannot-listen" in run.stderr and f"127.0.0.1:{port}" in run.stderr
    assert "worker-failed-to-start" not in run.stderr  # refused before any worker started


@pytest.mark.slow
def test_workers_that_cannot_start_stop_the_server_with_exit_1(tmp_path: Path) -> None:
    """A worker that dies before it serves (here: an unmigrated registry) is not started
    again and again: the server stops, exit 1, and says which worker failed."""
    run = _api_on(free_port(), tmp_path, "--workers", "2")
    assert run.returncode == 1, run.stderr
    assert "worker-failed-to-start" in run.stderr
    assert run.stderr.count("worker-restarted") == 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # processes, not the database
def test_workers_stop_when_their_supervisor_is_killed(registry: Registry, tmp_path: Path) -> None:
    """SIGKILL to the supervising process: its workers notice within seconds and shut down
    instead of serving on their own."""
    env, _, _ = _fleet_and_token(registry, tmp_path, "orphans")
    port = free_port()
    server = _serve_two_workers(env, tmp_path, port)
    workers: list[int] = []
    try:
        _wait_for(f"http://127.0.0.1:{port}/api/status", server)
        deadline = time.monotonic() + 30
        while len(workers := _workers(server.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers) == 2, workers
        server.kill()
        server.communicate(timeout=30)
        deadline = time.monotonic() + 30
        while any(running(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [w for w in workers if running(w)], "workers outlived their supervisor"
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=30)
