"""Shared fixtures: run the real CLI in-process and write manifest trees."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler import cli

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


GroveRunner = Callable[..., Run]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests see Grove's defaults, not whatever GROVE_* the developer has exported."""
    for name in list(os.environ):
        if name.startswith("GROVE_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def grove(capsys: pytest.CaptureFixture[str]) -> GroveRunner:
    """Run ``grove ARGS...`` in this process; return its exit code, stdout and stderr."""

    def run(*args: str) -> Run:
        capsys.readouterr()
        code = cli.run(list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Create ``files`` (relative path -> content) under ``root``."""
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return root


def model_yaml(ident: str, **payload: str) -> str:
    """A minimal valid mock model; ``payload`` adds or replaces payload lines."""
    fields = {
        "name": ident.title(),
        "provider": "mock",
        "capabilities": "{reasoning: 0.9, speed: 0.8}",
    }
    fields.update(payload)
    body = "\n".join(f"  {key}: {value}" for key, value in fields.items())
    return f'meta: {{id: {ident}, type: AIModel, version: "1"}}\npayload:\n{body}\n'


def rule_yaml(ident: str, **payload: str) -> str:
    fields = {"taskType": ident, "requires": "[reasoning]"}
    fields.update(payload)
    body = "\n".join(f"  {key}: {value}" for key, value in fields.items())
    return f'meta: {{id: {ident}, type: RoutingRule, version: "1"}}\npayload:\n{body}\n'
