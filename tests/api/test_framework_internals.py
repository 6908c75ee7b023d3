"""The framework internals Grove's fast paths lean on, checked by name and shape, so an
upgrade that moves one fails here with a message saying what to change, instead of the
server quietly taking its slow path (or breaking at the first request).

pyproject.toml pins FastAPI, Starlette and uvicorn to the minor versions tested here;
widen a pin only after this file passes on the new version.
"""

from __future__ import annotations

import contextvars
import inspect

import fastapi.routing
import pytest
from fastapi.dependencies.models import Dependant
from uvicorn.protocols.http import httptools_impl

from reconciler.api import connections, lean, limits

UPGRADE = "pyproject.toml pins the tested version; see this test's docstring"


def test_the_lean_handler_finds_fastapis_effective_route_context() -> None:
    """api/lean.py: the route context FastAPI 0.165 builds for each include_router."""
    context_var = getattr(fastapi.routing, "_effective_route_context_var", None)
    assert isinstance(context_var, contextvars.ContextVar), (
        "fastapi.routing._effective_route_context_var is gone: api/lean.py._declared_here "
        f"cannot tell an inclusion's dependencies from a route's own. {UPGRADE}"
    )
    assert lean._declared_here.__doc__ and "0.165" in lean._declared_here.__doc__


def test_the_body_gate_lists_routes_through_iter_route_contexts() -> None:
    """api/limits.py: which routes need a token, read from their dependants."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    assert callable(contexts), (
        "fastapi.routing.iter_route_contexts is gone: api/limits.py._flattened would see "
        f"included routers as one entry and the token gate would guard nothing. {UPGRADE}"
    )
    fields = set(getattr(Dependant, "__dataclass_fields__", {}))
    assert {"dependencies", "call"} <= fields, (
        f"fastapi.dependencies.models.Dependant lost dependencies/call (has {sorted(fields)}); "
        f"api/limits.py._guarded reads them. {UPGRADE}"
    )
    assert limits._flattened.__doc__ and "iter_route_contexts" in limits._flattened.__doc__


@pytest.mark.parametrize(
    "method",
    [
        "connection_made",
        "connection_lost",
        "data_received",
        "on_message_begin",
        "on_headers_complete",
        "shutdown",
    ],
)
def test_the_connection_overrides_uvicorns_httptools_protocol(method: str) -> None:
    """api/connections.py subclasses uvicorn's HttpToolsProtocol: its hooks must exist."""
    base = httptools_impl.HttpToolsProtocol
    assert callable(getattr(base, method, None)), (
        f"uvicorn's HttpToolsProtocol.{method} is gone: api/connections.Connection "
        f"overrides it (header timeout, streams ended at shutdown). {UPGRADE}"
    )
    assert method in vars(connections.Connection)  # the hook Grove overrides


def test_the_connection_reads_the_protocols_state() -> None:
    """The attributes Connection.shutdown reads of uvicorn's protocol and request cycle."""
    source = inspect.getsource(httptools_impl)
    for name in ("self.cycle", "self.transport", "self.loop"):
        assert name in source, f"uvicorn's HttpToolsProtocol no longer sets {name}. {UPGRADE}"
    cycle = inspect.getsource(httptools_impl.RequestResponseCycle)
    for name in ("response_started", "response_complete", "chunked_encoding", "disconnected"):
        assert f"self.{name}" in cycle, (
            f"uvicorn's RequestResponseCycle no longer has {name}: "
            f"Connection.shutdown reads it to end a stream. {UPGRADE}"
        )
    assert "message_event" in cycle
