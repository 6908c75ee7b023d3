"""The ``rollout`` block as ``grove validate`` judges it: each mistake named at its file,
line and field, with its code; nothing about a valid one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import GroveRunner, model_yaml, write_tree

SLO = "{minSuccessRate: 0.95, minSamples: 40}"


@pytest.mark.parametrize(
    ("rollout", "slo", "expected"),
    [
        ("{steps: [{weight: 10, pauseS: 60}]}", SLO, None),
        (
            "{steps: [{weight: 10, pauseS: 60}]}",
            None,
            "S012 payload.rollout: a rollout is judged against slo",
        ),
        (
            "{steps: [{weight: 50, pauseS: 60}, {weight: 20, pauseS: 60}]}",
            SLO,
            "S012 payload.rollout.steps[1].weight: step weights must grow: 20 after 50",
        ),
        ("{steps: [{weight: 100, pauseS: 60}]}", SLO, "payload.rollout.steps[0].weight"),
        ("{steps: [{weight: 0, pauseS: 60}]}", SLO, "payload.rollout.steps[0].weight"),
        ("{steps: [{weight: 10, pauseS: -1}]}", SLO, "payload.rollout.steps[0].pauseS"),
        ("{steps: [{weight: 10, pauseS: 99999999999}]}", SLO, "payload.rollout.steps[0].pauseS"),
        ("{steps: []}", SLO, "payload.rollout.steps"),
        ("{steps: [{weight: 10}]}", SLO, "S002"),
        (
            "{steps: [{weight: 10, pauseS: 60}], onInconclusive: explode}",
            SLO,
            "payload.rollout.onInconclusive",
        ),
        ("{steps: [{weight: 10, pauseS: 60, extra: 1}]}", SLO, "S001"),
        (
            "{steps: [" + ", ".join(f"{{weight: {w}, pauseS: 1}}" for w in range(1, 23)) + "]}",
            SLO,
            "payload.rollout.steps",
        ),
    ],
)
def test_a_rollout_block_is_checked(
    grove: GroveRunner, tmp_path: Path, rollout: str, slo: str | None, expected: str | None
) -> None:
    extra = {"rollout": rollout} | ({"slo": slo} if slo else {})
    write_tree(tmp_path, {"models/alpha.yaml": model_yaml("alpha", **extra)})
    done = grove("validate", str(tmp_path))
    if expected is None:
        assert done.code == 0, done.out + done.err
        return
    said = done.out + done.err
    assert done.code == 1 and expected in said, said
    assert "alpha.yaml:" in said  # the file and line are named
