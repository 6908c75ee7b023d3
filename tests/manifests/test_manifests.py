"""The manifest classes used from Python, capability matching, endpoint policy, settings."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import reconciler
from reconciler.base import errors, settings
from reconciler.manifests import addresses, scoring
from reconciler.manifests import kinds as manifests


def _model(**payload: Any) -> dict[str, Any]:
    body = {"name": "M", "provider": "mock", "capabilities": {"reasoning": 0.9}}
    body.update(payload)
    return {"meta": {"id": "m", "type": "AIModel", "version": "1"}, "payload": body}


def test_python_callers_get_the_first_cross_field_problem_raised() -> None:
    with pytest.raises(ValidationError) as raised:
        manifests.AIModel.model_validate(_model(endpoint="https://api.example.com"))
    (detail,) = raised.value.errors()
    assert detail["type"] == "grove_S008"
    assert detail["msg"] == "endpoint: a mock model has no endpoint"


def test_objects_are_frozen_and_dump_with_camel_case_keys() -> None:
    model = manifests.AIModel.model_validate(_model(timeoutMs=500))
    with pytest.raises(ValidationError):
        model.payload.priority = 1  # type: ignore[misc]
    document = manifests.to_document(model)
    assert document["payload"]["timeoutMs"] == 500
    assert "endpoint" not in document["payload"]
    assert manifests.kind_of(model) == "AIModel"
    assert model.id == "m"


def test_snake_case_keys_are_unknown_fields() -> None:
    with pytest.raises(ValidationError) as raised:
        manifests.AIModel.model_validate(_model(timeout_ms=500))
    assert raised.value.errors()[0]["type"] == "extra_forbidden"


def test_rule_weights_must_not_all_be_zero() -> None:
    rule = {
        "meta": {"id": "r", "type": "RoutingRule", "version": "1"},
        "payload": {
            "taskType": "t",
            "requires": ["reasoning", "reasoning"],
            "strategy": "balanced",
            "weights": {"capability": 0, "latency": 0, "cost": 0},
        },
    }
    problems: list[manifests.Problem] = []
    with pytest.raises(ValidationError):
        manifests.RoutingRule.model_validate(rule)
    manifests.RoutingRule.model_validate(rule, context={"problems": problems})
    assert sorted(code for _, code, _ in problems) == ["S012", "S012"]


def test_public_api_exports() -> None:
    assert reconciler.CapabilityType.REASONING.value == "reasoning"
    assert [c.value for c in reconciler.CapabilityType] == [
        "reasoning",
        "creativity",
        "precision",
        "speed",
        "context",
    ]
    assert reconciler.match_capabilities is scoring.match_capabilities
    with pytest.raises(AttributeError):
        _ = reconciler.NoSuchThing  # type: ignore[attr-defined]


def test_match_capabilities_scores_and_checks_minimum() -> None:
    cap = manifests.CapabilityType
    match = scoring.match_capabilities(
        [cap.REASONING, "precision"], {cap.REASONING: 0.9, cap.PRECISION: 0.7}
    )
    assert match.score == pytest.approx(0.8)
    assert match.weakest == pytest.approx(0.7)
    assert match.complete
    assert match.meets(0.7)
    assert not match.meets(0.75)


def test_match_capabilities_counts_missing_as_zero() -> None:
    match = scoring.match_capabilities(["reasoning", "speed"], {"reasoning": 1.0})
    assert match.missing == (manifests.CapabilityType.SPEED,)
    assert match.score == pytest.approx(0.5)
    assert not match.meets(0.0)


def test_match_capabilities_with_nothing_required_is_perfect() -> None:
    assert scoring.match_capabilities([], {"reasoning": 0.1}).score == 1.0


def test_blended_price_weights_input_three_to_one() -> None:
    pricing = manifests.Pricing.model_validate({"inputPerMTok": 4.0, "outputPerMTok": 8.0})
    assert scoring.blended_price(pricing) == pytest.approx(5.0)
    assert scoring.blended_price(None) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com",
        "https://169.254.169.254/",
        "https://127.0.0.1/",
        "https://2130706433/",
        "https://0x7f.1/",
        "https://127.1/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://10.0.0.8/",
        "https://100.64.0.1/",
        "https://0.0.0.0/",
        "https://user@api.example.com/",
        "https://user:pass@api.example.com/",
        "https://localhost/",
        "https://x.localhost/",
        "https://metadata.google.internal/",
        "https://api.example.com/?key=1",
        "https://api.example.com/#x",
        "https://api.example.com:0/",
        "https://api.example.com:99999/",
        "https:///nohost",
        "ftp://api.example.com",
        "https://ex ample.com",
        "https://bücher.example/",
        "https://" + "a" * 2050 + ".com",
    ],
)
def test_endpoint_policy_refuses(url: str) -> None:
    with pytest.raises(addresses.EndpointRejected) as refused:
        addresses.check_endpoint(url, allow_local=False)
    assert "pass" not in str(refused.value)


@pytest.mark.parametrize(
    "url", ["https://api.anthropic.com/v1", "https://8.8.8.8/v1", "https://[2001:4860::8888]/"]
)
def test_endpoint_policy_allows_public_https(url: str) -> None:
    assert addresses.check_endpoint(url, allow_local=False) == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/v1", "https://localhost:9/", "http://[::1]/"]
)
def test_local_endpoints_are_allowed_only_when_asked(url: str) -> None:
    assert addresses.check_endpoint(url, allow_local=True) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/",
        "https://[::ffff:169.254.169.254]/",
        "http://metadata.google.internal/",
        "http://[fd00:ec2::254]/",
    ],
)
def test_metadata_services_are_refused_even_when_local_is_allowed(url: str) -> None:
    with pytest.raises(addresses.EndpointRejected, match="metadata"):
        addresses.check_endpoint(url, allow_local=True)


def test_redact_userinfo_removes_credentials_from_every_url() -> None:
    text = "fetch https://user:s3cret@git.example.com/x and ssh://git@host/y failed"
    assert addresses.redact_userinfo(text) == (
        "fetch https://***@git.example.com/x and ssh://***@host/y failed"
    )
    raw = "push to https://bot:p@ss@git.example.com/x?ref=a@b failed"
    assert addresses.redact_userinfo(raw) == "push to https://***@git.example.com/x?ref=a@b failed"


def test_check_ip_is_for_resolved_addresses() -> None:
    addresses.check_ip(ipaddress.ip_address("93.184.216.34"), allow_local=False)
    with pytest.raises(addresses.EndpointRejected):
        addresses.check_ip(ipaddress.ip_address("192.168.1.1"), allow_local=False)
    addresses.check_ip(ipaddress.ip_address("192.168.1.1"), allow_local=True)


def test_settings_flags_beat_environment_beat_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # the defaults of a folder with no grove up above it
    assert settings.load().path == "manifests"
    assert settings.load().db_url == "sqlite:///.grove/registry.db"
    monkeypatch.setenv("GROVE_PATH", "fleet")
    monkeypatch.setenv("GROVE_DB_URL", "sqlite:///other.db")
    assert settings.load().path == "fleet"
    assert settings.load(path="cli", db_url=None).path == "cli"
    assert settings.load(path=None).db_url == "sqlite:///other.db"


def test_an_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROVE_ALLOW_LOCAL_ENDPOINTS", "")
    assert settings.load().allow_local_endpoints is False


def test_invalid_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROVE_MAX_DEPTH", "deep")
    with pytest.raises(errors.ConfigError, match="GROVE_MAX_DEPTH"):
        settings.load()
