"""Issue 13: ``grove up`` on PostgreSQL never prints the database password (it did, in
clear, twice): its banner masks it. Issue 14: the command it suggests for another admin
token pastes as is: the program as the user ran it, no ``--db`` that config.json gives."""

from __future__ import annotations

import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from subprocess import PIPE

import pytest

from tests.api.conftest import free_port
from tests.api.test_processes import _env
from tests.conftest import REPO_ROOT, GroveRunner, postgres_database

PASSWORD = "canary-pw-5d41402abc4b2a76"  # trust authentication ignores it


def _zombies(parent: int) -> set[int]:
    """Children of ``parent`` that ended and were never waited for."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(parent) and fields[0] == "Z":
            found.add(int(stat.parent.name))
    return found


def _up(tmp_path: Path, url: str | None, program: list[str] | None = None) -> str:
    """Everything one ``grove up`` printed, from its start to a SIGTERM once it listens;
    meanwhile, no child it started before it became the server is left a zombie."""
    program = program or [sys.executable, "-m", "reconciler"]
    command = [*program, "up", "--port", str(free_port())]
    env = _env(GROVE_DB_URL=url) if url else _env()
    process = subprocess.Popen(  # unbuffered: the first line is read alone
        command, cwd=tmp_path, env=env, stdout=PIPE, stderr=PIPE, bufsize=0
    )
    try:
        assert process.stdout is not None
        assert select.select([process.stdout], [], [], 120)[0], "grove up printed nothing"
        first = process.stdout.readline().decode()
        left = _zombies(process.pid)
        time.sleep(0.5)  # one that a command is about to reap is not left behind
        assert not left & _zombies(process.pid), "grove up left a child process unreaped"
    finally:
        process.send_signal(signal.SIGTERM)
        rest, err = (part.decode() for part in process.communicate(timeout=30))
    out = first + rest
    assert out.startswith("Grove is up at "), out + err
    return out + err


@pytest.mark.slow
def test_grove_up_masks_the_postgresql_password(
    postgres_admin: str, tmp_path: Path, grove: GroveRunner
) -> None:
    """Both lines that held it: the registry, and the command for another admin token
    (printed once an admin token exists, as on every run after the first)."""
    shutil.copytree(REPO_ROOT / "manifests", tmp_path / "manifests")
    with postgres_database(postgres_admin) as url:
        secret_url = url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
        assert PASSWORD in secret_url
        assert grove("db", "upgrade", "--db", secret_url).code == 0
        made = grove(
            "token", "create", "--role", "admin", "--name", "grove-up-admin", "--db", secret_url
        )
        assert made.code == 0, made.err
        printed = _up(tmp_path, secret_url)
    assert PASSWORD not in printed
    assert f"registry: {secret_url.replace(PASSWORD, '***')}; " in printed
    assert ' token create --role admin --name NAME --db "$GROVE_DB_URL"\n' in printed


def _console_script(folder: Path) -> Path:
    """``.venv/bin/grove`` in ``folder`` as pip writes it: this interpreter runs it."""
    script = folder / ".venv" / "bin" / "grove"
    script.parent.mkdir(parents=True)
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom reconciler.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    return script


@pytest.mark.parametrize(
    ("typed", "on_path", "shown"),
    [
        (".venv/bin/grove", False, ".venv/bin/grove"),
        ("{folder}/.venv/bin/grove", False, ".venv/bin/grove"),
        (".venv/bin/grove", True, "grove"),
        ("{folder}/.venv/bin/grove", True, "grove"),
    ],
    ids=["relative", "absolute-below", "on-path", "on-path-absolute"],
)
def test_the_program_is_named_as_the_user_can_run_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, typed: str, on_path: bool, shown: str
) -> None:
    from reconciler.cli import serve

    script = _console_script(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin" if on_path else "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [typed.format(folder=tmp_path), "up"])
    assert serve.program() == shown


def test_a_program_outside_the_folder_is_named_by_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.cli import serve

    script = _console_script(tmp_path / "elsewhere")
    (tmp_path / "fleet").mkdir()
    monkeypatch.chdir(tmp_path / "fleet")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [str(script), "up"])
    assert serve.program() == str(script)
    monkeypatch.setattr(sys, "argv", [str(REPO_ROOT / "reconciler" / "__main__.py"), "up"])
    assert serve.program() == f"{sys.executable} -m reconciler"


@pytest.mark.slow
def test_the_second_run_suggests_a_token_command_that_pastes(tmp_path: Path) -> None:
    """Run from the folder as ``.venv/bin/grove up`` (not on PATH): the suggestion is
    ``.venv/bin/grove token create ...`` with no --db (.grove/config.json names the
    registry), and pasted there it makes an admin token in that registry."""
    shutil.copytree(REPO_ROOT / "manifests", tmp_path / "manifests")
    _console_script(tmp_path)
    program = [".venv/bin/grove"]
    assert "admin token (shown once, keep it): grove_" in _up(tmp_path, None, program)
    printed = _up(tmp_path, None, program)
    suggested = "  admin token: printed at the first run; another: "
    line = next(line for line in printed.splitlines() if line.startswith(suggested))
    command = line.removeprefix(suggested)
    assert command == ".venv/bin/grove token create --role admin --name NAME"
    made = subprocess.run(
        ["bash", "-c", command.replace("NAME", "second-admin")],
        check=False,
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("grove_")
