"""``python -m reconciler.api``: run the API server (what ``grove serve`` and ``grove up`` exec).

Settings come from the GROVE_* environment; flags set where to listen.
"""

from __future__ import annotations

import argparse
import re
import sys

import uvicorn

from reconciler import api, logs, settings

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _seconds(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30s")
    return float(match.group(1)) * _UNITS[match.group(2)]


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
