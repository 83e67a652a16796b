"""Streaming one LM call: the drivers of :meth:`BaseLM.stream` and :meth:`BaseLM.astream`.

They drive the same :class:`~lmprog.lm._call.CallRun` state machine as ``complete`` (cache
lookup, usage scopes, retries, cache store); only the sending differs. A provider streams through
``_request_stream(messages, params)``, which yields text pieces (``str``) then exactly one whole
:class:`Completion` (its text is the pieces joined; it carries usage and ``finish_reason``). The
drivers yield :class:`TextDelta` items, then that call's final :class:`Completion`:

- a cache hit yields the cached text as one delta (the cache stores whole completions only);
- a provider that yields no pieces (the default ``_request_stream``) yields its text as one delta;
- a request retried after a transient failure (or an empty completion) that had already yielded
  text yields ``TextDelta("", restart=True)`` first: the text so far is void;
- the completion is stored in the cache once, whole, when it is accepted.

A consumer that stops early (``close()``, ``break``) ends the call: the request in flight is
counted as failed and nothing is cached.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any

from lmprog.errors import TransientLMError
from lmprog.lm._call import CallRun, PreparedCall
from lmprog.lm._types import Completion, StreamItem, TextDelta

__all__ = ["astream_call", "stream_call"]

Streamed = TextDelta | Completion


def stream_call(
    run: CallRun,
    send: Callable[[PreparedCall], Iterator[StreamItem]],
    acquire: Callable[[], object] | None,
    sleep: Callable[[float], Any],
) -> Generator[Streamed, None, None]:
    """The deltas then the completion of ``run``; ``send`` opens one provider stream."""
    hit = run.lookup()
    if hit is not None:
        yield TextDelta(hit.text)
        yield hit
        return
    while True:
        scopes = run.begin()
        shown = False
        try:
            if acquire is not None:
                acquire()
            raw: Completion | None = None
            for item in send(run.call):
                if isinstance(item, Completion):
                    raw = item
                elif item:
                    shown = True
                    yield TextDelta(item)
            raw = _whole(run, raw)
        except BaseException as error:
            wait: float | None = run.raised(scopes, error)
        else:
            wait = run.returned(scopes, raw)
        if wait is None:
            done = run.finish()
            if not shown and done.text:
                yield TextDelta(done.text)
            yield done
            return
        if shown:
            yield TextDelta("", restart=True)
        sleep(wait)


async def astream_call(
    run: CallRun,
    send: Callable[[PreparedCall], AsyncIterator[StreamItem]],
    acquire: Callable[[], Awaitable[object]] | None,
    sleep: Callable[[float], Any],
) -> AsyncGenerator[Streamed, None]:
    """The async twin of :func:`stream_call` (cache access in a worker thread; ``sleep`` may be
    sync or async)."""
    hit = await asyncio.to_thread(run.lookup)
    if hit is not None:
        yield TextDelta(hit.text)
        yield hit
        return
    while True:
        scopes = run.begin()
        shown = False
        try:
            if acquire is not None:
                await acquire()
            raw: Completion | None = None
            async for item in send(run.call):
                if isinstance(item, Completion):
                    raw = item
                elif item:
                    shown = True
                    yield TextDelta(item)
            raw = _whole(run, raw)
        except BaseException as error:
            wait: float | None = run.raised(scopes, error)
        else:
            wait = run.returned(scopes, raw)
        if wait is None:
            done = await asyncio.to_thread(run.finish)
            if not shown and done.text:
                yield TextDelta(done.text)
            yield done
            return
        if shown:
            yield TextDelta("", restart=True)
        pending = sleep(wait)
        if isinstance(pending, Awaitable):
            await pending


def _whole(run: CallRun, raw: Completion | None) -> Completion:
    """The stream's final completion; a stream that ended without one was cut off (transient)."""
    if raw is None:
        raise TransientLMError("the provider's stream ended before its completion", model=run.model)
    return raw
