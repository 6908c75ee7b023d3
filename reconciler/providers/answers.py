"""What a provider may answer: the three wire formats' answers, checked field by field.

Called by the transport (:func:`decode`, on every body) and by the adapters
of :mod:`reconciler.providers.wire` (:func:`read`, on every decoded answer),
before any value of it is used. Whatever a provider sends, the result is either a
:class:`Reading` whose token counts are integers from 0 to
:data:`MAX_TOKENS` and whose text is a string, or a ``bad_response``
:class:`~reconciler.providers.base.ProviderError` naming the field and what
was wrong with it: never another exception, never a value that could make a
cost negative or non-finite, a routing-log row the database refuses, or a
500. Error messages describe a bad value (``a 401-digit integer``, ``inf``,
``the string '7'``) and never repeat a long one.

Pydantic at the edge, strict: a count is a JSON integer, not ``"7"``, not
``7.0``, not ``true``. Fields Grove does not read are ignored.

Tool calls are read as OpenAI carries them (an id, a function name, the arguments
as JSON text): Anthropic's and Gemini's argument objects are serialized, and must
be objects whose every value JSON can carry. Each format's finish reason is told
in OpenAI's words (:class:`FinishReason`); a reason Grove does not know is
``stop``, and a turn that ends in tool calls says ``tool_calls`` whatever the
provider called it, since that is what a caller's tool loop looks at.
"""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from reconciler.providers.base import (
    MAX_TOKENS,
    FailureKind,
    FinishReason,
    ProviderError,
    ToolCall,
)

MAX_INT_DIGITS = 20  # longer JSON integers are not converted (Python refuses over 4,300)
MAX_SHOWN = 40  # characters of a bad string shown in a message
TOKEN_RULE = f"a token count is an integer from 0 to {MAX_TOKENS:,}"


def _whole(text: str) -> str:
    """Text Grove can pass on: a lone surrogate (JSON's ``"\\ud800"`` decodes to one)
    has no UTF-8 form, so no answer, log row or event could carry it."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise PydanticCustomError(
                "lone_surrogate", "text must be Unicode text (it holds a lone surrogate)"
            ) from None
    return text


def _object_text(value: Any) -> str:
    """A tool call's arguments object (Anthropic's ``input``, Gemini's ``args``) as the
    JSON text OpenAI carries. Numbers JSON cannot carry (``1e400`` is inf, a 400-digit
    integer was never converted) and lone surrogates make it no answer."""
    if not isinstance(value, dict):
        raise PydanticCustomError("object_type", "a tool call's arguments must be a JSON object")
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):  # HugeNumber, inf or nan, too deep
        raise PydanticCustomError(
            "unserializable", "a tool call's arguments must hold only finite numbers"
        ) from None
    return _whole(text)


TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Text = Annotated[str, AfterValidator(_whole)]
Reason = Annotated[Text | None, Field(max_length=64)]  # finish / stop reasons
Arguments = Annotated[str, BeforeValidator(_object_text)]  # an object, as JSON text


def new_call_id() -> str:
    """An id for a tool call whose provider gave none (Gemini): as OpenAI's look."""
    return "call_" + secrets.token_hex(12)


def finish_of(reasons: dict[str, FinishReason], reason: str | None, called: bool) -> FinishReason:
    finish = reasons.get(reason or "", FinishReason.STOP)
    return FinishReason.TOOL_CALLS if called and finish is FinishReason.STOP else finish


class HugeNumber:
    """A JSON integer too long to be any count: stands in for it, unconverted."""

    __slots__ = ("digits", "negative")

    def __init__(self, digits: int, *, negative: bool) -> None:
        self.digits = digits
        self.negative = negative

    def __str__(self) -> str:
        return f"a {'negative ' if self.negative else ''}{self.digits}-digit integer"


def _integer(text: str) -> int | HugeNumber:
    digits = len(text.lstrip("-"))
    if digits <= MAX_INT_DIGITS:
        return int(text)
    return HugeNumber(digits, negative=text.startswith("-"))


_DECODER = json.JSONDecoder(parse_int=_integer)


def decode(body: bytes) -> Any:
    """The JSON value of ``body`` (UTF-8, -16 or -32, as ``json.loads`` reads bytes);
    integers too long to be a count become :class:`HugeNumber`. Raises ValueError or
    RecursionError for a body that is not JSON."""
    return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


def decode_text(text: str) -> Any:
    """:func:`decode` of text already decoded (a server-sent event's data)."""
    return _DECODER.decode(text)


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """What Grove takes from an answer. ``counted`` is False when the provider gave no
    token counts at all (allowed for ``openai-compatible`` only; the counts are then 0)."""

    text: str
    input_tokens: int
    output_tokens: int
    counted: bool = True
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = FinishReason.STOP


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


# ---------------------------------------------------------------- OpenAI chat completions


class _OpenAIUsage(_Wire):
    prompt_tokens: TokenCount
    completion_tokens: TokenCount


OPENAI_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,  # the deprecated name of the same thing
    "content_filter": FinishReason.CONTENT_FILTER,
}


class _OpenAIFunction(_Wire):
    name: Text
    arguments: Text  # JSON text as the model wrote it: passed on, not parsed


class _OpenAIToolCall(_Wire):
    id: Text
    function: _OpenAIFunction


class _OpenAIMessage(_Wire):
    # before content, whose check reads them
    tool_calls: list[_OpenAIToolCall] | None = None
    refusal: Text | None = None  # why the model declined to write a structured output
    content: Text | None = Field(default=None, validate_default=True)

    @field_validator("content")
    @classmethod
    def _text_tool_calls_or_refusal(cls, content: str | None, info: ValidationInfo) -> str | None:
        if content is None and not info.data.get("tool_calls") and info.data.get("refusal") is None:
            raise PydanticCustomError(
                "content_missing", "a message without tool calls or a refusal must have a text"
            )
        return content


class _OpenAIChoice(_Wire):
    message: _OpenAIMessage
    finish_reason: Reason = None

    def reading(self, input_tokens: int, output_tokens: int, *, counted: bool = True) -> Reading:
        calls = tuple(
            ToolCall(call.id, call.function.name, call.function.arguments)
            for call in self.message.tool_calls or ()
        )
        message = self.message
        finish = finish_of(OPENAI_REASONS, self.finish_reason, bool(calls))
        if message.content is None and message.refusal is not None:  # the refusal is the text
            finish = FinishReason.CONTENT_FILTER
        text = message.content if message.content is not None else message.refusal or ""
        return Reading(text, input_tokens, output_tokens, counted, calls, finish)


class OpenAIAnswer(_Wire):
    choices: Annotated[list[_OpenAIChoice], Field(min_length=1)]
    usage: _OpenAIUsage

    def reading(self) -> Reading:
        return self.choices[0].reading(self.usage.prompt_tokens, self.usage.completion_tokens)


class CompatibleAnswer(_Wire):
    """An OpenAI-compatible server's answer: ``usage`` may be absent (docs/routing.md)."""

    choices: Annotated[list[_OpenAIChoice], Field(min_length=1)]
    usage: _OpenAIUsage | None = None

    def reading(self) -> Reading:
        if self.usage is None:
            return self.choices[0].reading(0, 0, counted=False)
        return self.choices[0].reading(self.usage.prompt_tokens, self.usage.completion_tokens)


# ---------------------------------------------------------------- Anthropic Messages


ANTHROPIC_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}


class _AnthropicBlock(_Wire):
    """A content block: text, or a tool call (other kinds, such as thinking, are not
    read)."""

    type: Annotated[str, Field(max_length=64)]
    text: Text | None = None
    id: Text | None = None  # tool_use
    name: Text | None = None  # tool_use
    input: Arguments | None = None  # tool_use, as JSON text

    @model_validator(mode="after")
    def _blocks_are_whole(self) -> _AnthropicBlock:
        if self.type == "text" and self.text is None:
            raise PydanticCustomError("text_missing", "a text block must have a text")
        if self.type == "tool_use" and None in (self.id, self.name, self.input):
            raise PydanticCustomError(
                "tool_use_incomplete", "a tool_use block must have an id, a name and an input"
            )
        return self

    def call(self) -> ToolCall | None:
        if self.type != "tool_use" or self.id is None or self.name is None:
            return None
        return ToolCall(self.id, self.name, self.input or "{}")


class _AnthropicUsage(_Wire):
    input_tokens: TokenCount
    output_tokens: TokenCount


class AnthropicAnswer(_Wire):
    content: list[_AnthropicBlock]
    stop_reason: Reason = None
    usage: _AnthropicUsage

    def reading(self) -> Reading:
        text = "".join(b.text for b in self.content if b.type == "text" and b.text is not None)
        calls = tuple(call for block in self.content if (call := block.call()) is not None)
        return Reading(
            text,
            self.usage.input_tokens,
            self.usage.output_tokens,
            tool_calls=calls,
            finish_reason=finish_of(ANTHROPIC_REASONS, self.stop_reason, bool(calls)),
        )


# ---------------------------------------------------------------- Gemini generateContent


class _Camel(_Wire):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False)


GEMINI_REASONS = {
    "STOP": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    **dict.fromkeys(
        ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"),
        FinishReason.CONTENT_FILTER,
    ),
}


class _GeminiCall(_Camel):
    name: Text
    args: Arguments = "{}"  # absent for a function without parameters
    id: Text | None = None  # Gemini gives none; one is made up when it is absent


class _GeminiPart(_Camel):
    text: Text = ""
    thought: bool = False  # a summary of the model's thinking, not its answer
    function_call: _GeminiCall | None = None


class _GeminiContent(_Camel):
    parts: list[_GeminiPart] = []  # absent when the model said nothing (MAX_TOKENS)


class _GeminiCandidate(_Camel):
    content: _GeminiContent = _GeminiContent()  # absent when blocked (SAFETY)
    finish_reason: Reason = None


class _GeminiUsage(_Camel):
    # proto3 JSON leaves out a count of 0: absent means 0, present must be a count
    prompt_token_count: TokenCount = 0
    candidates_token_count: TokenCount = 0


class _GeminiFeedback(_Camel):
    block_reason: Reason = None  # the prompt was blocked: no candidate


class GeminiAnswer(_Camel):
    prompt_feedback: _GeminiFeedback | None = None  # before candidates: their check reads it
    candidates: list[_GeminiCandidate] = Field(default=[], validate_default=True)
    usage_metadata: _GeminiUsage

    @field_validator("candidates")
    @classmethod
    def _answered_or_blocked(
        cls, candidates: list[_GeminiCandidate], info: ValidationInfo
    ) -> list[_GeminiCandidate]:
        feedback = info.data.get("prompt_feedback")
        if not candidates and (feedback is None or feedback.block_reason is None):
            raise PydanticCustomError(
                "candidates_missing", "an answer has a candidate unless its prompt was blocked"
            )
        return candidates

    def reading(self) -> Reading:
        usage = self.usage_metadata
        if not self.candidates:  # a blocked prompt: filtered, not a failure of the model
            return Reading(
                "", usage.prompt_token_count, 0, finish_reason=FinishReason.CONTENT_FILTER
            )
        candidate = self.candidates[0]
        parts = candidate.content.parts
        text = "".join(part.text for part in parts if not part.thought)
        calls = tuple(
            ToolCall(call.id or new_call_id(), call.name, call.args)
            for part in parts
            if (call := part.function_call) is not None
        )
        return Reading(
            text,
            usage.prompt_token_count,
            usage.candidates_token_count,
            tool_calls=calls,
            finish_reason=finish_of(GEMINI_REASONS, candidate.finish_reason, bool(calls)),
        )


Answer = OpenAIAnswer | CompatibleAnswer | AnthropicAnswer | GeminiAnswer


# ---------------------------------------------------------------- reading


def read(shape: type[Answer], answer: Any, who: str) -> Reading:
    """Check ``answer`` against ``shape`` and take its text and counts; a
    ``bad_response`` ProviderError naming the first wrong field otherwise."""
    try:
        return shape.model_validate(answer).reading()
    except ValidationError as exc:
        raise ProviderError(FailureKind.BAD_RESPONSE, f"{who}: {problem(exc)}") from None


def problem(exc: ValidationError) -> str:
    """One line: the first wrong field, what it holds and what it should (no long values)."""
    errors = exc.errors(include_url=False, include_context=False)
    first = errors[0]
    where = path(first["loc"])
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    if first["type"] == "missing":
        return f"the answer has no {where}{more}"
    if not where:
        return f"the answer is {describe(first['input'])}, not a JSON object{more}"
    if _is_count(first["loc"]):
        wanted = TOKEN_RULE
    elif first["type"] in ("model_type", "model_attributes_type", "dict_type"):
        wanted = "an object was expected"  # pydantic's message names our class
    else:
        wanted = _lower(first["msg"])
    return f"the answer's {where} is {describe(first['input'])}; {wanted}{more}"


def _is_count(loc: tuple[int | str, ...]) -> bool:
    return bool(loc) and isinstance(loc[-1], str) and "token" in loc[-1].lower()


def _lower(message: str) -> str:
    return message[:1].lower() + message[1:]


def path(loc: tuple[int | str, ...]) -> str:
    """``('choices', 0, 'message', 'content')`` -> ``choices[0].message.content``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe(value: Any) -> str:
    """A short, safe description of a JSON value for a message (bounded length, no
    control characters)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, HugeNumber):
        return str(value)
    if isinstance(value, int):
        text = str(value)
        digits = len(text.lstrip("-"))
        return text if digits <= MAX_INT_DIGITS else str(HugeNumber(digits, negative=value < 0))
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, str):
        shown = repr(value[:MAX_SHOWN])
        return f"the string {shown}" + (
            f" ({len(value)} characters)" if len(value) > MAX_SHOWN else ""
        )
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"an array of {len(value)} items" if value else "an empty array"
    return type(value).__name__
