"""docs/routing.md shows what ``grove route`` prints: every sample of it on the example
fleet (``manifests/``, applied once to a new registry) is run and compared line by line,
stderr first (the router's warnings come before the decision), so a sample cannot drift
from the code again (issue 14: the ad-hoc chain with ``--capability`` and a misspelled
``ROUTING_OVERRIDE_MODEL`` had)."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, FleetRepo, GroveRunner

PAGE = REPO_ROOT / "docs" / "routing.md"
ROUTE = re.compile(r"^(?:(?P<env>[A-Z_]+=\S+) )?grove route (?P<args>.+)$")
# samples that need more than a new registry: an observation made by the Python example,
# or a registry that cannot be reached (with a snapshot saved before); and the small
# fleet's rules (by-priority, by-cost, ...)
NEEDS_MORE = ("--db ", "--task by-")
REVISION = re.compile(r"\b[0-9a-f]{40}\b")


def _samples() -> list[tuple[int, str, list[str]]]:
    """(line, command, expected lines) of each ``grove route`` run on the example fleet,
    the first sample of each command only (a later one follows an observation)."""
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    found: dict[str, tuple[int, str, list[str]]] = {}
    inside = False
    current: list[str] | None = None
    for number, line in enumerate(lines, start=1):
        if line.startswith("```"):
            inside = line == "```console"
            current = None
            continue
        if not inside:
            continue
        if line.startswith("$ "):
            command = line[2:]
            current = None
            wanted = ROUTE.match(command) and command not in found
            if wanted and not any(part in command for part in NEEDS_MORE):
                current = []
                found[command] = (number, command, current)
        elif current is not None:
            current.append(line)
    return list(found.values())


SAMPLES = _samples()


def test_the_page_has_the_samples_of_issue_14() -> None:
    commands = [command for _, command, _ in SAMPLES]
    assert "grove route --task complex-analysis --capability context" in commands
    assert "ROUTING_OVERRIDE_MODEL=mock-fsat grove route --task complex-analysis" in commands
    assert len(commands) >= 10


@pytest.fixture(scope="module")
def example_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page's scratch fleet: manifests/ committed, migrated and reconciled once."""
    from reconciler import cli

    root = tmp_path_factory.mktemp("routing-doc")
    fleet = FleetRepo(root / "fleet")
    shutil.copytree(REPO_ROOT / "manifests", fleet.root / "manifests")
    fleet.commit("example fleet")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(fleet.root)
        for name in ("GROVE_REPO", "GROVE_DB_URL", "GROVE_DATA_DIR", "ROUTING_OVERRIDE_MODEL"):
            patch.delenv(name, raising=False)
        assert cli.run(["db", "upgrade"]) == 0
        assert cli.run(["reconcile"]) == 0
    return fleet.root


@pytest.mark.parametrize(
    ("line", "command", "expected"), SAMPLES, ids=[command for _, command, _ in SAMPLES]
)
def test_a_sample_of_grove_route_is_what_it_prints(
    example_fleet: Path,
    grove: GroveRunner,
    monkeypatch: pytest.MonkeyPatch,
    line: int,
    command: str,
    expected: list[str],
) -> None:
    monkeypatch.chdir(example_fleet)
    match = ROUTE.match(command)
    assert match is not None
    monkeypatch.delenv("ROUTING_OVERRIDE_MODEL", raising=False)
    if match["env"]:
        name, value = match["env"].split("=", 1)
        monkeypatch.setenv(name, value)
    done = grove("route", *shlex.split(match["args"]))
    printed = (done.err + done.out).splitlines()
    shown = [REVISION.sub("REVISION", text) for text in printed]
    assert shown == [REVISION.sub("REVISION", text) for text in expected], (
        f"docs/routing.md:{line}: `{command}` printed:\n" + "\n".join(printed)
    )
