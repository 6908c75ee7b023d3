"""Time-ordered UUIDs (version 7, RFC 9562 section 5.7) for rows written at a high rate.

Routing logs and model metrics take several rows per routed call. With random
(version 4) ids each insert lands on a random page of the primary-key index, so
once the table outgrows the page cache every insert reads and dirties pages all
over the index, and the writer slows as the table grows (bench/api.py: the
router's p99 doubled within a few minutes at 1,000 calls a second). A version 7
id starts with the time in milliseconds, so new rows append at the index's right
edge; its 74 random bits keep ids unique across processes. They are row and
request identifiers, not secrets: the random bits come from a ``random.Random``
of this module's own (seeded from the system, again in a forked child), which
needs no system call per id (``uuid.uuid4`` reads ``os.urandom`` every time) and
leaves the global ``random`` state alone.
Python 3.14 has ``uuid.uuid7``; this is the same layout for 3.11.
"""

from __future__ import annotations

import os
import random
import time
import uuid

_RAND_B = (1 << 62) - 1
_random = random.Random()  # noqa: S311 - ids, not secrets
os.register_at_fork(after_in_child=_random.seed)


def uuid7() -> uuid.UUID:
    """unix_ts_ms (48 bits) | version 7 | rand_a (12) | variant 0b10 | rand_b (62)."""
    millis = time.time_ns() // 1_000_000
    bits = _random.getrandbits(74)
    value = (millis << 80) | (0x7 << 76) | ((bits >> 62) << 64) | (0b10 << 62) | (bits & _RAND_B)
    return uuid.UUID(int=value)
