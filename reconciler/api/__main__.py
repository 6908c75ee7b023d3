"""``python -m reconciler.api``: run the API server (what ``grove serve`` and ``grove up`` exec).

Settings come from the GROVE_* environment; flags set where to listen.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from reconciler import api, logs, settings


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
    args = parser.parse_args()
    logs.configure(json_lines=not sys.stderr.isatty())
    config = settings.load()
    if args.workers > 1:
        if not args.no_loop:
            api.start_loop(config, args.interval)
        uvicorn.run(
            "reconciler.api:app_from_environment",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="warning",
            server_header=False,
        )
        return 0
    return api.serve(
        config, host=args.host, port=args.port, loop=not args.no_loop, interval_s=args.interval
    )


if __name__ == "__main__":
    raise SystemExit(main())
