"""Streaming an lm_function: ``fn.stream(...)`` and ``fn.astream(...)`` and the events they yield.

A stream runs the same call as ``fn(...)``: the same messages, the same retries (:class:`_Run`,
the one retry policy), the same lm span, the same cache; only the LM is asked through
:meth:`~lmprog.lm.BaseLM.stream`. It yields, in order:

- :class:`TextChunk`: new text of the completion being written;
- :class:`PartialOutput`: for a function with several outputs (a pydantic model, dataclass or
  TypedDict return), the output fields complete so far, each validated by its type, whenever
  one more is complete (see :func:`lmprog.format.partial_fields`; the reasoning field of
  ``reasoning=True`` is not one of them);
- :class:`Restart`: the completion so far is void (its reply was refused and is retried with the
  errors shown to the model, or the provider request failed and was retried); the next chunks
  start a new completion;
- :class:`FinalOutput`, last: the value the call returns (``fn(...)`` with the same arguments and
  the same replies returns an equal value).

A function that scores its labels (``decode="score"`` or ``"calibrated"``, on an LM that returns
logprobs) writes no reply: its stream is one :class:`TextChunk` of the chosen option's text, then
the :class:`FinalOutput`. The completion layout streams too: the embedded model continues a plain
prompt without a streaming callback, so that reply comes as one chunk.

With tools, a reply that calls tools is streamed like any other; the tools then run (as in a
call) and a :class:`Restart` starts the next reply. Each request's usage is added to the span as
it is made, so a tool's own lm_function calls count in their own spans only.

A call that fails raises from the stream what ``fn(...)`` raises (after the events of its
attempts). A cache hit comes as one chunk. The trace and the cache record each completion once,
whole. The stream runs in a copy of the context it was created in (settings and the enclosing
span included), so its span does not leak into the consumer's code between events; leaving a
stream early (``break``) closes its span.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping
from contextlib import aclosing, closing
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar

from lmprog.format import partial_fields
from lmprog.function._run import RunSpec, _counted, _Run
from lmprog.function._score import ScoreRun, start_run
from lmprog.lm import Completion, TextDelta
from lmprog.trace import span

__all__ = [
    "FinalOutput",
    "PartialOutput",
    "Restart",
    "StreamEvent",
    "TextChunk",
    "astream_events",
    "stream_events",
]

T = TypeVar("T")

_FIELD_ENDS = (":", ",", "}")

#: why a provider retry restarts a stream
PROVIDER_RETRY = "the provider request failed and was sent again"


@dataclass(frozen=True)
class TextChunk:
    """New text of the completion being written (``attempt`` counts replies, from 1)."""

    text: str
    attempt: int


@dataclass(frozen=True)
class PartialOutput:
    """The output fields complete so far (by field name), each validated by its type; the
    whole value is validated at the end (:class:`FinalOutput`). Each one holds every field of the
    one before it, and one more at least."""

    fields: Mapping[str, Any]
    attempt: int


@dataclass(frozen=True)
class Restart:
    """Forget the text and fields of this stream so far: a new completion starts.

    ``attempt`` is the reply about to be written; ``errors`` says why (a refused reply's
    errors, as shown to the model, or :data:`PROVIDER_RETRY`)."""

    attempt: int
    errors: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class FinalOutput(Generic[T]):
    """The last event: the call's return value."""

    value: T


StreamEvent: TypeAlias = TextChunk | PartialOutput | Restart | FinalOutput[Any]


class _Attempt:
    """What one reply has streamed so far: its text and its complete fields."""

    def __init__(self, func: RunSpec, run: _Run, number: int) -> None:
        self.func, self.run, self.number = func, run, number
        self.text = ""
        self.fields: dict[str, Any] = {}

    def events(self, item: TextDelta | Completion) -> Iterator[StreamEvent]:
        if isinstance(item, Completion):
            return
        if item.restart:
            self.text, self.fields = "", {}
            yield Restart(self.number, (PROVIDER_RETRY,))
            return
        self.text += item.text
        yield TextChunk(item.text, self.number)
        if not any(mark in item.text for mark in _FIELD_ENDS):
            return  # no field can have completed: a header's colon, a JSON comma or brace ends one
        found = partial_fields(self.run.wire, self.text, structured=self.run.structured)
        names = self.func.signature.output_names
        fields = {name: found[name] for name in names if name in found}
        if len(fields) > len(self.fields):
            self.fields = fields
            yield PartialOutput(dict(fields), self.number)


def _events(func: RunSpec, name: str, inputs: dict[str, Any], obj: Any) -> Generator[StreamEvent, None, None]:
    run = start_run(func, inputs)
    with span(name, func.signature.qualname, "lm", inputs, obj) as sp:
        run.span = sp
        if isinstance(run, ScoreRun):  # no reply is written: the chosen option comes whole
            while (msgs := run.next_messages()) is not None:
                with _counted(sp):
                    run.feed(run.lm.complete(msgs, **run.params))
            yield from _scored(run)
            return
        number = 0
        while (msgs := run.next_messages()) is not None:
            number += 1
            if number > 1:
                yield Restart(number, run.errors)
            attempt = _Attempt(func, run, number)
            completion: Completion | None = None
            with _counted(sp), closing(run.lm.stream(msgs, **run.params)) as items:
                for item in items:
                    completion = item if isinstance(item, Completion) else completion
                    yield from attempt.events(item)
            if completion is None:  # pragma: no cover - BaseLM.stream always ends with one
                raise RuntimeError("the LM stream ended without its completion")
            run.feed(completion)
            if run.pending and run.loop is not None:  # a turn of tool calls: run them, go on
                run.tools_done([run.loop.call(request) for request in run.pending])
        yield FinalOutput(run.result())


async def _aevents(
    func: RunSpec, name: str, inputs: dict[str, Any], obj: Any
) -> AsyncGenerator[StreamEvent, None]:
    run = start_run(func, inputs)
    with span(name, func.signature.qualname, "lm", inputs, obj) as sp:
        run.span = sp
        if isinstance(run, ScoreRun):
            while (msgs := run.next_messages()) is not None:
                with _counted(sp):
                    run.feed(await run.lm.acomplete(msgs, **run.params))
            for event in _scored(run):
                yield event
            return
        number = 0
        while (msgs := run.next_messages()) is not None:
            number += 1
            if number > 1:
                yield Restart(number, run.errors)
            attempt = _Attempt(func, run, number)
            completion: Completion | None = None
            with _counted(sp):
                async with aclosing(run.lm.astream(msgs, **run.params)) as items:
                    async for item in items:
                        completion = item if isinstance(item, Completion) else completion
                        for event in attempt.events(item):
                            yield event
            if completion is None:  # pragma: no cover - BaseLM.astream always ends with one
                raise RuntimeError("the LM stream ended without its completion")
            run.feed(completion)
            if run.pending and run.loop is not None:
                run.tools_done([await run.loop.acall(request) for request in run.pending])
        yield FinalOutput(run.result())


def _scored(run: ScoreRun) -> Iterator[StreamEvent]:
    value = run.result()
    yield TextChunk(run.chosen_text, 1)
    yield FinalOutput(value)


def stream_events(func: RunSpec, name: str, inputs: dict[str, Any], obj: Any) -> Iterator[StreamEvent]:
    """The events of one call of ``func`` on bound ``inputs``, each step run in a copy of the
    context of this call (see the module docs)."""
    return _stepped(contextvars.copy_context(), _events(func, name, inputs, obj))


def astream_events(func: RunSpec, name: str, inputs: dict[str, Any], obj: Any) -> AsyncIterator[StreamEvent]:
    """The async twin of :func:`stream_events` (each step a task in the copied context)."""
    return _astepped(contextvars.copy_context(), _aevents(func, name, inputs, obj))


def _stepped(context: contextvars.Context, events: Generator[T, None, None]) -> Iterator[T]:
    try:
        while True:
            try:
                event = context.run(next, events)
            except StopIteration:
                return
            yield event
    finally:
        context.run(events.close)


async def _astepped(context: contextvars.Context, events: AsyncGenerator[T, None]) -> AsyncIterator[T]:
    async def step() -> T:
        return await anext(events)

    async def close() -> None:
        await events.aclose()

    try:
        while True:
            try:
                event = await asyncio.create_task(step(), context=context)
            except StopAsyncIteration:
                return
            yield event
    finally:
        await asyncio.create_task(close(), context=context)
