"""ASGI middleware that bounds request bodies before anything parses them.

Bodies over the cap get 413 (from the Content-Length, or while reading a
chunked body); JSON nested deeper than a bound gets 422 before Python's
recursive parser could meet it. The body is buffered (it is capped) and
replayed to the application. Refusals are the same problem documents as every
other error.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from reconciler.api import problems
from reconciler.api.problems import ApiError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SPECIAL = re.compile(rb'[\[\]{}"\\]')


def json_depth(body: bytes) -> int:
    """The deepest nesting of ``[``/``{`` outside strings: one linear pass, no recursion.

    Only the special bytes are visited; a backslash inside a string skips the
    byte after it, so escaped quotes never end a string.
    """
    depth = deepest = 0
    in_string = False
    skip = -1
    for match in _SPECIAL.finditer(body):
        at = match.start()
        if at == skip:
            continue
        char = body[at]
        if in_string:
            if char == 0x5C:  # backslash
                skip = at + 1
            elif char == 0x22:  # quote
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _may_nest_deeper(body: bytes, max_depth: int) -> bool:
    """Whether ``body`` nests deeper than ``max_depth``; nesting needs an opening
    bracket per level, so most bodies are cleared by two counts (in C) without the
    walk of :func:`json_depth`."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    return json_depth(body) > max_depth


class BodyLimits:
    def __init__(self, app: ASGIApp, *, max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _problem(
                send, 413, "too-large", f"request bodies are capped at {self.max_bytes} bytes"
            )
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _problem(
                    send, 413, "too-large", f"request bodies are capped at {self.max_bytes} bytes"
                )
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        kind = headers.get("content-type", "").lower()
        if body and "json" in kind and _may_nest_deeper(body, self.max_depth):
            await _problem(
                send, 422, "too-deep", f"JSON nested deeper than {self.max_depth} levels"
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _problem(send: Send, status: int, code: str, detail: str) -> None:
    """The same problem document every other error gets (``problems.respond``)."""
    titles = {413: "Request body too large", 422: "JSON nested too deep"}
    response = problems.respond(ApiError(status, code, titles[status], detail))

    async def nothing() -> Message:  # the body was refused: nothing more is read
        return {"type": "http.disconnect"}

    await response({"type": "http"}, nothing, send)
