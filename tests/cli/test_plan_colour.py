"""Plans in colour on a terminal (DESIGN section 5): ``+`` green, ``-`` red, ``~`` yellow,
never under ``NO_COLOR``, ``TERM=dumb``, ``--no-color`` or when piped, and never in
JSON or Markdown. click's CliRunner plays the terminal; a real ``grove`` process shows
the pipe and a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.common import grove
from reconciler.cli.output import colour_wanted
from reconciler.planning import plans
from tests.conftest import model_yaml
from tests.reconciling.conftest import Registry, small_fleet

GREEN, RED, YELLOW, RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[0m"
TERMINAL = {"NO_COLOR": None, "FORCE_COLOR": None, "TERM": "xterm-256color"}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the colour does not depend on the database."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def planned(registry: Registry) -> Registry:
    """A registry one commit behind git: a model added, one changed, one deleted."""
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("apply").code == 0
    registry.fleet.git("rm", "-q", "manifests/models/gamma.yaml")
    registry.fleet.commit(
        "change",
        {
            "models/delta.yaml": model_yaml("delta"),
            "models/beta.yaml": model_yaml("beta", priority="51").replace(
                'version: "1"', 'version: "2"'
            ),
        },
    )
    return registry


def _invoke(*args: str, color: bool = True, **env: str | None) -> str:
    result = CliRunner().invoke(
        grove, list(args), color=color, env={**TERMINAL, **env}, standalone_mode=False
    )
    assert result.exception is None, result.output
    return result.stdout


def test_a_terminal_gets_each_marker_in_its_colour(planned: Registry) -> None:
    out = _invoke("plan")
    lines = out.splitlines()
    assert f"{GREEN}  + AIModel/delta" in out
    assert f"{RED}  - AIModel/gamma" in out
    assert f"{YELLOW}  ~ AIModel/beta" in out
    assert f"{YELLOW}      ~ payload.priority: 50 -> 51{RESET}" in lines
    assert any(line.startswith(f"{RED}Safety: REFUSED") for line in lines)  # retire first
    # the same text once the colour is taken away
    plain = _invoke("plan", color=False)
    assert plain == out.replace(GREEN, "").replace(RED, "").replace(YELLOW, "").replace(RESET, "")
    assert "\x1b" not in plain


@pytest.mark.parametrize(
    ("args", "env"),
    [
        ((), {"NO_COLOR": "1"}),
        ((), {"TERM": "dumb"}),
        (("--no-color",), {}),
        (("--no-color",), {"FORCE_COLOR": "1"}),
        (("-o", "json"), {"FORCE_COLOR": "1"}),
    ],
)
def test_no_colour_when_told_so_or_not_text(
    planned: Registry, args: tuple[str, ...], env: dict[str, str]
) -> None:
    assert "\x1b" not in _invoke("plan", *args, **env)


def test_force_color_and_the_flag_colour_a_pipe(planned: Registry) -> None:
    assert GREEN in _invoke("plan", color=False, FORCE_COLOR="1")
    assert GREEN in _invoke("plan", "--color", color=False)
    assert GREEN in _invoke("plan", "--color", color=False, NO_COLOR="1")  # the flag wins


def test_diff_apply_and_reconcile_colour_too_but_never_markdown(planned: Registry) -> None:
    base, head = "HEAD~1", "HEAD"
    assert YELLOW in _invoke("diff", base, head)
    assert "\x1b" not in _invoke("diff", base, head, "-o", "markdown")
    assert "\x1b" not in _invoke("diff", base, head, "-o", "json")
    gamma = small_fleet()["models/gamma.yaml"]
    planned.fleet.commit("keep gamma: retire before remove", {"models/gamma.yaml": gamma})
    assert f"{YELLOW}  ~ AIModel/beta" in _invoke("apply")
    planned.fleet.commit("one more", {"models/epsilon.yaml": model_yaml("epsilon")})
    assert f"{GREEN}  + AIModel/epsilon" in _invoke("reconcile")


def test_colour_wanted_reads_the_flag_then_the_environment() -> None:
    assert colour_wanted(None, {}) is None  # click decides by the terminal
    assert colour_wanted(None, {"NO_COLOR": ""}) is None  # empty means unset
    assert colour_wanted(None, {"NO_COLOR": "0"}) is False  # any value
    assert colour_wanted(None, {"NO_COLOR": "1", "FORCE_COLOR": "1"}) is False
    assert colour_wanted(None, {"FORCE_COLOR": "1", "TERM": "dumb"}) is True
    assert colour_wanted(None, {"TERM": "dumb"}) is False
    assert colour_wanted(True, {"NO_COLOR": "1"}) is True
    assert colour_wanted(False, {"FORCE_COLOR": "1"}) is False


def test_render_text_paints_by_tone_and_reads_the_same_without() -> None:
    change = plans.Change(plans.ChangeKind.RETIRE, "AIModel", "m", "1", "1", "enabled", "retired")
    plan = plans.Plan("b" * 40, "a" * 40, 3, (change,))
    seen: list[str] = []

    def paint(text: str, tone: str) -> str:
        seen.append(tone)
        return f"<{tone}>{text}"

    painted = plans.render_text(plan, paint=paint)
    assert seen == ["change"]
    assert "<change>  ~ AIModel/m" in painted
    assert painted.replace("<change>", "") == plans.render_text(plan)


@pytest.mark.slow
def test_a_real_pipe_gets_no_colour_and_a_real_terminal_does(
    planned: Registry, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env["TERM"] = "xterm"
    command = [sys.executable, "-m", "reconciler", "plan"]
    piped = subprocess.run(
        command, check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert piped.returncode == 1 and "  + AIModel/delta" in piped.stdout
    assert "\x1b" not in piped.stdout
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            command, check=False, env=env, stdout=follower, stderr=subprocess.PIPE, timeout=60
        )
        os.close(follower)
        follower = -1
        shown = b""
        while chunk := _read(leader):
            shown += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert done.returncode == 1
    assert GREEN.encode() + b"  + AIModel/delta" in shown


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the terminal's other end is closed and drained
        return b""
