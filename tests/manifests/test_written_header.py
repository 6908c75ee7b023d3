"""documents.write heads a file with the schema line of its one type only (found by the
attack run: a rule removed from a mixed file left an AIModel under RoutingRule's schema)."""

from __future__ import annotations

from pathlib import Path

from reconciler.manifests import documents


def doc(kind: str, ident: str) -> dict[str, object]:
    return {"meta": {"id": ident, "type": kind, "version": "1"}, "payload": {}}


def test_the_header_names_the_one_type_of_the_file(tmp_path: Path) -> None:
    target = tmp_path / "manifests" / "models" / "combo.yaml"
    documents.write(target, [doc("AIModel", "a")], "RoutingRule")  # a rule was removed
    assert target.read_text().startswith(
        "# yaml-language-server: $schema=../../schemas/AIModel.schema.json\n"
    )
    documents.write(target, [doc("AIModel", "a"), doc("RoutingRule", "r")], "RoutingRule")
    assert not target.read_text().startswith("#")  # two types: no one schema
    outside = tmp_path / "elsewhere" / "x.yaml"
    documents.write(outside, [doc("AIModel", "a")], "AIModel")
    assert not outside.read_text().startswith("#")
