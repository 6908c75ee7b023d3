"""Provider streams read as they arrive: each provider's server-sent events turned
into the normalized deltas of :mod:`reconciler.providers.base`.

The adapters of :mod:`reconciler.providers.wire` call :func:`deltas` with the
reader of their provider (:class:`OpenAIReader`, :class:`AnthropicReader`,
:class:`GeminiReader`). Every event is checked the way
:mod:`reconciler.providers.answers` checks a whole answer, strictly and before
any value of it is used: an event that is not in the provider's shape is a
``bad_response`` naming the field, token counts are integers from 0 to 10^9,
text holds no lone surrogate. A provider's own error event becomes the failure
it names; its message is passed on short and bounded, never whole. Finish
reasons are told in OpenAI's words as answers.py tells them.

A stream is whole only when the provider says it is done ([DONE],
``message_stop``, a ``finishReason``): :meth:`Reader.end` refuses a stream that
ended before, since its text would be cut short without anyone knowing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from reconciler.providers import answers, chunks
from reconciler.providers.base import (
    Delta,
    FailureKind,
    FinishReason,
    ProviderError,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
)

if TYPE_CHECKING:
    from reconciler.manifests import kinds as manifests
    from reconciler.providers.transport import Http

MAX_ERROR_SHOWN = 120  # characters of a provider's error message passed on


class Reader(Protocol):
    """One stream's reader: fed its events in order, it gives the deltas of each."""

    done: bool  # the provider's end marker came: nothing more is to be read

    def feed(self, event: str | None, data: str) -> list[Delta]:
        """The deltas of one event (often none); a ``bad_response`` ProviderError for an
        event not in the provider's shape, the failure it names for an error event."""
        ...

    def end(self) -> StreamEnd:
        """The stream's last item; a ``bad_response`` ProviderError if it ended before
        the provider said it was done."""
        ...


async def deltas(
    http: Http,
    model: manifests.AIModel,
    reader: Reader,
    url: str,
    headers: Mapping[str, str],
    payload: dict[str, Any],
) -> AsyncGenerator[Delta, None]:
    """The deltas of a streamed call, then one :class:`StreamEnd`.

    Reading stops at the provider's end marker, without waiting for the body's end,
    and the connection is let go (back to the pool when the body was whole, else
    closed) before the StreamEnd is handed on. Closing this generator closes the
    provider's stream at once.
    """
    events = http.events(
        url,
        headers,
        payload,
        deadline_s=model.payload.timeout_ms / 1000,
        idle_s=http.stream_idle_s,
    )
    async with contextlib.aclosing(events):
        async for name, data in events:
            for delta in reader.feed(name, data):
                yield delta
            if reader.done:
                break
    yield reader.end()


# ---------------------------------------------------------------- shared checks


class _Reading:
    """What every reader shares: its model's id for messages, and the checks."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.done = False

    def bad(self, why: str) -> ProviderError:
        return ProviderError(FailureKind.BAD_RESPONSE, f"{self.model_id}: {why}")

    def decode(self, data: str, what: str) -> Any:
        return chunks.decode(data, self.model_id, what)

    def check(self, shape: type[chunks.Shape], value: Any, what: str) -> chunks.Shape:
        return chunks.check(shape, value, self.model_id, what)


def _short(text: str) -> str:
    """A provider's words, fit for a message: one line, bounded."""
    line = "".join(c if c.isprintable() else " " for c in text[: MAX_ERROR_SHOWN + 1])
    return line if len(line) <= MAX_ERROR_SHOWN else line[:MAX_ERROR_SHOWN] + "..."


def _provider_error(
    model_id: str, error: chunks.ErrorBody, kinds: Callable[[str], FailureKind]
) -> ProviderError:
    """A provider's error event as the failure its type names (a next model is worth
    a try after an overload, not after a refused request). Its message is not repeated:
    providers put keys in them ("Incorrect API key provided: sk-..."), and this text
    reaches the caller and the routing log; the type is a word from a short list."""
    return ProviderError(
        kinds(error.type),
        f"{model_id}: the provider ended the stream with an error ({_short(error.type)})",
    )


# ---------------------------------------------------------------- OpenAI chat completions


def _openai_failure(kind: str) -> FailureKind:
    if "rate_limit" in kind:
        return FailureKind.RATE_LIMIT
    if kind in ("invalid_request_error", "invalid_request"):
        return FailureKind.CLIENT_ERROR
    return FailureKind.SERVER_ERROR  # server_error, and what a server may call its crash


class OpenAIReader(_Reading):
    """``data: {chat.completion.chunk}`` events, then ``data: [DONE]``.

    Text comes in ``choices[0].delta.content``; tool calls in ``delta.tool_calls``,
    each numbered by ``index`` (0, 1, ... in order), its first fragment carrying its id
    and name, the next ones pieces of its arguments. With ``include_usage`` a last
    chunk with no choices carries the counts; an OpenAI-compatible server may send
    none (``usage_required`` False: the end is then not counted). A chunk
    ``{"error": {...}}`` is the server's failure mid-stream.
    """

    def __init__(self, model_id: str, *, usage_required: bool) -> None:
        super().__init__(model_id)
        self.usage_required = usage_required
        self._ids: list[str] = []  # the id of each tool call, by index
        self._reason: str | None = None
        self._usage: chunks.OpenAIUsage | None = None

    def feed(self, event: str | None, data: str) -> list[Delta]:
        if self.done:
            return []
        if data.strip() == "[DONE]":
            self.done = True
            return []
        value = self.decode(data, "a chunk")
        if isinstance(value, dict) and "error" in value and "choices" not in value:
            error = self.check(chunks.ErrorEvent, value, "an error chunk").error
            raise _provider_error(self.model_id, error, _openai_failure)
        chunk = self.check(chunks.OpenAIChunk, value, "a chunk")
        if chunk.usage is not None:
            self._usage = chunk.usage  # the last count wins
        if not chunk.choices:
            return []
        choice = chunk.choices[0]
        if choice.finish_reason is not None:
            self._reason = choice.finish_reason
        out: list[Delta] = []
        if choice.delta.content:
            out.append(TextDelta(choice.delta.content))
        for n, call in enumerate(choice.delta.tool_calls or ()):
            delta = self._call(call, f"choices[0].delta.tool_calls[{n}]")
            if delta is not None:
                out.append(delta)
        return out

    def _call(self, call: chunks.OpenAIToolCall, where: str) -> ToolCallDelta | None:
        started = len(self._ids)
        if call.index == started:  # the first fragment of the next call
            if call.id is None or call.function.name is None:
                raise self.bad(
                    f"a chunk's {where} starts tool call {started} without an id and a name"
                )
            self._ids.append(call.id)
            return ToolCallDelta(
                call.index, call.id, call.function.name, call.function.arguments or ""
            )
        if call.index > started:
            raise self.bad(
                f"a chunk's {where}.index is {call.index}; tool call {started} comes first"
            )
        if call.id is not None and call.id != self._ids[call.index]:
            raise self.bad(f"a chunk's {where}.id changes the id of tool call {call.index}")
        if not call.function.arguments:
            return None
        return ToolCallDelta(call.index, arguments=call.function.arguments)

    def end(self) -> StreamEnd:
        if not self.done:
            raise self.bad("the stream ended without data: [DONE]")
        if self._reason is None:
            raise self.bad("the stream ended without a finish_reason")
        finish = answers.finish_of(answers.OPENAI_REASONS, self._reason, bool(self._ids))
        if self._usage is None:
            if self.usage_required:
                raise self.bad("the stream ended without usage (stream_options.include_usage)")
            return StreamEnd(finish, 0, 0, counted=False)
        return StreamEnd(finish, self._usage.prompt_tokens, self._usage.completion_tokens)


# ---------------------------------------------------------------- Anthropic Messages


_TEXT = -1  # a text block, in AnthropicReader's table of blocks
_OTHER = -2  # a block Grove does not read (thinking, a server tool's)


def _anthropic_failure(kind: str) -> FailureKind:
    if kind in ("overloaded_error", "api_error"):
        return FailureKind.SERVER_ERROR
    if kind == "rate_limit_error":
        return FailureKind.RATE_LIMIT
    return FailureKind.CLIENT_ERROR


class AnthropicReader(_Reading):
    """Anthropic's event sequence: ``message_start``, for each content block
    ``content_block_start``, ``content_block_delta``... and ``content_block_stop``,
    then ``message_delta`` (the stop reason and output count) and ``message_stop``;
    ``ping`` any time, ``error`` for the provider's failure mid-stream.

    Text blocks give text; tool_use blocks give tool calls numbered 0, 1, ... in the
    order of their blocks (text blocks between them take no number), their arguments
    in ``input_json_delta`` pieces ("{}" when a call had none). Event types Grove does
    not know are passed over, as Anthropic asks of clients.
    """

    def __init__(self, model_id: str) -> None:
        super().__init__(model_id)
        self._blocks: dict[int, int] = {}  # block index -> tool call number, _TEXT, _OTHER
        self._calls = 0
        self._argued: set[int] = set()  # tool calls that had some argument text
        self._input: int | None = None
        self._output = 0
        self._reason: str | None = None

    def feed(self, event: str | None, data: str) -> list[Delta]:
        if self.done:
            return []
        value = self.decode(data, "an event")
        kind = self.check(chunks.Typed, value, "an event").type
        what = f"a {kind} event"
        if kind == "message_start":
            usage = self.check(chunks.MessageStart, value, what).message.usage
            self._input, self._output = usage.input_tokens, usage.output_tokens
        elif kind == "content_block_start":
            return self._start(self.check(chunks.BlockStart, value, what))
        elif kind == "content_block_delta":
            return self._piece(self.check(chunks.BlockDelta, value, what))
        elif kind == "content_block_stop":
            return self._stop(self.check(chunks.BlockStop, value, what).index)
        elif kind == "message_delta":
            change = self.check(chunks.MessageDelta, value, what)
            self._reason = change.delta.stop_reason or self._reason
            self._output = change.usage.output_tokens
            if change.usage.input_tokens is not None:
                self._input = change.usage.input_tokens
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            error = self.check(chunks.ErrorEvent, value, what).error
            raise _provider_error(self.model_id, error, _anthropic_failure)
        return []  # ping, and event types added after this was written

    def _start(self, start: chunks.BlockStart) -> list[Delta]:
        block = start.content_block
        if start.index in self._blocks:
            raise self.bad(f"a content_block_start event starts block {start.index} again")
        if block.type == "text":
            self._blocks[start.index] = _TEXT
            return [TextDelta(block.text)] if block.text else []
        if block.type == "tool_use" and block.id is not None and block.name is not None:
            self._blocks[start.index] = number = self._calls
            self._calls += 1
            return [ToolCallDelta(number, block.id, block.name)]
        self._blocks[start.index] = _OTHER
        return []

    def _piece(self, piece: chunks.BlockDelta) -> list[Delta]:
        """A text_delta of a text block, an input_json_delta of a tool_use block; the
        wrong kind for its block is a bad_response, and the pieces of blocks Grove does
        not read (thinking, signatures, citations, a server tool's input) are passed
        over."""
        block = self._block(piece.index, "content_block_delta")
        delta = piece.delta
        if block == _OTHER:
            return []
        if delta.type == "text_delta" and delta.text is not None:
            if block != _TEXT:
                raise self.bad(
                    f"a content_block_delta event has text for block {piece.index}, "
                    "a tool_use block"
                )
            return [TextDelta(delta.text)] if delta.text else []
        if delta.type == "input_json_delta" and delta.partial_json is not None:
            if block == _TEXT:
                raise self.bad(
                    f"a content_block_delta event has input_json for block {piece.index}, "
                    "a text block"
                )
            if not delta.partial_json:
                return []
            self._argued.add(block)
            return [ToolCallDelta(block, arguments=delta.partial_json)]
        return []  # citations of a text block, and delta types added later

    def _stop(self, index: int) -> list[Delta]:
        block = self._block(index, "content_block_stop")
        if block >= 0 and block not in self._argued:
            return [ToolCallDelta(block, arguments="{}")]  # a call without arguments
        return []

    def _block(self, index: int, kind: str) -> int:
        block = self._blocks.get(index)
        if block is None:
            raise self.bad(f"a {kind} event names block {index}, which never started")
        return block

    def end(self) -> StreamEnd:
        if not self.done:
            raise self.bad("the stream ended without message_stop")
        if self._input is None:
            raise self.bad("the stream ended without message_start")
        if self._reason is None:
            raise self.bad("the stream ended without a stop_reason")
        finish = answers.finish_of(answers.ANTHROPIC_REASONS, self._reason, self._calls > 0)
        return StreamEnd(finish, self._input, self._output)


# ---------------------------------------------------------------- Gemini streamGenerateContent


class GeminiReader(_Reading):
    """``streamGenerateContent?alt=sse``: each event's data is a GenerateContentResponse
    holding the next parts. Gemini sends no end marker: the chunk with a
    ``finishReason`` is the last (the body ends after it). A function call comes whole
    in one part, without an id: one is made up (``call_`` and 24 hex digits). The
    usage of the latest chunk that carries one wins.
    """

    def __init__(self, model_id: str) -> None:
        super().__init__(model_id)
        self._calls = 0
        self._finish: FinishReason | None = None
        self._usage = chunks.GeminiUsage()

    def feed(self, event: str | None, data: str) -> list[Delta]:
        if self.done:
            return []
        chunk = self.check(chunks.GeminiChunk, self.decode(data, "a chunk"), "a chunk")
        if chunk.usage_metadata is not None:
            self._usage = chunk.usage_metadata
        if not chunk.candidates:
            feedback = chunk.prompt_feedback
            if feedback is not None and feedback.block_reason is not None:
                self._finish, self.done = FinishReason.CONTENT_FILTER, True
            return []
        candidate = chunk.candidates[0]
        out: list[Delta] = []
        for part in candidate.content.parts:
            if part.text and not part.thought:
                out.append(TextDelta(part.text))
            if (call := part.function_call) is not None:
                out.append(
                    ToolCallDelta(
                        self._calls, call.id or answers.new_call_id(), call.name, call.args
                    )
                )
                self._calls += 1
        if candidate.finish_reason is not None:
            reason = candidate.finish_reason
            self._finish = answers.finish_of(answers.GEMINI_REASONS, reason, self._calls > 0)
            self.done = True
        return out

    def end(self) -> StreamEnd:
        if self._finish is None:
            raise self.bad("the stream ended without a finishReason")
        usage = self._usage
        return StreamEnd(self._finish, usage.prompt_token_count, usage.candidates_token_count)
