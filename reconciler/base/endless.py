"""Answers that never end by themselves say so.

An event stream a page or a client keeps open (``GET /api/events``, the console's
``GET /console/events``) has no end of its own: when the server stops, its
connection (``api.connections``) ends it, and the client reads a whole stream and
reconnects elsewhere. Every other answer, streamed or not (the gateway's streamed
chat completions among them), is let finish: ended early, its client would read the
part sent so far as the whole answer. The stream's route marks its request's ASGI
scope (the dictionary uvicorn's connection holds) before the answer starts.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

SCOPE_KEY = "grove.endless"


def mark(scope: MutableMapping[str, Any]) -> None:
    """Say that the answer to this request never ends by itself."""
    scope[SCOPE_KEY] = True


def marked(scope: Mapping[str, object]) -> bool:
    return bool(scope.get(SCOPE_KEY))
