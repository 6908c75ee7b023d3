"""``grove reconcile --full``: one cycle that reads and checks every file and live object."""

from __future__ import annotations

import pytest

from reconciler.gitops import reconciling
from tests.conftest import Registry, model_yaml


def test_a_full_cycle_applies_like_any_other(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--full plans from every file: the two shortcuts of an incremental cycle (nothing
    changed since the apply; plan only the files a commit touched) are never taken."""

    def shortcut(*_: object, **__: object) -> None:
        pytest.fail("grove reconcile --full took an incremental shortcut")

    monkeypatch.setattr(reconciling.Reconciler, "_unchanged_since_apply", shortcut)
    monkeypatch.setattr(reconciling.Reconciler, "_plan_change", shortcut)
    registry.fleet.commit("fleet", {"models/a.yaml": model_yaml("a")})
    result = registry.run("reconcile", "--full")
    assert result.code == 0, result.err
    assert "Applied 1 change(s)" in result.out
    again = registry.run("reconcile", "--full")
    assert again.code == 0 and "no changes" in again.out
    for other in ("--watch", "--now"):
        refused = registry.run("reconcile", "--full", other)
        assert refused.code == 1 and "--full is for one cycle" in refused.err
