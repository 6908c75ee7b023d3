"""Validation and previews that say what they did (issue 14).

``grove validate --ref`` reads the commit, not the working tree; ``grove diff`` on an
invalid head reports its errors in every format (a pull-request comment must never
be empty exactly when the pull request is broken), with Markdown a manifest cannot
inject into; ``grove plan --out`` on a refused plan does not advise applying it.
Real git repositories in temporary folders; the CLI runs in this process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler.base import diagnostics
from reconciler.planning import plans
from tests.conftest import FleetRepo, GroveRunner, model_yaml
from tests.reconciling.conftest import Registry, small_fleet

BROKEN = model_yaml("beta", priority='"high"')  # S003: a string where a number goes


@pytest.fixture
def branched(fleet: FleetRepo) -> FleetRepo:
    """main is valid at HEAD; the branch ``broken`` (not checked out) has an S003."""
    fleet.commit("fleet", small_fleet())
    fleet.git("checkout", "-q", "-b", "broken")
    fleet.commit("break beta", {"models/beta.yaml": BROKEN})
    fleet.git("checkout", "-q", "main")
    return fleet


# ---------------------------------------------------------------- validate --ref


def test_validate_ref_reads_the_commit_not_the_working_tree(
    branched: FleetRepo, grove: GroveRunner
) -> None:
    repo = str(branched.root)
    assert grove("validate", "--repo", repo).code == 0  # the working tree (main) is valid
    done = grove("validate", "--repo", repo, "--ref", "broken")
    assert done.code == 1
    assert "manifests/models/beta.yaml:" in done.err and "S003" in done.err
    revision = branched.git("rev-parse", "broken")
    assert f"at {revision[:12]}: 1 error(s)" in done.out
    assert grove("validate", "--repo", repo, "--ref", "main").code == 0


def test_validate_ref_ignores_an_uncommitted_fix_and_an_uncommitted_break(
    branched: FleetRepo, grove: GroveRunner
) -> None:
    branched.write({"models/beta.yaml": BROKEN})  # broken on disk, valid in HEAD
    repo = str(branched.root)
    assert grove("validate", "--repo", repo).code == 1
    assert grove("validate", "--repo", repo, "--ref", "HEAD").code == 0


def test_validate_ref_json_names_the_revision(branched: FleetRepo, grove: GroveRunner) -> None:
    done = grove("validate", "--repo", str(branched.root), "--ref", "broken", "-o", "json")
    report = json.loads(done.out)
    assert report["revision"] == branched.git("rev-parse", "broken")
    assert [(d["file"], d["code"]) for d in report["diagnostics"]] == [
        ("manifests/models/beta.yaml", "S003")
    ]


def test_validate_ref_refuses_what_it_cannot_do(
    branched: FleetRepo, grove: GroveRunner, tmp_path: Path
) -> None:
    repo = str(branched.root)
    unknown = grove("validate", "--repo", repo, "--ref", "no-such-branch")
    assert unknown.code == 1 and "no-such-branch" in unknown.err
    with_paths = grove("validate", "--repo", repo, "--ref", "main", "manifests")
    assert with_paths.code == 1 and "PATH" in with_paths.err
    plain = tmp_path / "plain"
    (plain / "manifests").mkdir(parents=True)
    not_git = grove("validate", "--repo", str(plain), "--ref", "main")
    assert not_git.code == 1 and "not" in not_git.err and "git" in not_git.err
    for refused in (unknown, with_paths, not_git):
        assert len(refused.err.strip().splitlines()) == 1  # one line, no traceback


def test_validate_ref_without_the_manifests_folder_is_not_valid(
    fleet: FleetRepo, grove: GroveRunner
) -> None:
    fleet.commit("empty")
    done = grove("validate", "--repo", str(fleet.root), "--ref", "HEAD")
    assert done.code == 1 and "F007" in done.err and "--path" in done.err


# ---------------------------------------------------------------- diff of an invalid head


def _diff(grove: GroveRunner, fleet: FleetRepo, *options: str) -> tuple[int, str, str]:
    done = grove("diff", "main", "broken", "--repo", str(fleet.root), *options)
    return done.code, done.out, done.err


def test_diff_markdown_of_an_invalid_head_reports_the_errors(
    branched: FleetRepo, grove: GroveRunner
) -> None:
    code, out, _ = _diff(grove, branched, "--format", "markdown")
    assert code == 1
    assert out.startswith("### Grove plan: invalid manifests")
    assert "`manifests/models/beta.yaml:" in out and "**S003**" in out
    assert "1 error(s)" in out


@pytest.mark.parametrize("option", [("-o", "json"), ("--output", "json"), ("--json",)])
def test_diff_json_of_an_invalid_head_reports_the_errors(
    branched: FleetRepo, grove: GroveRunner, option: tuple[str, ...]
) -> None:
    code, out, _ = _diff(grove, branched, *option)
    report = json.loads(out)
    assert code == 1 and report["valid"] is False and report["errors"] == 1
    assert report["diagnostics"][0]["code"] == "S003"
    assert report["diagnostics"][0]["name"] == "wrong-type"


def test_diff_text_of_an_invalid_head_reports_the_errors(
    branched: FleetRepo, grove: GroveRunner
) -> None:
    code, _, err = _diff(grove, branched)
    assert code == 1
    assert re.search(r"^manifests/models/beta\.yaml:\d+: S003 ", err, re.M)


def test_json_and_another_output_disagree(branched: FleetRepo, grove: GroveRunner) -> None:
    code, out, err = _diff(grove, branched, "--json", "-o", "markdown")
    assert code == 1 and out == "" and "disagree" in err


HOSTILE_NAME = "manifests/<img src=x onerror=alert(1)>`[x](javascript:go)@team|*.yaml"


def test_a_manifest_cannot_inject_markdown_into_the_comment(
    fleet: FleetRepo, grove: GroveRunner
) -> None:
    fleet.commit("fleet", small_fleet())
    fleet.git("checkout", "-q", "-b", "broken")
    hostile = Path(fleet.root / HOSTILE_NAME)
    hostile.write_text(model_yaml("delta", priority='"<b>@org/all</b>"'), encoding="utf-8")
    fleet.commit("hostile")
    fleet.git("checkout", "-q", "main")
    code, out, _ = _diff(grove, fleet, "-o", "markdown")
    assert code == 1 and "S003" in out
    item = next(line for line in out.splitlines() if line.startswith("- "))
    span = re.match(r"- (`+)(.*?)\1 ", item)
    assert span is not None, item  # the file name is one code span, whatever it holds
    assert "<img" in span.group(2)  # literal inside code: shown, never rendered
    prose = item[span.end() :]
    assert "<" not in prose.replace("\\<", "")  # no tag can open outside the code span
    assert "@org" not in prose  # no mention: "@" is followed by a zero-width space


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain words", "plain words"),
        ("<script>", "\\<script\\>"),
        ("[a](b)", "\\[a\\]\\(b\\)"),
        ("@team", "@&#8203;team"),
        ("a\nb", "a\\\\nb"),
        ("**bold** _it_ `code`", "\\*\\*bold\\*\\* \\_it\\_ \\`code\\`"),
    ],
)
def test_markdown_text(text: str, expected: str) -> None:
    assert diagnostics.markdown_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.yaml:3", "`a.yaml:3`"),
        ("a`b", "``a`b``"),
        ("`a``", "``` `a`` ```"),
        ("x\n- y", "`x\\n- y`"),
    ],
)
def test_code_span(text: str, expected: str) -> None:
    assert diagnostics.code_span(text) == expected


# ---------------------------------------------------------------- plan --out


def test_plan_out_on_a_refused_plan_does_not_advise_applying_it(
    registry: Registry, tmp_path: Path
) -> None:
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("apply").code == 0
    registry.fleet.delete("models/beta.yaml")  # enabled live: P006 retire before remove
    registry.fleet.commit("remove beta")
    saved = tmp_path / "refused.json"
    done = registry.run("plan", "--out", str(saved))
    assert done.code == 1 and "REFUSED" in done.out
    assert "grove apply --plan" not in done.out + done.err
    assert "refused it" in done.out and json.loads(saved.read_text())["refused"] is True


def test_plan_out_on_a_safe_plan_advises_applying_it(registry: Registry, tmp_path: Path) -> None:
    registry.fleet.commit("fleet", small_fleet())
    saved = tmp_path / "safe.json"
    done = registry.run("plan", "--out", str(saved))
    assert done.code == 2 and f"grove apply --plan {saved}" in done.out


def test_violations_in_the_markdown_plan_are_escaped() -> None:
    violation = plans.Violation("P001", "version-not-bumped", "<img src=x> @all", (), "[go](x)")
    rendered = plans.render_markdown(plans.Plan("b" * 40, "a" * 40, 0, (), (violation,)))
    assert "\\<img src\\=x\\> @&#8203;all" in rendered
    assert "\\[go\\]\\(x\\)" in rendered and "<img" not in rendered.replace("\\<", "")


def test_diff_markdown_of_a_plan_lists_its_warnings(fleet: FleetRepo, grove: GroveRunner) -> None:
    fleet.commit("fleet", small_fleet())
    fleet.git("checkout", "-q", "-b", "retire")
    retired = model_yaml("beta", state="retired").replace('version: "1"', 'version: "2"')
    fleet.commit("retire beta", {"models/beta.yaml": retired})
    fleet.git("checkout", "-q", "main")
    done = grove("diff", "main", "retire", "--repo", str(fleet.root), "-o", "markdown")
    assert done.code == 2, done.err
    assert "**Warnings:**" in done.out
    assert "`manifests/models/alpha.yaml:" in done.out
    assert "(warning, inactive-reference)" in done.out
