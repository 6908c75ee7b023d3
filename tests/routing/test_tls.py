"""TLS to providers: the certificate is verified against the host name, with the CA
bundle Grove is given (``SSL_CERT_FILE``, else certifi's), and a refused certificate
fails over like a dead host, before a byte of the request (or its key) is sent."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from reconciler.routing import engine as routing
from tests.routing.conftest import ask, model_doc, rule_doc
from tests.routing.fakes import FakeProvider


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _tls_server(
    fake: Callable[..., FakeProvider], ca: trustme.CA, host: str = "localhost"
) -> FakeProvider:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(context)
    return fake("openai", tls=context)


def _pair(
    engine_for: Callable[..., routing.RoutingEngine], server: FakeProvider
) -> routing.RoutingEngine:
    return engine_for(
        model_doc("primary", server, priority=90),
        model_doc("fallback", priority=10),
        rule_doc("think"),
    )


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))


def test_a_provider_with_a_trusted_certificate_answers(
    ca: trustme.CA,
    fake: Callable[..., FakeProvider],
    engine_for: Callable[..., routing.RoutingEngine],
    trusted: None,
) -> None:
    server = _tls_server(fake, ca)
    assert server.url.startswith("https://localhost:")
    result = ask(_pair(engine_for, server))
    assert result.model_id == "primary"
    assert result.response.text == "fake answer"
    assert server.calls == 1


def test_a_certificate_from_an_unknown_authority_fails_over(
    ca: trustme.CA,
    fake: Callable[..., FakeProvider],
    engine_for: Callable[..., routing.RoutingEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    server = _tls_server(fake, ca)
    result = ask(_pair(engine_for, server))
    assert result.model_id == "fallback"
    assert result.attempts[0].outcome == "connection_error"
    assert "certificate verify failed" in result.attempts[0].message
    assert server.calls == 0  # no request, so no key, went to a host that was not verified


def test_a_certificate_for_another_host_fails_over(
    ca: trustme.CA,
    fake: Callable[..., FakeProvider],
    engine_for: Callable[..., routing.RoutingEngine],
    trusted: None,
) -> None:
    server = _tls_server(fake, ca, host="api.other.example")
    result = ask(_pair(engine_for, server))
    assert result.model_id == "fallback"
    assert result.attempts[0].outcome == "connection_error"
    assert server.calls == 0


def test_a_ca_bundle_that_cannot_be_read_is_a_configuration_failure(
    ca: trustme.CA,
    fake: Callable[..., FakeProvider],
    engine_for: Callable[..., routing.RoutingEngine],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    server = _tls_server(fake, ca)
    engine = _pair(engine_for, server)
    result = ask(engine)
    assert result.model_id == "fallback"  # the mock fallback opens no socket
    assert result.attempts[0].outcome == "configuration"
    assert "CA certificates could not be loaded" in result.attempts[0].message
    # the failure is remembered: the bundle is not read again on every call (a bundle
    # that appears later is not picked up until a restart)
    ca.cert_pem.write_to_path(str(tmp_path / "missing.pem"))
    again = ask(engine)
    assert again.attempts[0].outcome == "configuration"  # tried, not skipped by a circuit
    assert "CA certificates could not be loaded" in again.attempts[0].message
    assert server.calls == 0
