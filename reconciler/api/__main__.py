"""``python -m reconciler.api``: run the API server (what ``grove serve`` and ``grove up`` exec).

Settings come from the GROVE_* environment; flags set where to listen.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import uvicorn

from reconciler import api
from reconciler.api import connections, workers
from reconciler.base import logs, settings, telemetry

# Set on the re-exec below: the metrics folder this process made, and removes at exit.
_OWNED_METRICS = "GROVE_OWNED_METRICS_DIR"


def _seconds(text: str) -> float:
    try:
        return settings.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m reconciler.api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--interval", type=_seconds, default=30.0)
    parser.add_argument("--no-loop", action="store_true")
    parser.add_argument(
        "--announce-fd",
        type=int,
        help="read a message from this file descriptor; print it once listening (grove up)",
    )
    args = parser.parse_args()
    announce = None
    if args.announce_fd is not None:
        if args.workers > 1:
            parser.error("--announce-fd needs --workers 1")
        with os.fdopen(args.announce_fd, encoding="utf-8") as message:
            announce = message.read()
    json_lines = not sys.stderr.isatty()
    logs.configure(json_lines=json_lines)
    config = settings.load()
    if args.workers > 1:
        _share_metrics()
        owned = os.environ.pop(_OWNED_METRICS, None)  # the workers must not remove it
        stop = threading.Event()
        loop = None if args.no_loop else api.start_loop(config, args.interval, stop=stop)
        try:
            if workers.available():
                return workers.supervise(args.host, args.port, args.workers, json_lines=json_lines)
            uvicorn.run(  # no SO_REUSEPORT here: uvicorn's workers share one socket
                "reconciler.api:app_from_environment",
                factory=True,
                host=args.host,
                port=args.port,
                workers=args.workers,
                **connections.options(config),
            )
        finally:
            stop.set()  # the loop finishes its transaction and releases its lease
            if loop is not None:
                api.stop_loop(loop)
            if owned:
                shutil.rmtree(owned, ignore_errors=True)
        return 0
    return api.serve(
        config,
        host=args.host,
        port=args.port,
        loop=not args.no_loop,
        interval_s=args.interval,
        announce=announce,
    )


def _share_metrics() -> None:
    """Several workers: their Prometheus values must be shared, or each scrape of
    ``/metrics`` would see one worker's counters. prometheus-client reads its folder
    when it is imported, which has happened in this process already: so make a fresh
    folder and start this process again with it in the environment (the workers
    inherit it). An operator's own ``PROMETHEUS_MULTIPROC_DIR`` is used as it is."""
    folder = telemetry.multiprocess_dir()
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return
    folder = tempfile.mkdtemp(prefix="grove-metrics-")
    os.environ[telemetry.MULTIPROCESS_VARIABLE] = folder
    os.environ[_OWNED_METRICS] = folder
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "reconciler.api", *sys.argv[1:]])  # noqa: S606


if __name__ == "__main__":
    raise SystemExit(main())
