"""The ``console`` blocks of a doc page, run as a reader would paste them.

A block is a fenced ```` ```console ```` block: a line starting with ``$ `` is a command
(a line ending with a backslash goes on to the next one), every other line is what the
command before it prints. Used by tests/test_quickstart_console.py; pure apart from
:class:`Shell`, which runs bash in a folder.

What a sample shows is compared with what the command printed, line by line, except
for what differs on every run:

- a line ``...`` stands for any number of lines;
- an API token, a commit id (7 to 40 hex digits, at least one a letter and one a
  digit), a request id (UUID), a git date, a ``"latencyMs"`` value and a duration
  ``~Ns`` match any value of their kind;
- a token or commit id stands for the same value everywhere on the page: once a
  sample's ``efc5224`` has been seen as ``1a2b3c4``, its ``efc522443977...`` must start
  with ``1a2b3c4``, and a later command that pastes it gets the real one.

Nothing here knows Grove: the caller substitutes the page's folder and port.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

ANY_LINES = "..."

_VOLATILE = re.compile(
    r"(?P<token>grove_[0-9a-f]{16}_[A-Za-z0-9_-]{43})"
    r"|(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"|(?P<date>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d \d{4} [+-]\d{4})"
    r"|(?<=\"latencyMs\": )(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?<=~)(?P<seconds>\d+)(?=s\b)"
    r"|(?<![0-9A-Za-z_])(?P<sha>(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40})"
    r"(?![0-9A-Za-z_])"
)
_ANY = {
    "token": r"grove_[0-9a-f]{16}_[A-Za-z0-9_-]{43}",
    "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "date": r".+?",
    "number": r"-?\d+(?:\.\d+)?",
    "seconds": r"\d+",
}
TOKEN = re.compile(_ANY["token"])
_SHORT_SHA = re.compile(
    r"(?<![0-9A-Za-z_])(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,39}(?![0-9A-Za-z_])"
)


@dataclasses.dataclass(frozen=True)
class Line:
    number: int  # 1-based, in the page
    text: str


@dataclasses.dataclass(frozen=True)
class Command:
    number: int  # the page's line of its ``$ ``
    text: str  # as bash reads it: continuation lines kept, backslash-newline and all
    expected: tuple[Line, ...]

    def where(self, page: str) -> str:
        shown = self.text.splitlines()[0] + (" \\ ..." if "\n" in self.text else "")
        return f"{page}:{self.number}: `$ {shown}`"


def commands(page: str) -> list[Command]:
    """Every command of every ``console`` block of ``page``, in order (a block indented
    in a list item loses the indentation of its fence)."""
    found: list[Command] = []
    inside = False
    current: tuple[int, list[str], list[Line]] | None = None
    continued = False

    def close() -> None:
        if current is not None:
            found.append(Command(current[0], "\n".join(current[1]), tuple(current[2])))

    indent = 0  # a block in a list item is indented like the item's text
    for number, line in enumerate(page.splitlines(), start=1):
        if not inside:
            inside = line.strip() == "```console"
            indent = len(line) - len(line.lstrip(" "))
            continue
        text = line[min(indent, len(line) - len(line.lstrip(" "))) :]
        if text.strip() == "```":
            close()
            inside, current, continued = False, None, False
        elif continued and current is not None:
            current[1].append(text)
            continued = text.endswith("\\")
        elif text.startswith("$ "):
            close()
            current = (number, [text[2:]], [])
            continued = text.endswith("\\")
        elif current is not None:
            current[2].append(Line(number, text.rstrip()))
        else:
            raise ValueError(f"line {number}: output before any command in a console block")
    if inside:
        raise ValueError("a console block is not closed")
    return found


@dataclasses.dataclass
class Values:
    """What the page's tokens and commit ids turned out to be on this run."""

    seen: dict[str, str] = dataclasses.field(default_factory=dict)

    def check(self, kind: str, shown: str, real: str) -> str | None:
        """Record ``shown`` as ``real``; why not, when that contradicts what was seen."""
        for before, was in self.seen.items():
            common = min(len(before), len(shown))
            if kind == "sha" and before[:common] == shown[:common]:
                if was[:common] != real[:common]:
                    return f"{shown} was {was[: len(shown)]} before, is {real} here"
            elif before == shown and was != real:
                return f"{shown} was {was} before, is {real} here"
        if len(self.seen.get(shown, "")) < len(real):
            self.seen[shown] = real
        return None

    def paste(self, text: str) -> str:
        """``text`` with every value seen replaced by what it was on this run; a short
        commit id of the page stands for the start of the long one seen."""
        for shown in sorted(self.seen, key=len, reverse=True):
            text = text.replace(shown, self.seen[shown])

        def short(match: re.Match[str]) -> str:
            for shown, real in self.seen.items():
                if shown.startswith(match.group()):
                    return real[: len(match.group())]
            return match.group()

        return _SHORT_SHA.sub(short, text)


@dataclasses.dataclass(frozen=True)
class _Pattern:
    line: Line
    regex: re.Pattern[str]
    kinds: tuple[tuple[str, str], ...]  # (kind, value shown) of each group


def _pattern(line: Line) -> _Pattern | None:
    if line.text.strip() == ANY_LINES:
        return None
    parts: list[str] = []
    kinds: list[tuple[str, str]] = []
    end = 0
    for match in _VOLATILE.finditer(line.text):
        kind = match.lastgroup or ""
        shown = match.group()
        parts.append(re.escape(line.text[end : match.start()]))
        any_value = _ANY.get(kind, rf"[0-9a-f]{{{len(shown)}}}")
        parts.append(f"({any_value})")
        kinds.append((kind, shown))
        end = match.end()
    parts.append(re.escape(line.text[end:]))
    return _Pattern(line, re.compile("".join(parts)), tuple(kinds))


def mismatch(command: Command, printed: str, values: Values, page: str) -> str | None:
    """None when ``printed`` is what the page shows; otherwise a message naming the
    page's line, with what it expected and what came."""
    expected = [_pattern(line) for line in command.expected]
    got = [line.rstrip() for line in printed.splitlines()]
    while got and not got[-1]:
        got.pop()
    furthest = [0, 0]  # how far the best attempt got: (expected index, got index)
    failed: set[tuple[int, int]] = set()

    def align(i: int, j: int) -> list[tuple[_Pattern, str]] | None:
        if (i, j) in failed:
            return None
        if (i, j) > tuple(furthest):
            furthest[:] = [i, j]
        if i == len(expected):
            return [] if j == len(got) else None
        pattern = expected[i]
        if pattern is None:  # ``...``: as few lines as will do
            for k in range(j, len(got) + 1):
                rest = align(i + 1, k)
                if rest is not None:
                    return rest
        elif j < len(got) and pattern.regex.fullmatch(got[j]):
            rest = align(i + 1, j + 1)
            if rest is not None:
                return [(pattern, got[j]), *rest]
        failed.add((i, j))
        return None

    pairs = align(0, 0)
    where = command.where(page)
    shown = "\n".join(line.text for line in command.expected)
    both = f"\n--- the page shows:\n{shown}\n--- it printed:\n{printed.rstrip()}"
    if pairs is None:
        i, j = furthest
        if i < len(expected) and expected[i] is not None:
            line = command.expected[i]
            came = got[j] if j < len(got) else "(nothing more)"
            pad = " " * len(page)
            return f"{page}:{line.number}: expected {line.text!r}\n{pad}   got {came!r}{both}"
        return f"{where}: printed more than the page shows, from {got[j]!r}{both}"
    for pattern, text in pairs:
        match = pattern.regex.fullmatch(text)
        assert match is not None
        for (kind, value), real in zip(pattern.kinds, match.groups(), strict=True):
            if kind in ("token", "sha"):
                wrong = values.check(kind, value, real)
                if wrong is not None:
                    return f"{page}:{pattern.line.number}: {wrong}{both}"
    return None


class Shell:
    """Runs commands one by one as in one terminal: ``export`` and ``cd`` carry over."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = dict(env)
        self._state = folder.parent / ".console-state"

    def run(self, text: str, timeout: float = 60) -> tuple[int, str]:
        """The exit status and everything printed (stdout and stderr, as on a terminal)."""
        self._state.mkdir(exist_ok=True)
        where, names = self._state / "pwd", self._state / "env"
        # set -a: a variable the page sets (T=$(...)) is exported, so it carries over
        keep = f'__status=$?\npwd > "{where}"; env -0 > "{names}"; exit $__status\n'
        script = f"set -a\n{text}\n{keep}"
        done = subprocess.run(  # bash, as a reader's terminal runs the page's commands
            ["bash", "-c", script],
            cwd=self.folder,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        if where.exists():
            self.folder = Path(where.read_text().strip())
            pairs = (entry.split("=", 1) for entry in names.read_bytes().decode().split("\0"))
            self.env = {k: v for k, v in (p for p in pairs if len(p) == 2) if k not in _SHELL}
            where.unlink()
        return done.returncode, done.stdout.decode(errors="replace")


_SHELL = {"PWD", "OLDPWD", "SHLVL", "_", "__status"}


def environment(**extra: str) -> dict[str, str]:
    """A new operator's environment: this one without Grove's settings, git's overrides
    or any API key, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GROVE_", "GIT_")) and not name.endswith("_API_KEY")
    }
    env.update(extra)
    return env
