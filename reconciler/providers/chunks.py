"""What a provider may stream: the three formats' events, checked field by field.

The readers of :mod:`reconciler.providers.streams` check every event against
these shapes before any value of it is used, as
:mod:`reconciler.providers.answers` does for whole answers, with the same
types: strict (a count is a JSON integer from 0 to 10^9, not ``"7"``), text
without lone surrogates, fields Grove does not read ignored. A wrong event is
a ``bad_response`` naming the field (:func:`check`), described briefly and
never repeated whole.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from reconciler.providers import answers
from reconciler.providers.base import FailureKind, ProviderError

MAX_INDEX = 10_000  # the largest block or tool call index an event may carry

Index = Annotated[int, Field(ge=0, le=MAX_INDEX)]
Kind = Annotated[str, Field(max_length=64)]  # an event's, block's, delta's or error's type
Text = answers.Text
TokenCount = answers.TokenCount
Reason = answers.Reason


class Chunk(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _Camel(Chunk):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False)


Shape = TypeVar("Shape", bound=Chunk)


def decode(data: str, who: str, what: str) -> Any:
    """The JSON value of an event's data (long integers as :class:`answers.HugeNumber`)."""
    try:
        return answers.decode_text(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        raise ProviderError(FailureKind.BAD_RESPONSE, f"{who}: {what} is not JSON") from None


def check(shape: type[Shape], value: Any, who: str, what: str) -> Shape:
    """``value`` as ``shape``, or a ``bad_response`` naming the first wrong field of
    ``what`` ("a chunk", "a content_block_delta event")."""
    try:
        return shape.model_validate(value)
    except ValidationError as exc:
        raise ProviderError(FailureKind.BAD_RESPONSE, f"{who}: {problem(exc, what)}") from None


def problem(exc: ValidationError, what: str) -> str:
    """One line, as :func:`answers.problem` says it of an answer: the first wrong field,
    what it holds and what it should (no long values)."""
    errors = exc.errors(include_url=False, include_context=False)
    first = errors[0]
    where = answers.path(first["loc"])
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    shown = answers.describe(first["input"])
    if first["type"] == "missing":
        return f"{what} has no {where}{more}"
    if not where:
        return f"{what} is {shown}, not a JSON object{more}"
    last = first["loc"][-1]
    if isinstance(last, str) and "token" in last.lower():
        wanted = answers.TOKEN_RULE
    elif first["type"] in ("model_type", "model_attributes_type", "dict_type"):
        wanted = "an object was expected"  # pydantic's message names our class
    else:
        wanted = first["msg"][:1].lower() + first["msg"][1:]
    return f"{what}'s {where} is {shown}; {wanted}{more}"


class ErrorBody(Chunk):
    type: Kind = "error"
    message: Text = ""


class ErrorEvent(Chunk):
    """A provider's failure mid-stream: Anthropic's ``error`` event, OpenAI's chunk
    ``{"error": {...}}``."""

    error: ErrorBody


# ---------------------------------------------------------------- OpenAI chat completions


class OpenAIFunction(Chunk):
    name: Text | None = None
    arguments: Text | None = None


class OpenAIToolCall(Chunk):
    index: Index
    id: Text | None = None
    function: OpenAIFunction = OpenAIFunction()


class OpenAIDelta(Chunk):
    content: Text | None = None
    tool_calls: list[OpenAIToolCall] | None = None


class OpenAIChoice(Chunk):
    delta: OpenAIDelta = OpenAIDelta()  # some compatible servers leave an empty one out
    finish_reason: Reason = None


class OpenAIUsage(Chunk):
    prompt_tokens: TokenCount
    completion_tokens: TokenCount


class OpenAIChunk(Chunk):
    choices: list[OpenAIChoice]  # empty in the last chunk, which carries the usage
    usage: OpenAIUsage | None = None


# ---------------------------------------------------------------- Anthropic Messages


class Typed(Chunk):
    type: Kind


class _StartUsage(Chunk):
    input_tokens: TokenCount
    output_tokens: TokenCount = 0


class _StartMessage(Chunk):
    usage: _StartUsage


class MessageStart(Chunk):
    message: _StartMessage


class StartBlock(Chunk):
    type: Kind
    text: Text = ""
    id: Text | None = None  # tool_use
    name: Text | None = None  # tool_use

    @model_validator(mode="after")
    def _tool_use_is_named(self) -> StartBlock:
        if self.type == "tool_use" and (self.id is None or self.name is None):
            raise PydanticCustomError(
                "tool_use_incomplete", "a tool_use block must have an id and a name"
            )
        return self


class BlockStart(Chunk):
    index: Index
    content_block: StartBlock


class BlockPiece(Chunk):
    type: Kind
    text: Text | None = None  # text_delta
    partial_json: Text | None = None  # input_json_delta

    @model_validator(mode="after")
    def _pieces_are_whole(self) -> BlockPiece:
        if self.type == "text_delta" and self.text is None:
            raise PydanticCustomError("text_missing", "a text_delta must have a text")
        if self.type == "input_json_delta" and self.partial_json is None:
            raise PydanticCustomError(
                "partial_json_missing", "an input_json_delta must have a partial_json"
            )
        return self


class BlockDelta(Chunk):
    index: Index
    delta: BlockPiece


class BlockStop(Chunk):
    index: Index


class _MessageChange(Chunk):
    stop_reason: Reason = None


class _MessageUsage(Chunk):
    output_tokens: TokenCount
    input_tokens: TokenCount | None = None  # newer API versions repeat the final count


class MessageDelta(Chunk):
    delta: _MessageChange
    usage: _MessageUsage


# ---------------------------------------------------------------- Gemini streamGenerateContent


class GeminiCall(_Camel):
    name: Text
    args: answers.Arguments = "{}"  # absent for a function without parameters
    id: Text | None = None  # Gemini gives none; one is made up


class GeminiPart(_Camel):
    text: Text = ""
    thought: bool = False  # a summary of the model's thinking, not its answer
    function_call: GeminiCall | None = None


class _GeminiContent(_Camel):
    parts: list[GeminiPart] = []


class GeminiCandidate(_Camel):
    content: _GeminiContent = _GeminiContent()  # absent when blocked
    finish_reason: Reason = None


class GeminiUsage(_Camel):
    # proto3 JSON leaves out a count of 0: absent means 0, present must be a count
    prompt_token_count: TokenCount = 0
    candidates_token_count: TokenCount = 0


class _GeminiFeedback(_Camel):
    block_reason: Reason = None


class GeminiChunk(_Camel):
    candidates: list[GeminiCandidate] = []  # none when the prompt itself was blocked
    usage_metadata: GeminiUsage | None = None
    prompt_feedback: _GeminiFeedback | None = None
