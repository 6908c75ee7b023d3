"""Logging for long-running processes: one line per event, JSON or key=value text.

Callers log an event name plus fields (``logs.event(log, "reconcile", revision=...)``);
the handler installed by :func:`configure` renders it. Fields must never hold a
credential: callers pass revisions, counts, durations and reasons only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info and record.levelno >= logging.ERROR:
            trace = self.formatException(record.exc_info)
            line["error"] = trace.splitlines()[-1]
            line["traceback"] = trace
        return json.dumps(line, default=str, separators=(",", ":"))


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%H:%M:%S")
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "fields", {}).items())
        text = f"{stamp} {record.levelname.lower():<7} {record.getMessage()} {fields}".rstrip()
        if record.exc_info and record.levelno >= logging.ERROR:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(*, json_lines: bool, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if json_lines else _TextFormatter())
    root = logging.getLogger("grove")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def event(logger: logging.Logger, name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with its fields (rendered by the handler :func:`configure` installed)."""
    logger.log(level, name, extra={"fields": fields})
