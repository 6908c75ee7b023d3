"""Turn manifest bytes into validated GroveObjects, or into diagnostics.

Called by `validating` (files from a folder) and, later, by the git source
(blobs at a commit) and the API (request bodies). Pure: it receives bytes with
a display name and returns objects and problems; it never opens a file, a
socket or a database, and never prints.

Each file goes through four gates, and a file that fails one stops there:
size caps, bytes (UTF-8, no NUL or bidirectional controls), YAML structure
(`yamlsafe`), then per document the secret scan, the envelope and the strict
schema. Every problem is reported with file, line and rule code; all files are
checked, so one run shows every error.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Sequence
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from reconciler.base import diagnostics
from reconciler.base.diagnostics import Diagnostic
from reconciler.base.settings import Settings
from reconciler.manifests import kinds as manifests
from reconciler.manifests import secretscan, yamlsafe

_BOM = "\ufeff"


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    max_file_bytes: int
    max_tree_bytes: int
    max_files: int
    max_depth: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_file_bytes=settings.max_file_bytes,
            max_tree_bytes=settings.max_tree_bytes,
            max_files=settings.max_files,
            max_depth=settings.max_depth,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class SourceFile:
    """A manifest file's bytes and the name to report it by."""

    name: str
    data: bytes
    blob: str = ""  # the git blob id, when the file came from git


@dataclasses.dataclass(frozen=True, slots=True)
class Located:
    """A valid object and where it came from, so later checks can point at lines."""

    obj: manifests.GroveObject
    file: str
    document: yamlsafe.Document
    blob: str = ""

    @property
    def kind(self) -> str:
        return self.obj.meta.type

    @property
    def id(self) -> str:
        return self.obj.meta.id

    def line_of(self, *path: str | int) -> int:
        return self.document.line_of(path)


@dataclasses.dataclass(slots=True)
class LoadResult:
    objects: list[Located] = dataclasses.field(default_factory=list)
    diagnostics: list[Diagnostic] = dataclasses.field(default_factory=list)
    # (kind, id) of documents that named an id but failed validation: references to
    # them are not "dangling", the document just needs fixing first.
    broken_ids: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    # False when a file could not be parsed at all, so its ids are unknown.
    complete: bool = True
    files: int = 0


class Budget:
    """Counts files and bytes of one tree against the caps; shared by every source."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def admit(self, name: str, size: int) -> Diagnostic | None:
        """Count one more file; an F002 diagnostic once the tree is over a cap."""
        self.files += 1
        self.bytes += size
        if self.files > self.limits.max_files:
            return diagnostics.error(
                name,
                1,
                "F002",
                f"more than {self.limits.max_files} manifest files; this file and the rest "
                "were not read",
            )
        if self.bytes > self.limits.max_tree_bytes:
            return diagnostics.error(
                name,
                1,
                "F002",
                f"manifests exceed {self.limits.max_tree_bytes} bytes in all; "
                "this file and the rest were not read",
            )
        return None


def load(files: Iterable[SourceFile], limits: Limits, *, allow_local_endpoints: bool) -> LoadResult:
    """Load every file; never raises for bad input."""
    result = LoadResult()
    budget = Budget(limits)
    for source in files:
        over = budget.admit(source.name, len(source.data))
        if over is not None:
            result.diagnostics.append(over)
            result.complete = False
            break
        result.files += 1
        _load_file(source, limits, allow_local_endpoints, result)
    return result


def check_size(name: str, size: int, limits: Limits) -> Diagnostic | None:
    if size > limits.max_file_bytes:
        return diagnostics.error(
            name, 1, "F001", f"file is {size} bytes; the cap is {limits.max_file_bytes}"
        )
    return None


def check_name(name: str) -> Diagnostic | None:
    """F004 for a file name that is not UTF-8 (git and the file system allow any bytes;
    Python holds them as lone surrogates, which no database, JSON reader or terminal takes).
    The diagnostic names the file with the bad bytes written as ``\\xNN``."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return diagnostics.error(shown, 1, "F004", "the file name is not valid UTF-8; rename it")
    return None


def decode(name: str, data: bytes) -> tuple[str | None, Diagnostic | None]:
    """UTF-8 text without a BOM, or the reason it cannot be had."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, diagnostics.error(
            name, line, "F004", f"not valid UTF-8 (byte {exc.start}); save the file as UTF-8"
        )
    text = text.removeprefix(_BOM)
    bad = yamlsafe.FORBIDDEN.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        what = yamlsafe.forbidden_name(bad.group())
        return None, diagnostics.error(name, line, "F005", f"contains {what}")
    return text, None


def _load_file(source: SourceFile, limits: Limits, allow_local: bool, result: LoadResult) -> None:
    too_big = check_size(source.name, len(source.data), limits) or check_name(source.name)
    if too_big is not None:
        result.diagnostics.append(too_big)
        result.complete = False
        return
    text, problem = decode(source.name, source.data)
    if text is None:
        assert problem is not None
        result.diagnostics.append(problem)
        result.complete = False
        return
    try:
        documents = yamlsafe.parse(text, max_depth=limits.max_depth)
    except yamlsafe.YamlRefused as exc:
        p = exc.problem
        result.diagnostics.append(
            Diagnostic(
                file=source.name, line=p.line, column=p.column, code=p.code, message=p.message
            )
        )
        result.complete = False
        return
    if not documents:
        result.diagnostics.append(
            diagnostics.error(source.name, 1, "Y006", "file has no YAML documents")
        )
        return
    for document in documents:
        _load_document(source.name, document, allow_local, result, source.blob)


def _load_document(
    name: str, document: yamlsafe.Document, allow_local: bool, result: LoadResult, blob: str = ""
) -> None:
    raw = document.value
    where = f"document {document.index + 1}: " if document.index else ""
    if raw is None:
        result.diagnostics.append(
            diagnostics.error(name, document.line, "Y006", f"{where}document is empty")
        )
        return
    if not isinstance(raw, dict):
        result.diagnostics.append(
            diagnostics.error(
                name,
                document.line,
                "Y007",
                f"{where}the root must be a mapping with meta and payload, not {_kind(raw)}",
            )
        )
        return
    found: list[Diagnostic] = []
    secret_paths: list[yamlsafe.Path] = []
    for path, kind, is_key in secretscan.scan(raw):
        secret_paths.append(path)
        shown = _dotted((*path[:-1], "<key>")) if is_key else _dotted(path)
        what = "a key" if is_key else ""
        found.append(
            diagnostics.error(
                name,
                document.line_of(path),
                "K001",
                f"{shown} {what + ' that ' if what else ''}looks like {kind}; never commit keys: "
                "put it in an environment variable and write credentials: {env: VAR_NAME}",
                path=shown,
            )
        )
    obj = _validate(name, document, raw, allow_local, found, secret_paths)
    result.diagnostics.extend(found)
    if obj is not None and not found:
        result.objects.append(Located(obj, name, document, blob))
        return
    meta = raw.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("id"), str):
        declared = meta.get("type")
        if isinstance(declared, str):
            result.broken_ids.add((declared, meta["id"]))


def _validate(
    name: str,
    document: yamlsafe.Document,
    raw: dict[str, Any],
    allow_local: bool,
    found: list[Diagnostic],
    secret_paths: Sequence[yamlsafe.Path],
) -> manifests.GroveObject | None:
    meta = raw.get("meta")
    kind_name = meta.get("type") if isinstance(meta, dict) else None
    cls = manifests.KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if cls is None:
        found.extend(_envelope_problems(name, document, raw))
        return None
    problems: list[manifests.Problem] = []
    context = manifests.validator_context(allow_local_endpoints=allow_local)
    context["problems"] = problems
    try:
        obj = cls.model_validate(raw, context=context)
    except ValidationError as exc:
        for detail in exc.errors(include_url=False, include_input=False):
            loc = _as_path([part for part in detail["loc"] if part != "[key]"])
            if _under(loc, secret_paths):
                continue
            diag = _from_pydantic(name, document, detail, cls)
            if diag is not None:
                found.append(diag)
        return None
    for path, code, message in problems:
        full = _as_path(("payload", *path))
        found.append(
            diagnostics.error(
                name,
                document.line_of(full),
                code,
                f"{_dotted(full)}: {message}",
                path=_dotted(full),
            )
        )
    return obj if not problems else None


def _envelope_problems(
    name: str, document: yamlsafe.Document, raw: dict[str, Any]
) -> list[Diagnostic]:
    """Without a known meta.type the payload cannot be judged; say what the envelope lacks."""
    kinds = ", ".join(manifests.KINDS)
    found = [
        diagnostics.error(
            name, document.line_of((key,)), "S001", f"{key}: unknown field; allowed: meta, payload"
        )
        for key in raw
        if key not in ("meta", "payload")
    ]
    if "payload" not in raw:
        found.append(
            diagnostics.error(
                name, document.line, "S002", "document: missing required field 'payload'"
            )
        )
    meta = raw.get("meta")
    if meta is None:
        found.append(
            diagnostics.error(
                name, document.line, "S002", "document: missing required field 'meta'"
            )
        )
    elif not isinstance(meta, dict):
        found.append(
            diagnostics.error(
                name,
                document.line_of(("meta",)),
                "S003",
                f"meta: expected a mapping, got {_kind(meta)}",
            )
        )
    elif "type" not in meta:
        found.append(
            diagnostics.error(
                name,
                document.line_of(("meta",)),
                "S002",
                f"meta: missing required field 'type' (one of {kinds})",
                path="meta.type",
            )
        )
    else:
        found.append(
            diagnostics.error(
                name,
                document.line_of(("meta", "type")),
                "S009",
                f"meta.type: must be one of: {kinds}",
                path="meta.type",
            )
        )
    return found


# ---------------------------------------------------------------- pydantic -> diagnostics

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "date_type": "a date (YYYY-MM-DD)",
    "none_required": "null",
}
_RANGE_TYPES = frozenset(
    {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "too_short",
        "too_long",
        "string_too_short",
        "string_too_long",
        "string_pattern_mismatch",
        "multiple_of",
        "finite_number",
    }
)


def _from_pydantic(
    name: str, document: yamlsafe.Document, detail: ErrorDetails, cls: type[BaseModel]
) -> Diagnostic | None:
    loc = [part for part in detail["loc"] if part != "[key]"]
    is_key = bool(detail["loc"]) and detail["loc"][-1] == "[key]"
    # Unions of a mapping and null report each branch; keep the mapping's errors.
    loc = [part for part in loc if not (isinstance(part, str) and part in ("none", "nullable"))]
    kind = detail["type"]
    if kind == "none_required":
        return None
    path = _as_path(loc)
    dotted = _dotted(path)
    line = document.line_of(path)
    raw = _value_at(document.value, path)
    if kind.startswith("grove_"):
        code, message = kind.removeprefix("grove_"), detail["msg"]
    elif kind == "extra_forbidden":
        field = str(path[-1]) if path else "?"
        code, message = "S001", f"unknown field {_short(field)}" + _suggest(cls, path)
    elif kind == "missing":
        code, message = "S002", f"missing required field {_short(str(path[-1]))}"
        dotted = _dotted(path[:-1]) or "document"
    elif kind in _TYPE_NAMES:
        code, message = "S003", _wrong_type(kind, raw, document.texts.get(path))
    elif kind in ("literal_error", "enum"):
        allowed = (detail.get("ctx") or {}).get("expected", "")
        what = "key" if is_key else "value"
        code, message = "S005", f"{what} is not allowed; expected {allowed}"
        if is_key and isinstance(path[-1], str):
            code, message = "S005", f"unknown key {_short(path[-1])}; expected {allowed}"
    elif kind in _RANGE_TYPES:
        code, message = "S004", detail["msg"]
    else:
        code, message = "S012", detail["msg"]
    return diagnostics.error(name, line, code, f"{dotted}: {message}", path=dotted)


def _wrong_type(kind: str, raw: Any, text: str | None) -> str:
    expected = _TYPE_NAMES[kind]
    got = _kind(raw)
    message = f"expected {expected}, got {got}"
    if kind == "string_type" and text is not None and isinstance(raw, int | float | bool):
        shown = text if len(text) <= 24 else text[:21] + "..."
        message += f'; quote it: "{shown}"'
    elif kind == "bool_type" and isinstance(raw, str):
        message += "; write true or false (yes, no, on and off are strings in YAML 1.2)"
    elif kind in ("int_type", "int_from_float") and isinstance(raw, float):
        if not math.isfinite(raw):
            message = "expected an integer, got a non-finite number (.inf or .nan)"
        elif raw.is_integer():
            message = "expected an integer; write it without a decimal point or exponent"
        else:
            message = "expected a whole number, got a fraction"
    return message


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__  # pragma: no cover - yamlsafe only yields the above


def _suggest(cls: type[BaseModel], path: yamlsafe.Path) -> str:
    model = _model_at(cls, path[:-1])
    if model is None:
        return ""
    names = [field.alias or key for key, field in model.model_fields.items()]
    close = difflib.get_close_matches(str(path[-1]), names, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]}?"
    return "; allowed: " + ", ".join(names)


def _model_at(cls: type[BaseModel], path: yamlsafe.Path) -> type[BaseModel] | None:
    model: type[BaseModel] | None = cls
    for part in path:
        if model is None or not isinstance(part, str):
            return None
        by_alias = {field.alias or key: field for key, field in model.model_fields.items()}
        field = by_alias.get(part)
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, UnionType):
        for arg in get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _value_at(value: Any, path: yamlsafe.Path) -> Any:
    for part in path:
        if isinstance(value, dict) and isinstance(part, str):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
        else:
            return None
    return value


def _as_path(loc: Sequence[Any]) -> yamlsafe.Path:
    return tuple(part if isinstance(part, int) else str(part) for part in loc)


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _under(loc: yamlsafe.Path, secret_paths: Sequence[yamlsafe.Path]) -> bool:
    """A schema error about a field already reported as a secret (or inside it) adds nothing."""
    return any(loc[: len(secret)] == secret for secret in secret_paths)


def _short(text: str) -> str:
    return secretscan.shown_name(text)
