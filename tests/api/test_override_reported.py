"""A ``ROUTING_OVERRIDE_MODEL`` that names no enabled model is ignored and reported, not
silently: a warning when the server loads its snapshot, and in the reason of every
decision the recommend and execute answers carry (issue 14). A real server process."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.api.serving import api_process
from tests.conftest import Registry

IGNORED = (
    "ROUTING_OVERRIDE_MODEL=alhpa is ignored: no model alhpa in the registry; routing normally"
)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.mark.slow
def test_a_misspelled_override_is_reported_at_start_and_in_every_answer(
    registry: Registry, tmp_path: Path
) -> None:
    with api_process(registry, tmp_path, ROUTING_OVERRIDE_MODEL="alhpa") as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            deadline = time.monotonic() + 30
            decision = client.get("/api/routing/recommend", params={"taskType": "think"})
            while decision.status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)  # the loop applies the fleet once the server listens
                decision = client.get("/api/routing/recommend", params={"taskType": "think"})
            answer = decision.json()
            assert answer["modelId"] == "alpha" and answer["strategy"] == "priority"
            assert answer["reason"].endswith(f"; {IGNORED}")
            assert answer["routingDecision"]["reason"] == answer["reason"]
            executed = client.post(
                "/api/routing/execute", json={"taskType": "think", "prompt": "hi"}
            )
            assert executed.status_code == 200, executed.text
            assert executed.json()["decision"]["reason"].endswith(f"; {IGNORED}")
            assert executed.json()["routingDecision"]["reason"].endswith(f"; {IGNORED}")
            health = client.get("/api/models/health").json()
            assert IGNORED in health["reasons"]
        _, err = server.stop()
    warnings = [line for line in err.splitlines() if "override-ignored" in line]
    assert len(warnings) == 1, err  # at start; the fleet applied later changes nothing
    assert IGNORED in warnings[0]
