"""``grove serve --workers N``: N server processes on one port, each with its own socket.

uvicorn's own supervisor binds one socket and hands it to every worker. A worker's
event loop accepts every connection waiting when it wakes, so a client that opens
its pool of kept-alive connections at once lands most of them on one worker
(bench/api.py: 44 of 50, and two workers routed fewer calls a second than one).
Here each worker binds its own socket with ``SO_REUSEPORT`` and the kernel spreads
new connections across the sockets.

The parent process (which also runs the reconcile loop, unless ``--no-loop``)
supervises: a worker that dies is started again, unless it died before it
served (a bad setting, say), which stops the server with exit 1 rather than
restarting it forever; SIGTERM or SIGINT stops every worker (each finishes its
requests, the gateway's streams included) and the parent exits 0; told a second
time, it has every worker cut the answers it still has under way (``CUT_SIGNAL``), as
one server does (``api.connections.cut_answers``). A worker heeds only its
supervisor: a signal sent to the whole group (Ctrl-C, a service manager) is counted
once, by the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from types import FrameType

import uvicorn

from reconciler.api import connections
from reconciler.base import logs, settings
from reconciler.manifests import addresses

log = logging.getLogger("grove.api")

STOP_WAIT_S = 30.0
CUT_SIGNAL = signal.SIGUSR1  # the supervisor's second stop signal, passed to its workers
PARENT_CHECK_S = 1.0  # how often a worker checks that its supervisor is alive


def available() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket on HOST:PORT that other sockets of this user may share."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(2048)  # uvicorn's default backlog
    return sock


class _Worker(uvicorn.Server):
    """Sets ``ready`` once it serves (a worker that dies before that failed to start),
    and shuts down, finishing its requests, if the supervisor is gone (killed with
    SIGKILL, say): a worker must not go on serving on its own."""

    def __init__(self, config: uvicorn.Config, ready: EventType, parent: int) -> None:
        super().__init__(config)
        self.ready = ready
        self.parent = parent
        self._watch: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()
            self._watch = asyncio.get_running_loop().create_task(self._watch_parent())

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A terminal's Ctrl-C reaches the whole process group, and a service manager may
        # signal every process of the service: the supervisor has the signal too and
        # passes it on (SIGTERM to stop, CUT_SIGNAL to cut), so a worker counts only its
        # supervisor's word. One SIGTERM stops it, however many come.
        if sig != signal.SIGINT:
            super().handle_exit(sig, frame)

    async def _watch_parent(self) -> None:
        while not self.should_exit:
            if os.getppid() != self.parent:
                logs.event(log, "worker-orphaned", level=logging.WARNING, supervisor=self.parent)
                self.should_exit = True
                return
            await asyncio.sleep(PARENT_CHECK_S)


def _worker(
    host: str, port: int, json_lines: bool, ready: EventType, parent: int
) -> None:  # pragma: no cover - runs in a child process
    """One worker: its own socket, the app built from the GROVE_* environment."""
    logs.configure(json_lines=json_lines)
    # the supervisor, told to stop a second time: cut the answers still under way
    signal.signal(CUT_SIGNAL, lambda _signum, _frame: connections.cut_answers())
    sock = listening_socket(host, port)
    config = uvicorn.Config(
        "reconciler.api:app_from_environment",
        factory=True,
        **connections.options(settings.load()),
    )
    _Worker(config, ready, parent).run(sockets=[sock])


def supervise(host: str, port: int, workers: int, *, json_lines: bool) -> int:
    """Run ``workers`` worker processes until SIGTERM or SIGINT; 0, or 1 when a worker
    could not start."""
    refused = addresses.cannot_listen(host, port)
    if refused is not None:
        logs.event(
            log,
            "cannot-listen",
            level=logging.ERROR,
            address=f"{host}:{port}",
            error=refused.reason,
        )
        return 1
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no copied threads
    stop = threading.Event()

    def start(index: int) -> tuple[BaseProcess, EventType]:
        ready = context.Event()
        process = context.Process(
            target=_worker,
            args=(host, port, json_lines, ready, os.getpid()),
            name=f"grove-worker-{index}",
        )
        process.start()
        return process, ready

    running: list[tuple[BaseProcess, EventType]] = []

    def shut_down(_signum: int, _frame: object) -> None:
        if stop.is_set():  # told again: every worker cuts the answers it has under way
            for process, _ in running:
                if process.is_alive() and process.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, CUT_SIGNAL)
        stop.set()

    previous = {sig: signal.signal(sig, shut_down) for sig in (signal.SIGTERM, signal.SIGINT)}
    running.extend(start(index) for index in range(workers))
    failed = False
    try:
        while not stop.is_set():
            multiprocessing.connection.wait([p.sentinel for p, _ in running], timeout=0.5)
            for index, (process, ready) in enumerate(running):
                if process.is_alive() or stop.is_set():
                    continue
                failed = not ready.is_set()
                logs.event(
                    log,
                    "worker-failed-to-start" if failed else "worker-restarted",
                    level=logging.ERROR if failed else logging.WARNING,
                    worker=index,
                    exit_code=process.exitcode,
                )
                if failed:
                    stop.set()
                    break
                running[index] = start(index)
    finally:
        for process, _ in running:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in hand
        deadline = time.monotonic() + STOP_WAIT_S
        for process, _ in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
    return 1 if failed else 0
