"""``/api/routing``: the data plane of Grove's own format: recommend, execute, logs.

``POST /api/routing/execute`` is every routed call: it has a router of its own,
``hot``, whose routes use the lean request handler (``api/lean.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from reconciler.api.bodies import ExecuteBody, ExecuteOut, RecommendOut
from reconciler.api.deps import DataPlane, ServicesDep, Viewer
from reconciler.api.lean import LeanRoute
from reconciler.manifests import kinds as manifests
from reconciler.providers.base import ChatRequest, Message
from reconciler.routing import engine as routing
from reconciler.routing import ranking
from reconciler.store import routing_logs

router = APIRouter(tags=["routing and operations"])
# The routed call, every request of the data plane: its own router, for the lean handler.
hot = APIRouter(tags=["routing and operations"], route_class=LeanRoute)


@router.get(
    "/api/routing/recommend",
    response_model=RecommendOut,
    summary="The routing decision for a task, with every candidate",
)
async def recommend(
    services: ServicesDep,
    identity: Viewer,
    task_type: Annotated[str | None, Query(alias="taskType", max_length=63)] = None,
    capability: Annotated[list[manifests.CapabilityType] | None, Query()] = None,
) -> RecommendOut:
    request = ranking.TaskRequest(task_type=task_type, capabilities=tuple(capability or ()))
    return RecommendOut.of(services.engine.get_routing_decision(request).to_json())


@hot.post(
    "/api/routing/execute",
    response_model=ExecuteOut,
    summary="Route and call the model, failing over along the chain",
)
async def execute(body: ExecuteBody, services: ServicesDep, identity: DataPlane) -> ExecuteOut:
    request = ranking.TaskRequest(
        task_type=body.task_type,
        capabilities=tuple(body.capabilities),
        max_tokens=body.max_tokens,
        request_id=body.request_id,
    )
    messages = ((Message("system", body.system),) if body.system else ()) + (
        Message("user", body.prompt),
    )
    chat = ChatRequest(messages, max_tokens=body.max_tokens)
    try:
        result = await services.engine.route_request(request, chat)
    except routing.RoutingFailed as exc:
        if len(exc.attempts) > 1:
            services.hub.publish("failover", {"chain": list(exc.decision.chain), "failed": True})
        raise
    if len(result.attempts) > 1:
        services.hub.publish(
            "failover", {"from": result.attempts[0].model_id, "to": result.model_id}
        )
    response = result.response
    return ExecuteOut(
        model_id=result.model_id,
        text=response.text,
        input_tokens=response.input_tokens,
        output_tokens=response.output_tokens,
        cost_usd=response.cost_usd,
        latency_ms=response.latency_ms,
        request_id=result.request_id,
        decision={**result.routing_decision.to_json(), "version": result.version},
        attempts=[a.to_json() for a in result.attempts],
        version=result.version,
    )


@router.get(
    "/api/routing/logs", response_model=list[dict[str, Any]], summary="Recent routing log rows"
)
def logs(
    services: ServicesDep,
    identity: Viewer,
    model_id: Annotated[str | None, Query(alias="modelId", max_length=63)] = None,
    request_id: Annotated[str | None, Query(alias="requestId", max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    services.engine.flush_logs()
    with services.db.transaction() as connection:
        return routing_logs.recent(
            connection, model_id=model_id, request_id=request_id, limit=limit
        )
