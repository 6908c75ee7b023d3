"""The docs stay true to the code: every rule code, every field, every command."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from reconciler.base import diagnostics
from reconciler.cli import grove
from reconciler.manifests import kinds as manifests
from tests.conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"


def _read(name: str) -> str:
    return (REPO_ROOT / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("code", sorted(diagnostics.CATALOG))
def test_every_validation_code_has_its_section(code: str) -> None:
    name = diagnostics.CATALOG[code][0]
    assert f"\n### {code} {name}\n" in _read("docs/validation.md")


def _fields(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for key, field in model.model_fields.items():
        names.add(field.alias or key)
        for inner in _models_in(field.annotation):
            names |= _fields(inner, seen)
    return names


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()):
        found += _models_in(arg)
    return found


@pytest.mark.parametrize("kind", sorted(manifests.KINDS))
def test_every_manifest_field_is_documented(kind: str) -> None:
    text = _read("docs/manifests.md")
    missing = sorted(
        f for f in _fields(manifests.KINDS[kind], set()) if not re.search(rf"[`.]{f}`", text)
    )
    assert missing == []


def test_readme_opens_with_what_grove_is_then_the_two_commands() -> None:
    text = _read("README.md")
    first_block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e .")
    assert commands[1].endswith(".venv/bin/pytest -n 2 --cov=reconciler")
    assert text.index("Grove is a GitOps reconciler") < text.index("```sh")


def test_commands_shown_in_the_docs_exist() -> None:
    known = set(grove.commands)
    pattern = re.compile(r"(?:`|^\$ |^)grove ([a-z]+)", re.MULTILINE)
    for path in [REPO_ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for name in pattern.findall(text):
            assert name in known, f"{path.name} shows `grove {name}`, which does not exist"


def test_the_api_route_table_and_sections_match_the_openapi_document() -> None:
    from reconciler import api
    from reconciler.base import settings as grove_settings

    document = api.create_app(grove_settings.load(db_url="sqlite://")).openapi()
    routes = sorted(
        f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item
    )
    text = _read("docs/api.md")
    block = text.split("<!-- routes:start -->", 1)[1].split("<!-- routes:end -->", 1)[0]
    assert (
        block.strip().removeprefix("```text").removesuffix("```").split()
        == " ".join(routes).split()
    )
    headings = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for route in routes:
        method, path = route.split(" ")
        if path.endswith(("/disable", "/enable")):
            path = path.rsplit("/", 1)[0] + "/disable"
        assert f"{method} {path}" in headings, f"docs/api.md has no section for {route}"
