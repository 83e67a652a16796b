"""Streaming through litellm: ``litellm.completion(stream=True)`` for hosted models, llama.cpp's
streaming callback for the embedded model (``_local.chat_stream``, litellm is not involved).

Each yields the text pieces as they come, then exactly one whole :class:`Completion` (the
provider contract of ``BaseLM._request_stream``): for litellm, the chunks rebuilt by
``litellm.stream_chunk_builder`` and mapped like a plain response (usage, cost, finish reason,
reasoning). Errors are translated as in ``_litellm``; streamed completions carry no logprobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from lmprog.lm import _local as local
from lmprog.lm._litellm import (
    _cause,
    _request_kwargs,
    _secret_values,
    _to_completion,
    load_litellm,
    translate_error,
)
from lmprog.lm._types import Completion, Messages
from lmprog.usage import Usage

__all__ = ["astream", "stream"]


def stream(model: str, messages: Messages, params: Mapping[str, Any]) -> Iterator[str | Completion]:
    """One streamed request: text pieces, then the whole :class:`Completion` (raises ``LMError``).
    The embedded model streams through llama.cpp's callback (``_local.chat_stream``); others
    through ``litellm.completion(stream=True)``, the chunks rebuilt by ``stream_chunk_builder``."""
    if local.is_local_model(model):
        yield from _local_stream(model, messages, params)
        return
    litellm = load_litellm()
    kwargs = _stream_kwargs(litellm, model, messages, params)
    chunks: list[Any] = []
    try:
        for chunk in litellm.completion(**kwargs):
            chunks.append(chunk)
            piece = _delta_text(chunk)
            if piece:
                yield piece
        response = litellm.stream_chunk_builder(chunks, messages=messages)
    except Exception as e:
        secrets = _secret_values(params)
        raise translate_error(e, model=model, secrets=secrets) from _cause(e, secrets)
    yield _to_completion(litellm, model, response)


async def astream(
    model: str, messages: Messages, params: Mapping[str, Any]
) -> AsyncIterator[str | Completion]:
    """The async twin of :func:`stream` (``litellm.acompletion(stream=True)``; the embedded model
    in a worker thread)."""
    if local.is_local_model(model):
        pieces = _local_stream(model, messages, params)
        while (item := await asyncio.to_thread(next, pieces, None)) is not None:
            yield item
        return
    litellm = await asyncio.to_thread(load_litellm)
    kwargs = _stream_kwargs(litellm, model, messages, params)
    chunks: list[Any] = []
    try:
        async for chunk in await litellm.acompletion(**kwargs):
            chunks.append(chunk)
            piece = _delta_text(chunk)
            if piece:
                yield piece
        response = litellm.stream_chunk_builder(chunks, messages=messages)
    except Exception as e:
        secrets = _secret_values(params)
        raise translate_error(e, model=model, secrets=secrets) from _cause(e, secrets)
    yield _to_completion(litellm, model, response)


def _local_stream(model: str, messages: Messages, params: Mapping[str, Any]) -> Iterator[str | Completion]:
    for item in local.chat_stream(model, messages, params):
        if isinstance(item, str):
            yield item
            continue
        yield Completion(
            text=item.text,
            usage=Usage(prompt_tokens=item.prompt_tokens, completion_tokens=item.completion_tokens),
            model=model,
            finish_reason=item.finish_reason,
        )


def _stream_kwargs(litellm: Any, model: str, messages: Messages, params: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = _request_kwargs(litellm, model, messages, params)
    kwargs["stream"] = True
    kwargs.setdefault("stream_options", {"include_usage": True})
    return kwargs


def _delta_text(chunk: Any) -> str:
    choices = getattr(chunk, "choices", None) or []
    delta = getattr(choices[0], "delta", None) if choices else None
    text = getattr(delta, "content", None)
    return text if isinstance(text, str) else ""
