"""Schemathesis over /openapi.json: no 5xx, and every answer matches its documented schema.

At least 200 generated examples per route, against a real server on loopback,
as an admin (so every route reaches its handler). The SSE stream never ends
by design and is exercised in test_access.py instead.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from reconciler import api
from reconciler.base import settings as grove_settings
from tests.api.conftest import Server

EXAMPLES = 200
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


def _operations() -> list[str]:
    document = api.create_app(grove_settings.load(db_url="sqlite://")).openapi()
    return sorted(
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if path != "/api/events"
    )


OPERATIONS = _operations()
# A read changes nothing the next read sees: the reads share one server per module (and
# xdist worker); every other operation gets a server of its own.
READS = [operation for operation in OPERATIONS if operation.startswith("GET ")]
OTHERS = [operation for operation in OPERATIONS if operation not in READS]


@pytest.mark.slow
@pytest.mark.parametrize("shared_server", ["sqlite"], indirect=True)
@pytest.mark.parametrize("operation", READS)
def test_reads_have_no_server_errors_and_answers_match_the_schema(
    shared_server: Server, operation: str
) -> None:
    _check(shared_server, operation)


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("operation", OTHERS)
def test_no_server_errors_and_answers_match_the_schema(server: Server, operation: str) -> None:
    _check(server, operation)


def _check(server: Server, operation: str) -> None:
    method, path = operation.split(" ", 1)
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    found = schema[path][method]
    headers = {"Authorization": f"Bearer {server.tokens['admin']}"}
    seen = [0]

    @settings(
        max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(case=found.as_strategy())
    def run(case: Any) -> None:
        seen[0] += 1
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()
    raw = found.definition.raw
    takes_input = "requestBody" in raw or bool(raw.get("parameters"))
    # an operation with a body or parameters has room for every example; one without any
    # input (GET /api/status) has a single request to make
    assert seen[0] >= (EXAMPLES if takes_input else 1), seen[0]
