"""Manifest documents in a work tree, for the write path (`authoring`).

Find an object's document by (type, id), change it (a JSON merge patch), put it
back in its file (or remove it; an empty file is deleted), write new files with
the schema header editors use. YAML is parsed with `yamlsafe` and the nesting
cap of the settings, as the loader does.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

from reconciler.manifests import kinds as manifests
from reconciler.manifests import yamlsafe

FOLDERS = {manifests.KIND_MODEL: "models", manifests.KIND_RULE: "rules"}


@dataclasses.dataclass(slots=True)
class Located:
    file: Path
    index: int  # of the document within its file
    siblings: list[Any]  # every document of the file as it was read, this one included

    @property
    def document(self) -> dict[str, Any]:
        found: dict[str, Any] = self.siblings[self.index]
        return found


Index = dict[tuple[str, str], Located]


def objects(text: str, *, max_depth: int) -> list[tuple[int, tuple[str, str], dict[str, Any]]]:
    """(index in the file, (type, id), document) of each document of ``text`` that names
    an object; raises `yamlsafe.YamlRefused` when the text cannot be parsed."""
    return _named([d.value for d in yamlsafe.parse(text, max_depth=max_depth)])


def _named(values: list[Any]) -> list[tuple[int, tuple[str, str], dict[str, Any]]]:
    found = []
    for position, value in enumerate(values):
        meta = value.get("meta") if isinstance(value, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("id"), str):
            found.append((position, (str(meta.get("type")), meta["id"]), value))
    return found


def index(folder: Path, *, max_depth: int) -> Index:
    """Every parseable object document below ``folder``, by (type, id); the first file
    (in path order) wins. Each file is read and parsed once."""
    found: Index = {}
    if not folder.is_dir():
        return found
    for file in sorted(folder.rglob("*")):
        if file.suffix not in (".yaml", ".yml") or not file.is_file():
            continue
        try:
            text = file.read_text(encoding="utf-8")
            values = [d.value for d in yamlsafe.parse(text, max_depth=max_depth)]
        except (yamlsafe.YamlRefused, UnicodeDecodeError, OSError):
            continue
        for position, key, _ in _named(values):
            found.setdefault(key, Located(file, position, values))
    return found


def current(index: Index, kind: str, ident: str) -> manifests.GroveObject | None:
    """The object as its document parses now, or None (absent, or not valid)."""
    found = index.get((kind, ident))
    if found is None:
        return None
    try:
        return manifests.parse_document(found.document, allow_local_endpoints=True)
    except ValueError:
        return None


def normal(document: dict[str, Any]) -> dict[str, Any]:
    """A document with defaults filled in, so equal content compares equal."""
    try:
        return manifests.to_document(manifests.parse_document(document, allow_local_endpoints=True))
    except ValueError:
        return document


def merge(target: dict[str, Any], changes: dict[str, Any]) -> None:
    """JSON merge patch (RFC 7386): null removes a field, mappings merge, the rest replaces."""
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def replace(found: Located, document: dict[str, Any] | None, kind: str) -> None:
    """Rewrite the file with one document replaced (or removed; an empty file is deleted),
    the others as the index read them."""
    documents = list(found.siblings)
    if document is None:
        del documents[found.index]
    else:
        documents[found.index] = document
    if documents:
        write(found.file, documents, kind)
    else:
        found.file.unlink()


def write(target: Path, documents: list[dict[str, Any]], kind: str) -> None:
    """Write ``documents`` to ``target``, headed by the schema line of editors' YAML
    language server when the file sits in a manifest folder and every document is of
    one type (a file mixing types has no one schema; ``kind`` is the changed one's)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    header = ""
    kinds = {
        document.get("meta", {}).get("type", kind) if isinstance(document, dict) else None
        for document in documents
    }
    if target.parent.name in FOLDERS.values() and len(kinds) == 1 and None not in kinds:
        header = f"# yaml-language-server: $schema=../../schemas/{kinds.pop()}.schema.json\n"
    target.write_text(header + yamlsafe.dump(documents), encoding="utf-8")
