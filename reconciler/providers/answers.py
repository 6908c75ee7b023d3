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
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from reconciler.providers.base import MAX_TOKENS, FailureKind, ProviderError

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


TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Text = Annotated[str, AfterValidator(_whole)]
Reason = Annotated[Text | None, Field(max_length=64)]  # finish / stop reasons


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


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """What Grove takes from an answer. ``counted`` is False when the provider gave no
    token counts at all (allowed for ``openai-compatible`` only; the counts are then 0)."""

    text: str
    input_tokens: int
    output_tokens: int
    counted: bool = True


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


# ---------------------------------------------------------------- OpenAI chat completions


class _OpenAIUsage(_Wire):
    prompt_tokens: TokenCount
    completion_tokens: TokenCount


class _OpenAIMessage(_Wire):
    content: Text


class _OpenAIChoice(_Wire):
    message: _OpenAIMessage
    finish_reason: Reason = None


class OpenAIAnswer(_Wire):
    choices: Annotated[list[_OpenAIChoice], Field(min_length=1)]
    usage: _OpenAIUsage

    def reading(self) -> Reading:
        usage = self.usage
        return Reading(
            self.choices[0].message.content, usage.prompt_tokens, usage.completion_tokens
        )


class CompatibleAnswer(_Wire):
    """An OpenAI-compatible server's answer: ``usage`` may be absent (docs/routing.md)."""

    choices: Annotated[list[_OpenAIChoice], Field(min_length=1)]
    usage: _OpenAIUsage | None = None

    def reading(self) -> Reading:
        text = self.choices[0].message.content
        if self.usage is None:
            return Reading(text, 0, 0, counted=False)
        return Reading(text, self.usage.prompt_tokens, self.usage.completion_tokens)


# ---------------------------------------------------------------- Anthropic Messages


class _AnthropicBlock(_Wire):
    type: Annotated[str, Field(max_length=64)]
    text: Text | None = None

    @model_validator(mode="after")
    def _text_blocks_have_text(self) -> _AnthropicBlock:
        if self.type == "text" and self.text is None:
            raise PydanticCustomError("text_missing", "a text block must have a text")
        return self


class _AnthropicUsage(_Wire):
    input_tokens: TokenCount
    output_tokens: TokenCount


class AnthropicAnswer(_Wire):
    content: list[_AnthropicBlock]
    stop_reason: Reason = None
    usage: _AnthropicUsage

    def reading(self) -> Reading:
        text = "".join(b.text for b in self.content if b.type == "text" and b.text is not None)
        return Reading(text, self.usage.input_tokens, self.usage.output_tokens)


# ---------------------------------------------------------------- Gemini generateContent


class _Camel(_Wire):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False)


class _GeminiPart(_Camel):
    text: Text = ""


class _GeminiContent(_Camel):
    parts: list[_GeminiPart] = []  # absent when the model said nothing (MAX_TOKENS)


class _GeminiCandidate(_Camel):
    content: _GeminiContent
    finish_reason: Reason = None


class _GeminiUsage(_Camel):
    # proto3 JSON leaves out a count of 0: absent means 0, present must be a count
    prompt_token_count: TokenCount = 0
    candidates_token_count: TokenCount = 0


class GeminiAnswer(_Camel):
    candidates: Annotated[list[_GeminiCandidate], Field(min_length=1)]
    usage_metadata: _GeminiUsage

    def reading(self) -> Reading:
        text = "".join(part.text for part in self.candidates[0].content.parts)
        usage = self.usage_metadata
        return Reading(text, usage.prompt_token_count, usage.candidates_token_count)


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
