"""What a provider cannot be sent: the request-side checks every wire format shares.

Called by each adapter's ``build`` (:mod:`reconciler.providers.wire`) before any
network call. Each refusal is a ``client_error`` naming the caller's field
(:func:`~reconciler.providers.base.refuse`): the request is not sent, and not
failed over, since the next model would be asked something else than the caller
asked. Nothing is dropped to make a request fit.
"""

from __future__ import annotations

import json
import math
from typing import Any

from reconciler.manifests import kinds as manifests
from reconciler.providers.base import ChatRequest, ToolCall, ToolChoiceMode, refuse

ROLES = ("system", "user", "assistant", "tool")


def check(model: manifests.AIModel, request: ChatRequest) -> None:
    """Refuse what no wire format can carry: an unknown role, tool calls on a turn other
    than the assistant's, a tool result that answers no call, a tool choice without
    tools or naming a tool that is not among them."""
    for i, message in enumerate(request.messages):
        if message.role not in ROLES:
            raise refuse(
                model, f"messages[{i}].role", f"{message.role!r} is not one of {', '.join(ROLES)}"
            )
        if message.tool_calls and message.role != "assistant":
            raise refuse(
                model, f"messages[{i}].tool_calls", "only an assistant message carries tool calls"
            )
        if message.role == "tool" and not message.tool_call_id:
            raise refuse(
                model, f"messages[{i}].tool_call_id", "a tool message answers a tool call by its id"
            )
    choice = request.tool_choice
    if choice is None:
        return
    if not request.tools:
        raise refuse(model, "tool_choice", "is only allowed when tools are given")
    if choice.mode is ToolChoiceMode.TOOL and choice.name not in {t.name for t in request.tools}:
        raise refuse(model, "tool_choice", f"names {choice.name!r}, which is not among the tools")


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def stops(model: manifests.AIModel, request: ChatRequest, limit: int) -> list[str]:
    """The stop sequences, if the provider takes that many (OpenAI 4, Gemini 5)."""
    if len(request.stop) > limit:
        raise refuse(model, "stop", f"this provider takes at most {limit} stop sequences")
    return list(request.stop)


def arguments(model: manifests.AIModel, call: ToolCall, i: int, j: int) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic and Gemini take (OpenAI carries the
    JSON text as it is). Empty text is no arguments: models write it for a function
    without parameters."""
    field = f"messages[{i}].tool_calls[{j}].function.arguments"
    if not call.arguments.strip():
        return {}
    try:
        value = json.loads(call.arguments, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        raise refuse(model, field, "is not JSON (NaN, Infinity and 1e400 are not)") from None
    if not isinstance(value, dict):
        raise refuse(model, field, "is not a JSON object; this provider takes an object")
    return value


def no_names(model: manifests.AIModel, request: ChatRequest) -> None:
    """Anthropic and Gemini have no participant names (a tool result's name is the
    function's, which Gemini uses), and no strict mode for a tool's arguments."""
    for i, message in enumerate(request.messages):
        if message.name is not None and message.role != "tool":
            raise refuse(model, f"messages[{i}].name", "this provider has no participant names")
    for i, tool in enumerate(request.tools):
        if tool.strict:
            raise refuse(
                model,
                f"tools[{i}].function.strict",
                "this provider has no strict mode for tool arguments",
            )
