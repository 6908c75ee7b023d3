"""``grove validate`` as an operator and a CI job use it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, GroveRunner, model_yaml, rule_yaml, write_tree

# GitHub's workflow-command grammar: ::level key=value,key=value::data, with %, CR, LF
# escaped in data and additionally ':' and ',' escaped in property values.
GITHUB_LINE = re.compile(
    r"^::(error|warning) file=(?:[^:,%\r\n]|%25|%3A|%2C)+,line=\d+::(?:[^%\r\n]|%25|%0D|%0A)+$"
)


def test_the_example_fleet_is_valid_and_counted(
    grove: GroveRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    result = grove("validate", "manifests/")
    assert result.code == 0
    assert result.err == ""
    assert re.fullmatch(
        r"checked 10 object\(s\) \(6 AIModel, 4 RoutingRule\) in 10 file\(s\): valid\n", result.out
    )


def test_without_paths_the_manifests_path_is_validated(
    grove: GroveRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_tree(tmp_path, {"fleet/m.yaml": model_yaml("m")})
    monkeypatch.chdir(tmp_path)
    assert "checked 1 object(s)" in grove("validate", "--path", "fleet").out
    monkeypatch.setenv("GROVE_PATH", "fleet")
    assert grove("validate").code == 0
    assert grove("validate", "--path", "nowhere").code == 1


def test_without_paths_the_manifests_under_repo_are_validated(
    grove: GroveRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_tree(tmp_path, {"elsewhere/manifests/m.yaml": model_yaml("m")})
    monkeypatch.chdir(tmp_path)
    assert "checked 1 object(s)" in grove("validate", "--repo", "elsewhere").out


def test_list_prints_a_table_of_the_fleet(
    grove: GroveRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    result = grove("validate", "manifests", "--list")
    lines = result.out.splitlines()
    assert lines[0].split() == ["TYPE", "ID", "VERSION", "STATE", "DETAIL"]
    assert any(
        line.startswith("AIModel") and "claude-sonnet" in line and "anthropic" in line
        for line in lines
    )
    assert any("complex-analysis" in line and "strategy=priority" in line for line in lines)


def test_warnings_do_not_fail_validation(grove: GroveRunner, tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"a.yaml": model_yaml("a", fallbacks="[b]"), "b.yaml": model_yaml("b", state="retired")},
    )
    result = grove("validate", str(tmp_path))
    assert result.code == 0
    assert "R008 warning: model a falls back to b, which is retired" in result.err
    assert result.out.endswith("valid, 1 warning(s)\n")


def test_json_format_has_the_documented_shape(grove: GroveRunner, tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "m.yaml": model_yaml("m"),
            "bad.yaml": model_yaml("bad", priority="2000"),
            "r.yaml": rule_yaml("r"),
        },
    )
    result = grove("validate", str(tmp_path), "--format", "json")
    assert result.code == 1
    assert result.err == ""
    report = json.loads(result.out)
    assert report["version"] == 1
    assert report["valid"] is False
    assert report["summary"] == {
        "files": 3,
        "objects": 2,
        "byType": {"AIModel": 1, "RoutingRule": 1},
        "errors": 1,
        "warnings": 0,
    }
    assert report["objects"][0] == {
        "type": "AIModel",
        "id": "m",
        "version": "1",
        "file": f"{tmp_path.as_posix()}/m.yaml",
        "line": 1,
    }
    (diagnostic,) = report["diagnostics"]
    assert diagnostic == {
        "file": f"{tmp_path.as_posix()}/bad.yaml",
        "line": 6,
        "column": 0,
        "code": "S004",
        "name": "out-of-range",
        "severity": "error",
        "path": "payload.priority",
        "message": "payload.priority: Input should be less than or equal to 1000",
    }


def test_github_format_is_one_workflow_command_per_problem(
    grove: GroveRunner, tmp_path: Path
) -> None:
    write_tree(
        tmp_path,
        {
            "odd, name: 100%.yaml": model_yaml("a", fallbacks="[ghost]"),
            "w.yaml": model_yaml("w", lifecycle="{deprecationDate: 2020-01-01}"),
        },
    )
    result = grove("validate", str(tmp_path), "--format", "github")
    assert result.code == 1
    commands = [line for line in result.out.splitlines() if line.startswith("::")]
    assert len(commands) == 2
    for line in commands:
        assert GITHUB_LINE.match(line), line
    assert "odd%2C name%3A 100%25.yaml,line=6::R002 model a falls back to ghost" in commands[0]
    assert commands[1].startswith("::warning ")
    assert result.out.splitlines()[-1].startswith("checked 2 object(s)")


def test_validate_never_touches_a_database(tmp_path: Path) -> None:
    """In a fresh process: no database file appears and no driver is even imported."""
    write_tree(tmp_path, {"m.yaml": model_yaml("m")})
    probe = (
        "import sys\n"
        "from reconciler import cli\n"
        "code = cli.run(['validate', 'm.yaml', '--db', 'sqlite:///must-not-exist.db'])\n"
        "loaded = [m for m in ('sqlalchemy', 'psycopg', 'git', 'httpx') if m in sys.modules]\n"
        "print(code, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.yaml"]


def test_unknown_format_is_a_usage_error(grove: GroveRunner) -> None:
    result = grove("validate", "--format", "xml")
    assert result.code == 1  # never 2, which means "changes" for plan and diff
    assert "'--format': 'xml' is not one of" in result.err


def test_a_bad_setting_is_one_line_and_exit_1(
    grove: GroveRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROVE_MAX_FILE_BYTES", "-5")
    result = grove("validate", ".")
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert result.err.startswith("grove: invalid setting max_file_bytes (GROVE_MAX_FILE_BYTES)")


def test_an_internal_error_is_one_line_unless_debugging(
    grove: GroveRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.gitops import validating

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(validating, "validate_paths", broken)
    result = grove("validate", ".")
    assert result.code == 1
    assert result.err == (
        "grove: internal error: RuntimeError: boom "
        "(set GROVE_DEBUG=1 for a traceback, and please report it)\n"
    )
    monkeypatch.setenv("GROVE_DEBUG", "1")
    with pytest.raises(RuntimeError):
        grove("validate", ".")


def test_help_and_version(grove: GroveRunner) -> None:
    assert "validate" in grove("--help").out
    assert grove("--version").out.startswith("grove, version ")


@pytest.mark.parametrize(
    "entry", [["-m", "reconciler"], ["-c", "from reconciler.cli import main; main()"]]
)
def test_real_processes_print_errors_without_tracebacks(entry: list[str], tmp_path: Path) -> None:
    write_tree(tmp_path, {"bad.yaml": "a: &x 1\n"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROVE_")}
    done = subprocess.run(
        [sys.executable, *entry, "validate", "bad.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == "bad.yaml:1: Y002 anchors (&name) are not allowed; repeat the value\n"
    assert "Traceback" not in done.stdout + done.stderr


def test_console_script_is_installed() -> None:
    grove = Path(sys.executable).parent / "grove"
    done = subprocess.run(
        [str(grove), "validate", "manifests"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
