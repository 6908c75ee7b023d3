"""An apply made elsewhere reaches a running API server at once, not at its next poll:
through NOTIFY on PostgreSQL, through a watch on the database files on SQLite. The
router's snapshot and the live event stream both follow."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Server, serve
from tests.conftest import FleetRepo, GroveRunner, Registry, model_yaml

POLL_S = 60  # the server's poll interval: far longer than the test may wait


@pytest.fixture
def slow_polling_server(
    registry: Registry, bare_fleet: Path, monkeypatch: pytest.MonkeyPatch, grove: GroveRunner
) -> Iterator[Server]:
    monkeypatch.setenv("GROVE_POLL_INTERVAL_S", str(POLL_S))
    yield from serve(registry, bare_fleet, str(bare_fleet), monkeypatch, grove)


def _commit_elsewhere(bare: Path, tmp_path: Path) -> None:
    """Another operator's change: a clone of the fleet repository, a commit, a push."""
    clone = FleetRepo(tmp_path / "elsewhere")
    clone.git("pull", "-q", str(bare), "main")
    clone.commit("add late", {"models/late.yaml": model_yaml("late", priority="5")})
    clone.git("push", "-q", str(bare), "HEAD:main")


def test_another_replicas_apply_reaches_the_router_and_the_stream_at_once(
    slow_polling_server: Server, grove: GroveRunner, tmp_path: Path
) -> None:
    server = slow_polling_server
    seen: list[dict[str, object]] = []
    streaming = threading.Event()

    def listen() -> None:
        with (
            server.client("viewer") as client,
            client.stream("GET", "/api/events", timeout=POLL_S) as answer,
        ):
            streaming.set()
            kind = ""
            for line in answer.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: ") and kind == "lifecycle":
                    seen.append(json.loads(line.removeprefix("data: ")))
                    return

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    assert streaming.wait(10)
    with server.client("viewer") as client:
        before = client.get("/api/models/discover", params={"capability": "reasoning"})
        assert "late" not in [m["id"] for m in before.json()]
        _commit_elsewhere(server.bare, tmp_path)
        applied = time.monotonic()
        assert grove("reconcile").code == 0  # the apply of another process (its NOTIFY)
        found_after = None
        while time.monotonic() - applied < POLL_S / 4:
            ids = [
                m["id"]
                for m in client.get(
                    "/api/models/discover", params={"capability": "reasoning"}
                ).json()
            ]
            if "late" in ids:
                found_after = time.monotonic() - applied
                break
            time.sleep(0.02)
    assert found_after is not None, f"not routed within {POLL_S / 4:g}s of the apply"
    reader.join(timeout=POLL_S / 4)
    assert seen, "no lifecycle event streamed"
    event = seen[0]
    assert (event["type"], event["objectId"], event["versionTo"]) == (
        "model_registered",
        "late",
        "1",
    )
    assert event["forced"] is False
    assert event["details"] == {"stateFrom": None, "stateTo": "enabled"}
    print(f"routed {found_after * 1000:.0f} ms after the apply (poll interval {POLL_S}s)")
