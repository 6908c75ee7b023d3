"""Issue 13: ``grove up`` on PostgreSQL never prints the database password (it did, in
clear, twice): its banner masks it."""

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


def _up(tmp_path: Path, url: str) -> str:
    """Everything one ``grove up`` printed, from its start to a SIGTERM once it listens;
    meanwhile, no child it started before it became the server is left a zombie."""
    command = [sys.executable, "-m", "reconciler", "up", "--port", str(free_port())]
    process = subprocess.Popen(  # unbuffered: the first line is read alone
        command, cwd=tmp_path, env=_env(GROVE_DB_URL=url), stdout=PIPE, stderr=PIPE, bufsize=0
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
    assert 'grove token create --role admin --name NAME --db "$GROVE_DB_URL"' in printed
