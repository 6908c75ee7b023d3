"""The plan: an immutable, ordered list of changes from live state to desired state.

Data only. `diffing` builds it, `safety` judges it, `applying` executes it;
``grove plan``, ``grove diff``, the API and the console render the same
object (text like Terraform's, JSON, or Markdown for pull-request comments).
A plan saved with ``grove plan --out`` is this object as JSON.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any

from pydantic import computed_field

from reconciler.base import diagnostics, serial

FORMAT_VERSION = 1


class ChangeKind(StrEnum):
    CREATE = "create"
    VERSION = "version"  # an AIModel's meta.version changed
    UPDATE = "update"  # a RoutingRule's content changed
    ENABLE = "enable"
    DISABLE = "disable"
    RETIRE = "retire"
    RESTORE = "restore"  # live was edited out of band; put git's content back
    REMOVE = "remove"


SYMBOLS = {ChangeKind.CREATE: "+", ChangeKind.REMOVE: "-"}  # every other kind is "~"
# The tone of a marker, for a renderer that colours (the CLI: + green, - red, ~ yellow).
TONES = {"+": "create", "-": "remove", "~": "change"}

# ``paint(text, tone)`` -> the text as shown; tones are those of TONES and "refused"
Paint = Callable[[str, str], str]


@dataclasses.dataclass(frozen=True, slots=True)
class FieldDiff:
    """One field that changes; ``before``/``after`` are JSON values, absent as ``None``."""

    path: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return serial.dump(self)


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    __pydantic_config__ = serial.CAMEL

    kind: ChangeKind
    object_kind: str
    object_id: str
    version_from: str | None
    version_to: str | None
    state_from: str | None
    state_to: str | None
    fields: tuple[FieldDiff, ...] = ()
    document: dict[str, Any] | None = None  # desired meta + payload; None for remove
    source_path: str = ""
    source_blob: str = ""
    corrects_drift: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.object_kind, self.object_id)

    @property
    def address(self) -> str:
        return f"{self.object_kind}/{self.object_id}"

    def to_json(self) -> dict[str, Any]:
        return serial.dump(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        return serial.load(cls, data)


@dataclasses.dataclass(frozen=True, slots=True)
class Violation:
    """A safety rule the plan breaks: code, the objects involved, and the way out."""

    __pydantic_config__ = serial.CAMEL

    code: str
    name: str
    message: str
    objects: tuple[str, ...]
    way_out: str

    def to_json(self) -> dict[str, Any]:
        return serial.dump(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Violation:
        return serial.load(cls, data)


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """Changes that turn the live registry (at ``base_revision``/``state_serial``) into
    git at ``revision``, and the safety verdict on them."""

    __pydantic_config__ = serial.CAMEL
    _json_order = serial.key_order(
        "formatVersion",
        "revision",
        "baseRevision",
        "stateSerial",
        "tree",
        "counts",
        "changes",
        "refused",
        "violations",
    )

    revision: str
    base_revision: str | None
    state_serial: int
    changes: tuple[Change, ...]
    violations: tuple[Violation, ...] = ()
    tree: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def format_version(self) -> int:
        return FORMAT_VERSION

    @computed_field  # type: ignore[prop-decorator]
    @property
    def refused(self) -> bool:
        return bool(self.violations)

    @property
    def empty(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, int]:
        counted = Counter(change.kind.value for change in self.changes)
        return {kind.value: counted[kind.value] for kind in ChangeKind if counted[kind.value]}

    @computed_field(alias="counts")  # type: ignore[prop-decorator]
    @property
    def kind_counts(self) -> dict[str, int]:
        """:meth:`counts`, as the plan's JSON writes it."""
        return self.counts()

    def to_json(self) -> dict[str, Any]:
        return serial.dump(self)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """A saved plan; a plain ValueError names a format this version does not read
        (the one check that is not the type's shape)."""
        if not isinstance(data, dict):
            raise ValueError(f"a plan is a JSON object, not {type(data).__name__}")
        if data.get("formatVersion") != FORMAT_VERSION:
            raise ValueError(f"plan format {data.get('formatVersion')!r} is not {FORMAT_VERSION}")
        return serial.load(cls, data)

    def same_changes(self, other: Plan) -> bool:
        return [c.to_json() for c in self.changes] == [c.to_json() for c in other.changes]


def ordered(changes: Iterable[Change]) -> tuple[Change, ...]:
    """Deterministic order: by object type, then id (one change per object)."""
    return tuple(sorted(changes, key=lambda change: (change.object_kind, change.object_id)))


# ---------------------------------------------------------------- rendering


def _short(revision: str | None) -> str:
    return revision[:12] if revision else "nothing"


def _value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not None else "(absent)"
    text = diagnostics.printable(text)  # a name may hold an ESC, a C1 control or U+2028
    return text if len(text) <= 80 else text[:77] + "..."


def headline(change: Change) -> str:
    kind = change.kind
    if kind is ChangeKind.CREATE:
        return f"create (version {change.version_to})"
    if kind is ChangeKind.REMOVE:
        return f"remove (version {change.version_from}, {change.state_from})"
    if kind in (ChangeKind.VERSION, ChangeKind.UPDATE):
        text = f"{kind.value} {change.version_from} -> {change.version_to}"
        if change.state_from != change.state_to:
            text += f", {change.state_from} -> {change.state_to}"
        return text
    if kind is ChangeKind.RESTORE:
        return "restore git's content over an out-of-band edit (drift)"
    return f"{kind.value} ({change.state_from} -> {change.state_to})"


def _plain(text: str, _tone: str) -> str:
    return text


def render_text(
    plan: Plan, *, title: str = "Plan", forced: bool = False, paint: Paint | None = None
) -> str:
    """Terraform-like text. ``title="Diff"`` compares two revisions, not the registry.

    Each change starts with its marker (``+`` create, ``-`` remove, ``~`` any other
    change, also before each changed field), which says it without colour; ``paint``
    colours a line by its tone (:data:`TONES`) and the refused verdict by ``refused``.
    """
    style = paint or _plain
    comparing = title == "Diff"
    head = f"{title}: {_short(plan.base_revision)} -> {_short(plan.revision)}"
    lines = [head if comparing else f"{head} (registry serial {plan.state_serial})", ""]
    if plan.empty:
        lines.append(
            "No changes between the two revisions."
            if comparing
            else "No changes. The registry matches git."
        )
    for change in plan.changes:
        symbol = SYMBOLS.get(change.kind, "~")
        drift = (
            "  [corrects drift]"
            if change.corrects_drift and change.kind is not ChangeKind.RESTORE
            else ""
        )
        line = f"  {symbol} {change.address:<40} {headline(change)}{drift}"
        lines.append(style(line, TONES[symbol]))
        if change.kind not in (ChangeKind.CREATE, ChangeKind.REMOVE):
            for diff in change.fields:
                line = f"      ~ {diff.path}: {_value(diff.before)} -> {_value(diff.after)}"
                lines.append(style(line, TONES["~"]))
    counts = plan.counts()
    if counts:
        lines += ["", "Changes: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + "."]
    lines.append("")
    verdict = verdict_lines(plan, forced=forced)
    if plan.refused:
        verdict[0] = style(verdict[0], "refused")
    lines += verdict
    return "\n".join(lines) + "\n"


def verdict_lines(plan: Plan, *, forced: bool = False) -> list[str]:
    if not plan.refused:
        return ["Safety: ok."]
    if forced:
        out = [f"Safety: REFUSED ({len(plan.violations)} violation(s)), OVERRIDDEN by --force:"]
    else:
        out = [f"Safety: REFUSED ({len(plan.violations)} violation(s); nothing will be applied)."]
    for violation in plan.violations:
        out.append(f"  {violation.code} {violation.name}: {violation.message}")
        out.append(f"       way out: {violation.way_out}")
    return out


def render_markdown(plan: Plan) -> str:
    """For a pull-request comment: a summary table, the field changes, the verdict.

    What a manifest chose is neutralised: ids are ``[a-z0-9-]`` by the schema, field
    values sit in a fenced ``diff`` block on lines that start with ``-``, ``+`` or
    ``@@`` (no fence can close early), and violation messages are escaped prose."""
    verdict = "refused" if plan.refused else ("no changes" if plan.empty else "safe to apply")
    lines = [
        f"### Grove plan: {verdict}",
        "",
        f"`{_short(plan.base_revision)}` → `{_short(plan.revision)}`",
        "",
    ]
    if plan.changes:
        lines += ["| | object | change |", "|---|---|---|"]
        for change in plan.changes:
            symbol = SYMBOLS.get(change.kind, "~")
            lines.append(f"| `{symbol}` | `{change.address}` | {headline(change)} |")
        details = [
            c
            for c in plan.changes
            if c.fields and c.kind not in (ChangeKind.CREATE, ChangeKind.REMOVE)
        ]
        if details:
            lines += ["", "<details><summary>Field changes</summary>", "", "```diff"]
            for change in details:
                lines.append(f"@@ {change.address} @@")
                for diff in change.fields:
                    lines.append(f"- {diff.path}: {_value(diff.before)}")
                    lines.append(f"+ {diff.path}: {_value(diff.after)}")
            lines += ["```", "", "</details>"]
    else:
        lines.append("No changes.")
    if plan.refused:
        lines += ["", "**Safety checks refused this plan:**", ""]
        for violation in plan.violations:
            lines.append(
                f"- **{violation.code} {violation.name}**: "
                f"{diagnostics.markdown_text(violation.message)} "
                f"*Way out:* {diagnostics.markdown_text(violation.way_out)}"
            )
    return "\n".join(lines) + "\n"
