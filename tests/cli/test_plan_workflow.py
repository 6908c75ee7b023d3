"""The fleet repository's workflow (.github/workflows/validate-manifests.yml) posts the
pull-request plan as one comment, with least privilege, and its plan step works.

No network: the YAML is parsed and checked, and the plan step's own shell script runs
against a real git repository whose pull request breaks a manifest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import FleetRepo, model_yaml
from tests.reconciling.conftest import small_fleet

WORKFLOW = Path(__file__).parents[2] / ".github" / "workflows" / "validate-manifests.yml"
MARKER = "<!-- grove-plan -->"


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return loaded


def _plan_steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = workflow["jobs"]["plan"]["steps"]
    return steps


def test_it_runs_on_pull_request_never_pull_request_target(workflow: dict[Any, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare on as True
    assert "pull_request" in triggers
    assert "pull_request_target" not in triggers
    assert "secrets." not in WORKFLOW.read_text(encoding="utf-8")


def test_least_privilege(workflow: dict[Any, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    plan = workflow["jobs"]["plan"]
    assert plan["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert plan["if"] == "github.event_name == 'pull_request'"
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("actions/checkout"):
                assert step["with"]["persist-credentials"] is False


def test_the_plan_is_grove_diff_in_markdown(workflow: dict[Any, Any]) -> None:
    step = next(s for s in _plan_steps(workflow) if s.get("id") == "plan")
    assert 'grove diff "$BASE" "$HEAD"' in step["run"] and "--format markdown" in step["run"]
    assert step["env"]["BASE"] == "${{ github.event.pull_request.base.sha }}"
    checkout = _plan_steps(workflow)[0]
    assert checkout["with"]["fetch-depth"] == 0  # the base revision must be in the clone


def test_one_comment_found_by_its_marker_and_updated(workflow: dict[Any, Any]) -> None:
    step = next(s for s in _plan_steps(workflow) if "github-script" in str(s.get("uses")))
    script = step["with"]["script"]
    assert MARKER in script
    assert "updateComment" in script and "createComment" in script
    assert "github-actions[bot]" in script  # never someone else's comment
    last = _plan_steps(workflow)[-1]
    assert last["if"] == "steps.plan.outputs.code != '0' && steps.plan.outputs.code != '2'"


@pytest.mark.slow  # two grove processes: about 2 s
def test_the_plan_step_reports_a_broken_pull_request(
    workflow: dict[Any, Any], fleet: FleetRepo, tmp_path: Path
) -> None:
    fleet.commit("fleet", small_fleet())
    base = fleet.head()
    head = fleet.commit("break", {"models/beta.yaml": model_yaml("beta", priority='"x"')})
    step = next(s for s in _plan_steps(workflow) if s.get("id") == "plan")
    output, summary = tmp_path / "output", tmp_path / "summary"
    bin_dir = str(Path(sys.executable).parent)
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "BASE": base,
        "HEAD": head,
        "GROVE_PATH": "manifests",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=fleet.root,
        env=environment,
        check=True,
        timeout=60,
        capture_output=True,
    )
    plan = (fleet.root / "plan.md").read_text(encoding="utf-8")
    assert plan.startswith("### Grove plan: invalid manifests")
    assert "`manifests/models/beta.yaml:" in plan and "**S003**" in plan
    assert output.read_text(encoding="utf-8") == "code=1\n"
    assert summary.read_text(encoding="utf-8") == plan
