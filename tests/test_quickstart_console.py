"""Issue 14: every ``console`` block of docs/quickstart.md runs as shown, in order,
against a real ``grove up``, so the page cannot drift from the code again.

The test plays the page's reader in a fresh copy of the project's layout (``manifests/``
and ``schemas/``, committed in a git repository as in a clone), with the environment the
page's preamble names: no ``GROVE_*`` setting but ``GROVE_RESOLVE_ENDPOINTS=false``, and
no model API key, so only the in-process ``mock`` models answer and no provider is ever
called (the other models fail on their missing key before any connection is made). Each
command runs in bash from the folder the page names (the Grove clone; ``cd`` and
``export`` carry over), must exit 0, and must print what the page shows, up to what
differs on every run (tokens, commit ids, request ids, dates, latencies: see
tests/console_blocks.py). What the test changes, and why:

- the page's folder ``/tmp/grove-qs/grove`` is this run's folder, and its port 8000 a
  free one: ``grove up`` gets ``--port``, every URL the same port;
- step 1's ``python3 -m venv .venv && .venv/bin/pip install -e .`` is not run (it needs
  a package index): ``.venv/bin/grove`` is a console script run by this interpreter,
  and what ``grove up`` prints is compared from the page's last ``...`` on (which also
  stands for the server's log lines on stderr);
- a ``grove up`` runs in the background (the page uses a second terminal) until the
  next one, which the page starts after a Ctrl-C: the test sends SIGINT.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import console_blocks
from tests.api.conftest import free_port
from tests.conftest import REPO_ROOT

PAGE = "docs/quickstart.md"
PAGE_FOLDER = "/tmp/grove-qs/grove"  # where the page's samples were made
PAGE_ADDRESS = "127.0.0.1:8000"
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -e . && "


class _Server:
    """One ``grove up`` in the background, its output (stdout and stderr) collected."""

    def __init__(self, command: str, shell: console_blocks.Shell) -> None:
        self.process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=shell.folder,
            env=shell.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches its process group, as in a terminal
        )
        self.printed = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
            self.printed += chunk

    def announced(self, timeout: float = 60) -> str:
        """What it printed up to its ``try:`` line, printed once it listens."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.printed.decode(errors="replace")
            found = re.search(r"^  try: .*\n", text, re.MULTILINE)
            if found:
                return text[: found.end()]
            if self.process.poll() is not None:
                self._reader.join(5)
                return self.printed.decode(errors="replace")
            time.sleep(0.05)
        return self.printed.decode(errors="replace")

    def interrupt(self) -> int | None:
        """Ctrl-C; its exit status, or None if it is still running 15 s later."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
            return None
        finally:
            self._reader.join(5)
            self.process.stdout.close()  # type: ignore[union-attr]


# ---------------------------------------------------------------- the matcher, alone

_BLOCK = """Text.

```console
$ git log --oneline
efc5224 register
...
b63753e seed
$ git show --format=%H HEAD | \\
  head -1
efc522443977fbdaa1a3fe6e6da32c4bef2e6d64
$ echo $TOKEN
```
"""


def test_console_blocks_are_commands_with_their_output() -> None:
    found = console_blocks.commands(_BLOCK)
    assert [(c.number, c.text) for c in found] == [
        (4, "git log --oneline"),
        (8, "git show --format=%H HEAD | \\\n  head -1"),
        (11, "echo $TOKEN"),
    ]
    assert [(line.number, line.text) for line in found[0].expected] == [
        (5, "efc5224 register"),
        (6, "..."),
        (7, "b63753e seed"),
    ]


@pytest.mark.parametrize(
    ("printed", "wrong"),
    [
        ("1a2b3c4 register\n9f9f9f0 seed\n", None),
        ("1a2b3c4 register\nx\ny\n9f9f9f0 seed\n", None),
        ("1a2b3c4 register\n", "page.md:7: expected 'b63753e seed'"),
        ("1a2b3c4 register\n9f9f9f0 seed\nmore\n", "printed more than the page shows"),
        ("1a2b3c4 registered\n9f9f9f0 seed\n", "page.md:5: expected 'efc5224 register'"),
    ],
)
def test_output_matches_up_to_ids_and_elided_lines(printed: str, wrong: str | None) -> None:
    got = console_blocks.mismatch(
        console_blocks.commands(_BLOCK)[0], printed, console_blocks.Values(), "page.md"
    )
    assert got == wrong if wrong is None else wrong in (got or "")


def test_a_commit_id_stands_for_the_same_commit_on_the_whole_page() -> None:
    log, show, _ = console_blocks.commands(_BLOCK)
    values = console_blocks.Values()
    assert console_blocks.mismatch(log, "1a2b3c4 register\n9f9f9f0 seed\n", values, "p") is None
    wrong = console_blocks.mismatch(show, "9f9f9f0" + "0" * 33 + "\n", values, "p")
    assert wrong is not None and "efc522443977fbdaa1a3fe6e6da32c4bef2e6d64 was 1a2b3c4" in wrong
    full = "1a2b3c4" + "0" * 33
    assert console_blocks.mismatch(show, full + "\n", values, "p") is None
    assert values.paste("git show efc5224 efc522443977fbdaa1a3fe6e6da32c4bef2e6d64") == (
        f"git show 1a2b3c4 {full}"
    )


# ---------------------------------------------------------------- the page, run


def _layout(folder: Path) -> None:
    """What a clone holds that the page uses: the example fleet and its schemas, in a
    git repository, and ``.venv/bin/grove``."""
    for name in ("manifests", "schemas"):
        shutil.copytree(REPO_ROOT / name, folder / name)
    git = ["git", "-C", str(folder), "-c", "user.name=dev", "-c", "user.email=dev@example.com"]
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "a clone"]):
        subprocess.run([*git, *args], check=True, env=console_blocks.environment())
    grove = folder / ".venv" / "bin" / "grove"
    grove.parent.mkdir(parents=True)
    # as pip writes it (grove up names the program it was run as: sys.argv[0])
    grove.write_text(
        f"#!{sys.executable}\nimport sys\nfrom reconciler.cli import main\nsys.exit(main())\n"
    )
    grove.chmod(0o755)


@pytest.mark.slow
def test_every_console_block_of_the_quickstart_runs_as_shown(tmp_path: Path) -> None:
    missing = [tool for tool in ("curl", "jq", "git") if shutil.which(tool) is None]
    assert not missing, f"the quickstart needs {', '.join(missing)}"
    page = (REPO_ROOT / PAGE).read_text(encoding="utf-8")
    assert PAGE_FOLDER in page and PAGE_ADDRESS in page, "the page's folder and port moved"
    commands = console_blocks.commands(page)
    assert commands and commands[0].text.endswith("grove up"), "step 1 starts grove up"
    folder = tmp_path / "grove"
    folder.mkdir()
    _layout(folder)
    home = tmp_path / "home"  # no ~/.gitconfig or ~/.curlrc of the developer
    home.mkdir()
    address = f"127.0.0.1:{free_port()}"
    shell = console_blocks.Shell(
        folder, console_blocks.environment(HOME=str(home), GROVE_RESOLVE_ENDPOINTS="false")
    )
    values = console_blocks.Values()
    server: _Server | None = None

    def here(text: str) -> str:
        return text.replace(PAGE_FOLDER, str(folder)).replace(PAGE_ADDRESS, address)

    try:
        for command in commands:
            where = command.where(PAGE)
            unknown = [
                t for t in console_blocks.TOKEN.findall(command.text) if t not in values.seen
            ]
            text = values.paste(here(command.text))
            assert not unknown, f"{where} pastes {unknown[0]}, which no step before printed"
            expected = tuple(
                console_blocks.Line(line.number, here(line.text)) for line in command.expected
            )
            if text.endswith("grove up"):
                if server is not None:
                    assert server.interrupt() is not None, "grove up ignored a Ctrl-C for 15 s"
                if text.startswith(INSTALL):
                    text = text[len(INSTALL) :]
                    dots = [i for i, line in enumerate(expected) if line.text == "..."]
                    expected = expected[dots[-1] :] if dots else expected
                server = _Server(f"{text} --port {address.rsplit(':', 1)[1]}", shell)
                printed = server.announced()
                status = server.process.poll()
                assert status is None, f"{where}: grove up exited {status}:\n{printed}"
            else:
                status, printed = shell.run(text)
                assert status == 0, f"{where}: exited {status}, the page implies 0:\n{printed}"
            wrong = console_blocks.mismatch(
                console_blocks.Command(command.number, command.text, expected),
                printed,
                values,
                PAGE,
            )
            if wrong is not None:
                pytest.fail(wrong)
    finally:
        if server is not None:
            server.interrupt()
