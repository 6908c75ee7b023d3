"""The HTTP API (FastAPI) and the app it makes: the API's routes and the console (``web/``).

:func:`create_app` wires the services (registry database, router, git
write-back, event hub) into an app; :func:`serve` runs it with uvicorn,
optionally with the reconcile loop in the same process (``grove serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TextIO

import uvicorn
from fastapi import FastAPI

from reconciler import gateway, web
from reconciler.api import connections, deps, hub, problems, routes
from reconciler.api.deps import Services
from reconciler.api.limits import BodyLimits, Gate
from reconciler.base import logs, telemetry
from reconciler.base import settings as settings_module
from reconciler.base.settings import Settings
from reconciler.gitops import authoring, watching
from reconciler.routing import engine as routing
from reconciler.store import migrating, notifications, registry
from reconciler.store.engine import Database

MAX_JSON_DEPTH = 64
SWITCH_INTERVAL_S = 0.0005
LOOP_GRACE_S = 3.0  # at shutdown, what the reconcile loop gets to finish (stop_loop)
VERSION = "0.1.0"

log = logging.getLogger("grove.api")


def create_app(settings: Settings, *, refresh_s: float | None = None) -> FastAPI:
    db = Database(settings.db_url)
    engine = routing.RoutingEngine(settings, db)
    services = Services(
        settings=settings,
        db=db,
        engine=engine,
        authoring=authoring.Authoring(settings, db),
        hub=hub.Hub(db),
    )
    every = refresh_s if refresh_s is not None else settings.poll_interval_s

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        migrating.require_current_at_start(db)  # unmigrated or unreadable: do not start
        engine.refresh()
        engine.seed_latencies()
        # The snapshot and the imported modules live as long as the process: keep them
        # out of the cyclic collector's full passes (shorter pauses under load).
        gc.freeze()
        # Threads of this process (the reconcile loop, the routing-log sender) hold the
        # interpreter lock while they work; a shorter switch interval bounds how long
        # the event loop waits for it (bench/loop_lag.py).
        _switch.enter()
        stop = asyncio.Event()
        snapshot_changed, events_changed = asyncio.Event(), asyncio.Event()
        listener = _listen(settings, db, (snapshot_changed, events_changed))
        tasks = [
            asyncio.create_task(_follow(engine, every, stop, snapshot_changed)),
            asyncio.create_task(services.hub.follow_table(stop, events_changed)),
            asyncio.create_task(services.hub.watch_tokens(stop)),
        ]
        try:
            yield
        finally:
            stop.set()  # the followers finish the read in hand, then the pool is closed
            try:
                if listener is not None:
                    listener.stop.set()
                    await asyncio.to_thread(listener.join, 5.0)
                await asyncio.gather(*tasks, return_exceptions=True)
                await engine.aclose()
            finally:
                _switch.leave()
                telemetry.process_exited(os.getpid())  # a worker's live gauges end with it

    app = FastAPI(
        docs_url=None,  # Swagger UI and ReDoc load from a CDN; /openapi.json is enough
        redoc_url=None,
        title="Grove",
        version=VERSION,
        summary="GitOps registry and router for fleets of AI models",
        lifespan=lifespan,
        responses=problems.documented(),
    )
    app.state.services = services
    app.state.lean_routes = True  # set, not defaulted: an unset State attribute raises inside
    problems.install(app)
    for router in routes.ROUTERS:
        app.include_router(router)
    gateway.mount(app)  # the gateway's own /v1/ routes are served by asgi()'s edge
    web.mount(app, web.Console(settings, db, engine, services.authoring))
    return app


class _SwitchInterval:
    """The short switch interval while any app of this process runs; the old one after."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = sys.getswitchinterval()

    def enter(self) -> None:
        with self._lock:
            if self._users == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(SWITCH_INTERVAL_S)
            self._users += 1

    def leave(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users == 0:
                sys.setswitchinterval(self._saved)


_switch = _SwitchInterval()


async def _follow(
    engine: routing.RoutingEngine, every_s: float, stop: asyncio.Event, wake: asyncio.Event
) -> None:
    """Keep the router's snapshot current (the serial is one cheap query), until ``stop``:
    every ``every_s``, and at once when ``wake`` is set."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(engine.refresh)
        except Exception as exc:  # a bug must not end the following: log it, go on
            log.error("snapshot-follow-failed", exc_info=exc, extra={"fields": {}})
        await hub.pause(stop, wake, every_s)


def _listen(
    settings: Settings, db: Database, wakes: tuple[asyncio.Event, ...]
) -> notifications.Listener | notifications.FileWatcher | None:
    """The thread that sets ``wakes`` when an apply commits anywhere (NOTIFY on
    PostgreSQL, a file watch on SQLite): the router and the event stream then follow
    another process's apply (or the reconcile loop of ``grove serve``) at once, not at
    their next poll. Polling goes on beside it."""
    loop = asyncio.get_running_loop()

    def wake() -> None:
        for event in wakes:
            with contextlib.suppress(RuntimeError):  # the loop has ended: nothing to wake
                loop.call_soon_threadsafe(event.set)

    return notifications.follow(
        db, [registry.NOTIFY_CHANNEL], wake, threading.Event(), listen=settings.pg_listen
    )


def asgi(settings: Settings) -> Any:
    """The app behind the body limits, as uvicorn runs it."""
    app = create_app(settings)
    return BodyLimits(
        app,
        max_bytes=settings.max_body_bytes,
        max_depth=MAX_JSON_DEPTH,
        gate=Gate(app.routes, app.dependency_overrides),
        body_timeout_s=settings.body_timeout_s,
        front=gateway.Front(_gateway(app.state.services), app),
    )


def _gateway(services: Services) -> gateway.Gateway:
    """The gateway on the app's router, with the data plane's token check."""
    return gateway.Gateway(services.engine, deps.data_plane, services.hub.publish)


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    loop: bool = True,
    interval_s: float = 30.0,
    announce: str | None = None,
) -> int:
    """``grove serve``: the API, and the reconcile loop in a thread of the same process.

    SIGTERM and SIGINT stop the server and then the loop, which finishes its
    transaction and releases its lease; the process exits 0. ``announce`` is
    printed to stdout once the server listens and has started up.
    """
    stop = threading.Event()
    application = asgi(settings)
    services = application.app.state.services
    # a rollout's verdict reaches this process's router at once, not at its next wake-up
    watcher_thread = (
        start_loop(settings, interval_s, stop=stop, on_routing=services.engine.refresh)
        if loop
        else None
    )
    services.loop = watcher_thread  # for /readyz
    config = uvicorn.Config(application, host=host, port=port, **connections.options(settings))
    server = _Server(config, announce)

    def shut_down(_signum: int, _frame: object) -> None:
        if server.should_exit:  # told again: the streams under way end now
            connections.cut_answers()
        server.should_exit = True
        stop.set()

    previous = {sig: signal.signal(sig, shut_down) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()  # uvicorn exits (SystemExit 3) when it cannot bind or start up
    finally:
        server.unannounced()
        stop.set()
        if watcher_thread is not None:
            stop_loop(watcher_thread)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its shutdown; Grove handles the signal itself.
    Prints ``announce`` once it listens (uvicorn's own line is below the log level)."""

    def __init__(self, config: uvicorn.Config, announce: str | None = None) -> None:
        super().__init__(config)
        self.announce = announce
        self.announced = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.announce:
            self.announced = _write(sys.stdout, self.announce)

    def unannounced(self) -> None:
        """A server that never listened still shows what it had to say (``grove up``'s
        admin token is made once), on stderr, saying it did not start."""
        if self.announce and not self.announced:
            said = f"grove: the server did not start; it would have said:\n{self.announce}"
            _write(sys.stderr, said)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _write(stream: TextIO | None, text: str) -> bool:
    """Write and flush; a closed or missing stream is no reason to stop serving."""
    if stream is None:  # started with stdout closed
        return False
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):  # a closed pipe, a closed file
        return False
    return True


def stop_loop(thread: threading.Thread) -> None:
    """Give the reconcile loop (already told to stop) :data:`LOOP_GRACE_S` to finish the
    transaction in hand and release its lease. A loop still busy after that (a fetch
    from a slow remote, a long apply) is left behind: the process ends anyway, so a
    shutdown stays within a probe's grace period; its transaction rolls back with its
    connection and its lease expires, as after a crash."""
    thread.join(timeout=LOOP_GRACE_S)
    if thread.is_alive():
        logs.event(log, "reconcile-loop-left", level=logging.WARNING, grace_s=LOOP_GRACE_S)


def start_loop(
    settings: Settings,
    interval_s: float,
    *,
    stop: threading.Event | None = None,
    on_routing: Callable[[], object] | None = None,
) -> threading.Thread:
    """The reconcile loop in a thread of this process (it leads only while it holds the
    lease); ``on_routing`` is called when its analysis changes routing (a canary's step
    or verdict), so this process's router follows at once."""
    options = watching.Options(
        interval_s=interval_s, poll_s=settings.poll_interval_s, lease_ttl_s=settings.lease_ttl_s
    )
    watcher = watching.Watcher(settings, options, stop=stop, on_routing=on_routing)
    thread = threading.Thread(target=watcher.run, name="grove-reconcile", daemon=True)
    thread.start()
    return thread


def app_from_environment() -> Any:
    """For ``grove serve --workers N``: each worker builds its app from GROVE_* variables."""
    return asgi(settings_module.load())
