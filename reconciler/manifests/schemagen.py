"""Generate ``schemas/*.schema.json`` from the manifest classes, and detect drift.

Called by ``grove schema export [--check]`` and by the test that keeps
``schemas/`` in step. The schemas are generated, never hand-edited: editors
use them (through the ``# yaml-language-server: $schema=...`` line at the top
of each manifest) to complete and check fields as the operator types.
"""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.base import errors
from reconciler.manifests import kinds as manifests

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def render() -> dict[str, str]:
    """File name -> JSON text, deterministic byte for byte."""
    out: dict[str, str] = {}
    for kind, cls in manifests.KINDS.items():
        schema = cls.model_json_schema(by_alias=True, mode="validation")
        document = {"$schema": DRAFT, **schema}
        out[f"{kind}.schema.json"] = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return out


def export(folder: Path) -> list[Path]:
    """Write every schema under ``folder``; return the files that changed."""
    folder.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    for name, text in render().items():
        target = folder / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            changed.append(target)
    return changed


def check(folder: Path) -> None:
    """Raise :class:`errors.SchemaDrift` naming every schema that is missing or stale."""
    stale = [
        (folder / name).as_posix()
        for name, text in render().items()
        if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text
    ]
    if stale:
        raise errors.SchemaDrift(stale)
