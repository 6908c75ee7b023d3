"""``grove schema export [--check]`` and the committed schemas/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.manifests import schemagen
from tests.conftest import REPO_ROOT, GroveRunner


def test_committed_schemas_have_no_drift(
    grove: GroveRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    result = grove("schema", "export", "--check")
    assert result.code == 0, result.err
    assert result.out == "schemas: schemas are up to date\n"


def test_export_writes_then_reports_up_to_date(grove: GroveRunner, tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    first = grove("schema", "export", "--out", str(out))
    assert first.out.splitlines() == [
        f"wrote {out.as_posix()}/AIModel.schema.json",
        f"wrote {out.as_posix()}/RoutingRule.schema.json",
    ]
    second = grove("schema", "export", "--out", str(out))
    assert second.out == f"{out.as_posix()}: schemas are up to date\n"


def test_check_names_missing_and_stale_files(grove: GroveRunner, tmp_path: Path) -> None:
    schemagen.export(tmp_path)
    (tmp_path / "RoutingRule.schema.json").unlink()
    stale = tmp_path / "AIModel.schema.json"
    stale.write_text(stale.read_text().replace('"priority"', '"prio"'))
    result = grove("schema", "export", "--check", "--out", str(tmp_path))
    assert result.code == 1
    assert result.err == (
        f"grove: schemas are out of date: {tmp_path.as_posix()}/AIModel.schema.json, "
        f"{tmp_path.as_posix()}/RoutingRule.schema.json; "
        "run `grove schema export` and commit the result\n"
    )
    assert stale.read_text().count('"prio"') >= 1  # --check writes nothing


def test_schemas_describe_the_manifest_contract() -> None:
    model = json.loads(schemagen.render()["AIModel.schema.json"])
    assert model["$schema"] == schemagen.DRAFT
    assert model["title"] == "AIModel"
    assert model["additionalProperties"] is False
    meta = model["$defs"]["ModelMeta"]
    assert meta["properties"]["type"]["const"] == "AIModel"
    assert meta["properties"]["id"]["pattern"] == "^[a-z0-9][a-z0-9-]{0,62}$"
    assert meta["properties"]["version"]["type"] == "string"
    spec = model["$defs"]["ModelSpec"]["properties"]
    assert spec["capabilities"]["propertyNames"] == {"$ref": "#/$defs/CapabilityType"}
    assert spec["priority"] == {
        "default": 100,
        "description": "Higher is preferred.",
        "maximum": 1000,
        "minimum": 0,
        "title": "Priority",
        "type": "integer",
    }


@pytest.mark.slow  # three grove processes on a copy of the package
def test_adding_a_field_without_exporting_fails_the_check(tmp_path: Path) -> None:
    """The real workflow: edit the class, forget to export, CI's --check fails."""
    package = tmp_path / "src" / "reconciler"
    shutil.copytree(REPO_ROOT / "reconciler", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "schemas", tmp_path / "schemas")
    source = package / "manifests" / "kinds.py"
    text = source.read_text()
    anchor = "    max_retries: int = Field(1, ge=0, le=10)\n"
    assert anchor in text
    source.write_text(text.replace(anchor, anchor + "    region: str | None = None\n"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}
    command = [sys.executable, "-m", "reconciler", "schema", "export", "--check"]
    failed = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert failed.returncode == 1
    assert "schemas/AIModel.schema.json" in failed.stderr
    assert "RoutingRule" not in failed.stderr
    subprocess.run(command[:-1], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60)
    passed = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert passed.returncode == 0, passed.stderr
    assert '"region"' in (tmp_path / "schemas" / "AIModel.schema.json").read_text()
