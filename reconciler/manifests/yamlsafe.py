"""A hardened YAML reader (and a writer that it reads back exactly).

Called by `loading` for every manifest; pure: it turns text into plain Python
values and never touches files, the network or a database.

PyYAML's loaders build objects recursively and expand aliases, which is how
billion-laughs bombs and 10,000-deep documents take a process down. This module
never calls them. It walks PyYAML's event stream (LibYAML's C parser when
available) and builds values itself with an explicit stack, so:

- an anchor or alias is refused at its first event, before anything expands;
- nesting is bounded by ``max_depth`` and checked as each level opens;
- duplicate keys are refused with both lines named;
- only the no-op tags ``!!str``, ``!!map`` and ``!!seq`` are allowed;
- plain scalars resolve by the YAML 1.2 core schema (``yes``, ``on`` and
  ``2027-01-01`` stay strings; ``1.10`` is a float, so a version must be quoted);
- a number that has no faithful Python value is refused (Y009): an integer
  outside the signed 64-bit range (Python will not even convert one of more
  than 4,300 digits) or a finite-looking float such as ``1e400`` that would
  become infinity. Hex, octal, sexagesimal and timestamp forms are strings
  here, and ``!!binary`` and the other value-building tags are refused (Y004),
  so no scalar can make the reader raise anything but :class:`YamlRefused`;
- a NUL or a bidirectional control written as an escape in a double-quoted
  string (``"\\0"``, ``"\\u202E"``) is refused like the raw character
  (F005): PostgreSQL cannot store a NUL in JSON, and a reviewer cannot see
  what the escape becomes;
- every key and sequence item gets its line number, so schema errors can name
  the line they are about.

Text must already be decoded and screened for forbidden characters
(:data:`FORBIDDEN`, see `loading`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from reconciler.base import errors
from reconciler.manifests import secretscan

try:  # LibYAML is an order of magnitude faster; PyYAML's wheels ship it.
    from yaml import CSafeDumper as _BaseDumper
    from yaml import CSafeLoader as _EventLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeDumper as _BaseDumper  # type: ignore[assignment]
    from yaml import SafeLoader as _EventLoader  # type: ignore[assignment]

Path = tuple[str | int, ...]

# NUL, and the bidirectional controls of CVE-2021-42574 ("Trojan Source").
FORBIDDEN = re.compile("[\x00\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def forbidden_name(char: str) -> str:
    """How a message names a character :data:`FORBIDDEN` matched."""
    return "a NUL byte" if char == "\x00" else f"the bidirectional control U+{ord(char):04X}"


_ALLOWED_TAGS = frozenset(
    {"tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
)

# YAML 1.2 core schema, restricted to decimal numbers (hex and octal integers
# are strings here, so nothing PyYAML writes unquoted can change type).
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL_TRUE = re.compile(r"^(?:true|True|TRUE)$")
_BOOL_FALSE = re.compile(r"^(?:false|False|FALSE)$")
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")
_MAY_RETYPE = frozenset("0123456789+-.~nNtTfF")
# What SQLite and PostgreSQL store as an integer, and every JSON reader reads exactly
# enough; no manifest field comes near it.
INT_MAX = 2**63 - 1
_INT_DIGITS = len(str(INT_MAX))


@dataclasses.dataclass(frozen=True, slots=True)
class Unrepresentable:
    """A plain scalar that reads as a number no Python value stands for faithfully."""

    text: str
    reason: str


def resolve_plain(text: str) -> Any:
    """The value of an unquoted, untagged scalar under the YAML 1.2 core schema.

    Never raises: a number out of range resolves to :class:`Unrepresentable`.
    """
    first = text[:1]
    if first and first not in _MAY_RETYPE:  # most scalars are words: skip the patterns
        return text
    if _NULL.match(text):
        return None
    if _BOOL_TRUE.match(text):
        return True
    if _BOOL_FALSE.match(text):
        return False
    if _INT.match(text):
        return _integer(text)
    if _FLOAT.match(text):
        number = float(text)  # never raises; a huge exponent gives inf, a tiny one 0.0
        if math.isinf(number):
            return Unrepresentable(text, "is too large for a number (it would be infinity)")
        return number
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


def _integer(text: str) -> int | Unrepresentable:
    # Count digits before converting: int() refuses more than 4,300 digits with a
    # ValueError, and converting is quadratic below that.
    sign = "-" if text.startswith("-") else ""
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) <= _INT_DIGITS:
        value = int(sign + digits)
        if -INT_MAX <= value <= INT_MAX:
            return value
    return Unrepresentable(
        text, f"is out of range: integers in manifests lie between -{INT_MAX} and {INT_MAX}"
    )


def shown_number(text: str) -> str:
    """A number's source text for a message, shortened so a huge one stays one short line."""
    if len(text) <= 24:
        return text
    return f"{text[:12]}... ({len(text)} characters)"


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """Why a text was refused; ``line`` and ``column`` are 1-based."""

    code: str
    line: int
    message: str
    column: int = 0


class YamlRefused(errors.PermanentError):
    """The text breaks one of the rules above; parsing stopped at ``problem``."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclasses.dataclass(frozen=True, slots=True)
class Document:
    """One YAML document: its value and the line of every key and item in it.

    ``lines`` maps a path (keys and list indexes from the root) to the 1-based
    line where that key or item starts; the empty path is the document start.
    ``texts`` keeps the source text of non-string scalars, so an error can say
    "quote it: "1.10"" instead of the float 1.1 YAML made of it.
    """

    index: int
    line: int
    value: Any
    lines: dict[Path, int]
    texts: dict[Path, str]

    def line_of(self, path: Sequence[str | int]) -> int:
        """Line of the deepest known prefix of ``path``."""
        probe = tuple(path)
        while probe:
            found = self.lines.get(probe)
            if found is not None:
                return found
            probe = probe[:-1]
        return self.line


@dataclasses.dataclass(slots=True)
class _Frame:
    container: dict[str, Any] | list[Any]
    path: Path
    key: str | None = None  # mapping frames: the key awaiting its value
    key_lines: dict[str, int] = dataclasses.field(default_factory=dict)


def parse(text: str, *, max_depth: int) -> list[Document]:
    """Parse every document of ``text``; raise :class:`YamlRefused` at the first problem."""
    builder = _Builder(max_depth)
    try:
        for event in yaml.parse(text, Loader=_EventLoader):
            builder.feed(event)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 0)
        what = "; ".join(part for part in (exc.context, exc.problem) if part)
        start = exc.context_mark
        if start is not None and start.line + 1 != line:
            what += f" (the construct starts at line {start.line + 1})"
        if "nesting depth" in what:  # LibYAML's own bound, below ours for flow collections
            raise YamlRefused(
                Problem("Y005", line, "nesting is deeper than the parser allows", column)
            ) from None
        raise YamlRefused(Problem("Y001", line, f"YAML syntax: {what}", column)) from None
    except yaml.YAMLError as exc:  # pragma: no cover - unmarked errors are rare
        raise YamlRefused(Problem("Y001", 1, f"YAML syntax: {exc}")) from None
    return builder.documents


class _Builder:
    """Turns events into values with an explicit stack (no recursion)."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.documents: list[Document] = []
        self.stack: list[_Frame] = []
        self.lines: dict[Path, int] = {}
        self.texts: dict[Path, str] = {}
        self.doc_line = 1
        self.root: Any = None

    def feed(self, event: yaml.Event) -> None:
        mark = event.start_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 0)
        if isinstance(event, yaml.ScalarEvent):  # the most frequent event first
            self._check_node(event, line, column)
            self._scalar(event, line, column)
            return
        if isinstance(event, yaml.DocumentStartEvent):
            if event.tags:
                raise YamlRefused(Problem("Y004", line, "%TAG directives are not allowed", column))
            self.lines, self.texts, self.doc_line, self.root = {}, {}, line, None
            return
        if isinstance(event, yaml.DocumentEndEvent):
            self.documents.append(
                Document(len(self.documents), self.doc_line, self.root, self.lines, self.texts)
            )
            return
        if isinstance(event, yaml.AliasEvent):
            raise YamlRefused(
                Problem("Y002", line, "aliases (*name) are not allowed; repeat the value", column)
            )
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            self._check_node(event, line, column)
            self._open(event, line, column)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            frame = self.stack.pop()
            self._attach(frame.container)

    def _check_node(self, event: yaml.NodeEvent, line: int, column: int) -> None:
        if event.anchor is not None:
            raise YamlRefused(
                Problem("Y002", line, "anchors (&name) are not allowed; repeat the value", column)
            )
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in _ALLOWED_TAGS:
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            raise YamlRefused(Problem("Y004", line, f"tag {shown[:60]} is not allowed", column))

    def _path_for_child(self) -> Path | None:
        """Path of the value about to be attached, or None when it is a mapping key."""
        if not self.stack:
            return ()
        frame = self.stack[-1]
        if isinstance(frame.container, list):
            return (*frame.path, len(frame.container))
        if frame.key is None:
            return None
        return (*frame.path, frame.key)

    def _scalar(self, event: yaml.ScalarEvent, line: int, column: int) -> None:
        plain = not event.style and event.tag is None
        if event.style == '"':  # escapes can spell what the raw text may not hold
            bad = FORBIDDEN.search(event.value)
            if bad is not None:
                what = forbidden_name(bad.group())
                raise YamlRefused(
                    Problem("F005", line, f"contains {what}, written as an escape", column)
                )
        value: Any = resolve_plain(event.value) if plain else event.value
        if isinstance(value, Unrepresentable):
            raise YamlRefused(
                Problem(
                    "Y009",
                    line,
                    f"number {shown_number(value.text)} {value.reason}; "
                    "write a smaller number, or quote it if it is text",
                    column,
                )
            )
        path = self._path_for_child()
        if path is None:  # a mapping key
            frame = self.stack[-1]
            if not isinstance(value, str):
                raise YamlRefused(
                    Problem("Y008", line, "mapping keys must be strings; quote the key", column)
                )
            first = frame.key_lines.get(value)
            if first is not None:
                raise YamlRefused(
                    Problem(
                        "Y003",
                        line,
                        f"duplicate key {secretscan.shown_name(value)} at lines {first} and {line}",
                        column,
                    )
                )
            frame.key_lines[value] = line
            frame.key = value
            self.lines[(*frame.path, value)] = line
            return
        if not isinstance(value, str):
            self.texts[path] = event.value
        if isinstance(self.stack[-1].container if self.stack else None, list):
            self.lines[path] = line
        self._attach(value)

    def _open(self, event: yaml.NodeEvent, line: int, column: int) -> None:
        path = self._path_for_child()
        if path is None:
            raise YamlRefused(
                Problem("Y008", line, "mapping keys must be strings, not collections", column)
            )
        if len(self.stack) + 1 > self.max_depth:
            raise YamlRefused(
                Problem("Y005", line, f"nesting is deeper than {self.max_depth} levels", column)
            )
        if self.stack and isinstance(self.stack[-1].container, list):
            self.lines[path] = line
        container: dict[str, Any] | list[Any] = (
            {} if isinstance(event, yaml.MappingStartEvent) else []
        )
        self.stack.append(_Frame(container, path))

    def _attach(self, value: Any) -> None:
        if not self.stack:
            self.root = value
            return
        frame = self.stack[-1]
        if isinstance(frame.container, list):
            frame.container.append(value)
        else:
            assert frame.key is not None
            frame.container[frame.key] = value
            frame.key = None


# ---------------------------------------------------------------- writing


class _Dumper(_BaseDumper):
    """Quotes every string that :func:`resolve_plain` would read as something else."""


def _represent_str(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    style = None if isinstance(resolve_plain(value), str) else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(values: Sequence[Any]) -> str:
    """Write ``values`` as YAML documents that :func:`parse` reads back equal."""
    return yaml.dump_all(
        values,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        explicit_start=len(values) > 1,
        width=1_000_000,
    )


def iter_scalars(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every (path, leaf) of a parsed value, without recursion."""
    pending: list[tuple[Path, Any]] = [(path, value)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, dict):
            pending.extend(((*where, key), child) for key, child in item.items())
        elif isinstance(item, list):
            pending.extend(((*where, index), child) for index, child in enumerate(item))
        else:
            yield where, item
