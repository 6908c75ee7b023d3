"""Time-ordered ids: RFC 9562 version 7 layout, unique, ordered by their millisecond."""

from __future__ import annotations

import os
import time

import pytest

from reconciler.base import ids


def test_uuid7_layout_order_and_uniqueness() -> None:
    before = time.time_ns() // 1_000_000
    made = [ids.uuid7() for _ in range(20_000)]
    after = time.time_ns() // 1_000_000
    assert len(set(made)) == len(made)
    for value in made[:100]:
        assert value.version == 7
        assert value.variant == "specified in RFC 4122"
        assert before <= value.int >> 80 <= after
    stamps = [value.int >> 80 for value in made]
    assert stamps == sorted(stamps)  # ids of a later millisecond sort after earlier ones
    assert sorted(v.hex for v in made)[-1][:12] == made[-1].hex[:12]  # as text too (SQLite)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_makes_other_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, ids.uuid7().bytes)
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = os.read(read, 16)
    os.close(read)
    assert status == 0 and len(child) == 16
    assert child[6:] != ids.uuid7().bytes[6:]  # same millisecond maybe; never the same bits
