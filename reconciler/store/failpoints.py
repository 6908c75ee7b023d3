"""Failpoints: let fault-injection tests widen and observe the apply transaction.

Off unless the environment names them, and then only for the process that was
started with them (the fault tests start ``grove apply`` that way and kill it
with SIGKILL inside the transaction). ``GROVE_FAILPOINT_<NAME>_MARK=<path>``
creates the file when the point is reached; ``GROVE_FAILPOINT_<NAME>_MS=<n>``
sleeps n milliseconds there; ``GROVE_FAILPOINT_<NAME>_RAISE=<message>`` raises
``RuntimeError(message)`` there (an unexpected error, as a bug would raise).
Like etcd's gofail, nothing else changes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def hit(name: str) -> None:
    prefix = f"GROVE_FAILPOINT_{name.upper()}"
    mark = os.environ.get(f"{prefix}_MARK")
    if mark:
        Path(mark).touch()
    pause = os.environ.get(f"{prefix}_MS")
    if pause:
        time.sleep(int(pause) / 1000)
    failure = os.environ.get(f"{prefix}_RAISE")
    if failure:
        raise RuntimeError(failure)
