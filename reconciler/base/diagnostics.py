"""Diagnostics: the problems validation finds, and the catalog of their rule codes.

A diagnostic is plain data (file, line, code, message, severity) produced by
the loading and checking layers and rendered by the entry points. The catalog
below is the single source of the stable rule codes that `docs/validation.md`
documents; a test keeps the two in step. Messages never quote a manifest value
that could be a credential.

Rendering lives here too, once for every output (``grove validate``'s text,
github and markdown formats, ``grove diff`` and ``grove plan``'s diagnostics):
file names and messages quote what a commit chose (a file name, a YAML key), so
every control character is shown as an escape (:func:`printable`) and no file can
print a line of its own, such as a forged ``::error`` workflow command. Markdown
(a pull-request comment) also neutralises what Markdown and HTML would read in
it (:func:`markdown_text`, :func:`code_span`): a manifest cannot inject a link,
an image, a tag or an ``@mention`` into the comment. JSON keeps the exact values,
escaped by JSON itself (ASCII only).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from pydantic import computed_field

from reconciler.base import serial


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


# code -> (short name, what it means). Codes are stable: never renumber, only add.
CATALOG: dict[str, tuple[str, str]] = {
    # F: files and bytes, checked before any YAML parsing
    "F001": ("file-too-large", "a manifest file is larger than the per-file cap"),
    "F002": ("tree-too-large", "the manifests together exceed the per-tree size or file-count cap"),
    "F003": ("symlink", "a symbolic link in the manifests path; links are never followed"),
    "F004": ("invalid-utf8", "a file is not valid UTF-8"),
    "F005": ("forbidden-character", "a NUL or bidirectional-control character"),
    "F006": ("unreadable", "a file or folder could not be read"),
    "F007": ("not-found", "a path given on the command line does not exist"),
    "F008": ("special-file", "a device, FIFO or socket in the manifests path"),
    "F009": ("submodule", "a git submodule in the manifests path; its content is not read"),
    # Y: YAML structure, checked while parsing
    "Y001": ("yaml-syntax", "the file is not well-formed YAML"),
    "Y002": ("yaml-alias", "anchors and aliases (&a / *a) are not allowed"),
    "Y003": ("duplicate-key", "the same key twice in one mapping"),
    "Y004": ("yaml-tag", "explicit tags other than !!str, !!map and !!seq are not allowed"),
    "Y005": ("too-deep", "nesting deeper than the depth cap"),
    "Y006": ("empty", "a file or document with no content"),
    "Y007": ("not-a-mapping", "a document whose root is not a mapping"),
    "Y008": ("bad-key", "a mapping key that is not a plain string"),
    "Y009": ("number-out-of-range", "a number no value stands for (64-bit integers, finite)"),
    # S: the schema of one object
    "S001": ("unknown-field", "a field the schema does not define"),
    "S002": ("missing-field", "a required field is absent"),
    "S003": ("wrong-type", "a value of the wrong type (strict: no coercion)"),
    "S004": ("out-of-range", "a value outside its range, length or pattern"),
    "S005": ("invalid-choice", "a value not among the allowed choices"),
    "S006": ("invalid-id", "an id that is not lowercase ASCII letters, digits and dashes"),
    "S007": ("endpoint-not-allowed", "an endpoint that is not https to a public host"),
    "S008": ("provider-fields", "fields that do not fit the provider (endpoint on mock, ...)"),
    "S009": ("unknown-type", "meta.type is not AIModel or RoutingRule"),
    "S010": ("invalid-date", "a date that is not YYYY-MM-DD or is out of order"),
    "S011": ("invalid-version", "meta.version is not a version string"),
    "S012": ("invalid-value", "a value that breaks a rule of its field"),
    "S013": ("reserved-id", "an id that is a word of the API's or console's paths (health, ...)"),
    # R: references between objects
    "R001": ("duplicate-id", "the same id twice for one type (both places named)"),
    "R002": ("dangling-fallback", "a fallback names no model"),
    "R003": ("dangling-chain", "a rule's chain names no model"),
    "R004": ("failover-cycle", "fallbacks form a cycle"),
    "R005": ("chain-misses-requires", "a chain model lacks a capability the rule requires"),
    "R006": ("rule-unservable", "an enabled rule no enabled model can serve"),
    "R007": ("duplicate-task-type", "two rules claim the same taskType"),
    "R008": ("inactive-reference", "a fallback or chain names a model that is not enabled"),
    "R009": ("dangling-successor", "lifecycle.successor names no model"),
    # K: secrets
    "K001": ("literal-secret", "something that looks like a literal key or token"),
    # L: lifecycle dates
    "L001": ("sunset-soon", "an enabled model's sunset date is within 30 days"),
    "L002": ("sunset-passed", "a model is still enabled after its sunset date"),
    "L003": ("deprecated", "an enabled model is past its deprecation date"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem, pinned to a place in a file. Its JSON is the shape every JSON output
    uses (``grove validate``, ``diff`` and ``plan``)."""

    _json_order = serial.key_order(
        "file", "line", "column", "code", "name", "severity", "path", "message"
    )

    file: str
    line: int
    code: str
    message: str
    severity: Severity = Severity.ERROR
    column: int = 0
    path: str = ""  # dotted field path inside the document, when known

    def __post_init__(self) -> None:
        if self.code not in CATALOG:
            raise ValueError(f"unknown rule code {self.code}")

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    @computed_field  # type: ignore[prop-decorator]
    @property
    def name(self) -> str:
        return CATALOG[self.code][0]

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.file, self.line, self.column, self.code, self.message)

    def to_json(self) -> dict[str, Any]:
        return serial.dump(self)


def error(file: str, line: int, code: str, message: str, *, path: str = "") -> Diagnostic:
    return Diagnostic(file=file, line=line, code=code, message=message, path=path)


def warning(file: str, line: int, code: str, message: str, *, path: str = "") -> Diagnostic:
    return Diagnostic(
        file=file, line=line, code=code, message=message, path=path, severity=Severity.WARNING
    )


# ---------------------------------------------------------------- rendering

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    code = ord(char)
    if char in _ESCAPES:
        return _ESCAPES[char]
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for an undecodable byte
        code -= 0xDC00  # shown as the byte a file name held
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` safe to print in a terminal or a CI log, on the line it is on: every
    character Python does not call printable is shown as an escape (``\\n``, ``\\x1b``,
    ``\\u202e``): C0 and C1 controls, DEL, line and paragraph separators, bidirectional
    and other invisible format characters, and the lone surrogates an undecodable byte
    of a file name becomes. Text without any comes back unchanged."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def text_line(item: Diagnostic) -> str:
    """``file:line: CODE message``, one line whatever the file name or message hold."""
    label = "" if item.is_error else "warning: "
    return f"{printable(item.file)}:{item.line}: {item.code} {label}{printable(item.message)}"


def _github_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github_property(text: str) -> str:
    return _github_data(text).replace(":", "%3A").replace(",", "%2C")


def github_line(item: Diagnostic) -> str:
    """One GitHub Actions workflow command (``::error file=F,line=L::CODE message``),
    escaped as GitHub's runner reads it (``%``, CR and LF in the message; also ``:``
    and ``,`` in the file property), after :func:`printable`."""
    level = "error" if item.is_error else "warning"
    return (
        f"::{level} file={_github_property(printable(item.file))},line={item.line}::"
        f"{_github_data(printable(f'{item.code} {item.message}'))}"
    )


def ordered(items: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Deterministic order for output: by file, line, column, code; duplicates dropped."""
    return sorted(set(items), key=Diagnostic.sort_key)


# ---------------------------------------------------------------- markdown

_MARKDOWN_PUNCTUATION = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?\[\\\]^_`{|}~])")


def markdown_text(text: str) -> str:
    """``text`` as literal Markdown prose, after :func:`printable`: every ASCII punctuation
    character is backslash-escaped (CommonMark reads ``\\<`` as a plain ``<``, so no tag,
    link, emphasis or table cell starts), and ``@`` is followed by a zero-width space
    (``&#8203;``) so GitHub does not turn ``@someone`` into a notification."""
    escaped = _MARKDOWN_PUNCTUATION.sub(r"\\\1", printable(text))
    return escaped.replace("@", "@&#8203;")


def code_span(text: str) -> str:
    """``text`` as one inline code span, after :func:`printable`: the fence is one
    backtick longer than any run of backticks inside, so nothing closes it early, and
    nothing inside is read as Markdown, HTML, a link or a mention. Not for a table cell:
    GitHub splits cells at a ``|`` even inside code."""
    shown = printable(text)
    longest = max((len(run) for run in re.findall(r"`+", shown)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") or not shown.strip() else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def markdown_line(item: Diagnostic) -> str:
    """One list item: ``- `file:line` **CODE** name: message`` (warnings say so)."""
    label = "" if item.is_error else "warning, "
    return (
        f"- {code_span(f'{item.file}:{item.line}')} **{item.code}** "
        f"({label}{item.name}): {markdown_text(item.message)}"
    )


def markdown_report(title: str, found: Sequence[Diagnostic], summary: str) -> str:
    """A Markdown report of manifest problems for a pull-request comment: a heading,
    ``summary`` (Grove's own words, trusted) and one list item per problem."""
    lines = [f"### {title}", "", summary, ""]
    lines += [markdown_line(item) for item in found]
    return "\n".join(lines) + "\n"
