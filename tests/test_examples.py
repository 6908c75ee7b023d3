"""The example fleet in manifests/ is what a newcomer sees first: valid, varied, editor-ready."""

from __future__ import annotations

from pathlib import Path

from reconciler.base import settings
from reconciler.gitops import validating
from reconciler.manifests import checking
from reconciler.manifests import kinds as manifests
from tests.conftest import REPO_ROOT

MANIFESTS = REPO_ROOT / "manifests"


def _report() -> validating.Report:
    return validating.validate_paths([str(MANIFESTS)], settings.load())


def test_the_example_fleet_is_valid_without_warnings() -> None:
    report = _report()
    assert report.diagnostics == ()
    assert len(report.objects) >= 8


def test_the_fleet_covers_every_provider_kind_and_strategy() -> None:
    objects = [item.obj for item in _report().objects]
    models = [o for o in objects if isinstance(o, manifests.AIModel)]
    rules = [o for o in objects if isinstance(o, manifests.RoutingRule)]
    providers = [m.payload.provider for m in models]
    assert manifests.Provider.ANTHROPIC in providers
    assert manifests.Provider.GOOGLE in providers
    assert manifests.Provider.OPENAI_COMPATIBLE in providers
    assert providers.count(manifests.Provider.MOCK) >= 2
    assert {r.payload.strategy for r in rules} == set(manifests.Strategy)
    assert all(m.payload.fallbacks or m.payload.provider is manifests.Provider.MOCK for m in models)


def test_every_rule_has_a_mock_model_to_serve_it_without_keys() -> None:
    report = _report()
    models = {item.id: item for item in report.objects if item.kind == "AIModel"}
    for item in report.objects:
        if isinstance(item.obj, manifests.RoutingRule):
            servers = checking.servers(item.obj.payload, models)
            assert any(
                models[s].obj.payload.provider is manifests.Provider.MOCK  # type: ignore[union-attr]
                for s in servers
            ), item.id


def test_every_manifest_points_editors_at_its_schema() -> None:
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        kind = "RoutingRule" if path.parent.name == "rules" else "AIModel"
        assert first == f"# yaml-language-server: $schema=../../schemas/{kind}.schema.json", path
        schema = (path.parent / f"../../schemas/{kind}.schema.json").resolve()
        assert schema.is_file()
        assert Path(schema).parent == REPO_ROOT / "schemas"
