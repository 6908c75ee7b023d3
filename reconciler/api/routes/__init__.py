"""The API's routes, one module per resource (full-stack-fastapi-template's ``api/routes``).

`models` (``/api/models``), `rules` (``/api/rules``), `routing`
(``/api/routing``: recommend, execute, logs), `rollouts` (``/api/rollouts`` and
``/api/quarantine``), `operations` (status, plan, reconcile, metrics, the git
webhook), `events` (``/api/events``) and `probes` (``/healthz``, ``/readyz``).
:data:`ROUTERS` is the order the app includes them.
"""

from __future__ import annotations

from fastapi import APIRouter

from reconciler.api.routes import events, models, operations, probes, rollouts, routing, rules

ROUTERS: tuple[APIRouter, ...] = (
    routing.hot,
    routing.router,
    models.router,
    rules.router,
    rollouts.router,
    rollouts.quarantine,
    operations.router,
    events.router,
    probes.router,
)
