"""The :class:`BaseLM` contract: cache, retries, rate limit and usage around one provider method.

A provider implements one method, ``_request(messages, params) -> Completion`` (and optionally
``_arequest``). Everything else wraps it, in this order, in :meth:`BaseLM.complete`:

1. merge parameters: settings (temperature, max_tokens) < the LM's defaults < the call's;
2. look the call up in the persistent cache (a hit never reaches the provider);
3. wait for the rate limiter, call ``_request``, retry :class:`TransientLMError` with backoff
   (an empty completion from any provider is one, unless it was cut at ``max_tokens``);
4. store the completion in the cache, unless it was cut at ``max_tokens`` (``finish_reason``
   ``"length"``: returned, not cached, lm_functions retry it with a larger budget; a request for
   ``logprobs`` is cached anyway: label scoring reads the alternatives of a one-token reply).

Steps 2 to 4 are one state machine (``_call.CallRun``) that the sync and async drivers share;
:meth:`BaseLM.stream` and :meth:`BaseLM.astream` drive the same machine over the provider's
``_request_stream`` (text pieces, then the whole completion; by default one piece from
``_request``), see ``_stream``. A provider with native reasoning says so in
:meth:`BaseLM.native_reasoning` and returns its thoughts in ``Completion.reasoning``.
Every provider request, failed ones and retries included, and every cache hit is counted once,
the same way, in ``lm.usage`` and in the usage scopes of :func:`lmprog.usage.track` (which may
refuse a request: budgets).

Secrets (any parameter named like ``api_key``, ``*token*`` except ``max_tokens``, ``*secret*``,
``extra_headers``...) are passed to ``_request`` but kept out of ``.params``, the cache, reprs and
logs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lmprog._fingerprint import to_jsonable
from lmprog.errors import UsageError
from lmprog.lm._cache import ResponseCache, cache_key, get_cache, without_secrets
from lmprog.lm._call import CallRun, PreparedCall, alternatives_param
from lmprog.lm._ratelimit import RateLimiter
from lmprog.lm._retry import RetryPolicy
from lmprog.lm._secrets import split_secrets
from lmprog.lm._stream import astream_call, stream_call
from lmprog.lm._types import Completion, ConstraintKind, Messages, StreamItem, TextDelta, check_messages
from lmprog.settings import current as current_settings
from lmprog.usage import Usage, UsageMeter

logger = logging.getLogger("lmprog.lm")

# Parameters that change how a request is sent, not what comes back: never part of the cache key.
_TRANSPORT_PARAMS = frozenset({"timeout", "request_timeout", "stream_timeout", "max_retries", "num_retries"})


_UNKNOWN = object()  # a constraint kind not asked for yet


class BaseLM(ABC):
    """The contract every LM client implements; thread-safe and usable from asyncio.

    A subclass implements one method, ``_request(messages, params) -> Completion`` (and
    optionally ``_arequest``); :meth:`complete` and :meth:`acomplete` wrap it with the cache,
    retries, rate limit and usage accounting.

    Args:
        model: the model name (non-empty).
        cache: ``True``/``False`` forces the persistent cache on/off for this LM; ``None``
            follows the ``cache`` setting.
        num_retries: retries of a transient failure (:class:`~lmprog.errors.TransientLMError`).
        backoff_base: the first retry waits up to this many seconds, doubling each time.
        backoff_max: the longest wait between retries (a provider's ``retry_after`` included).
        rpm: at most this many requests per minute (``None``: no limit).
        sleep: the function used to wait between retries and for the rate limiter (tests pass
            a recorder; in ``acomplete`` a sync callable is called as is, an async one awaited).
        **params: default request parameters (``temperature``, ``max_tokens``, ``api_key``...).

    Raises:
        UsageError: the model name is empty or ``cache`` is not a bool or None.

    :meth:`constraint_kind` says whether the provider takes a grammar or a JSON schema
    (constrained decoding, see :mod:`lmprog.format`); the constraint is a request parameter,
    hence part of the cache key.

    A parameter ``rollout`` (int) is never sent: it only makes the cache key distinct, so that
    repeated samples at a temperature above 0 are not all served from the cache. ``rollout``
    ``None`` or ``0`` is the same as no rollout. A parameter passed as ``None`` means "not set".

    A parameter ``alternatives_for`` (a sequence of texts) is never sent either: the completion's
    ``top_logprobs`` keep only the alternatives that continue the reply towards one of those
    texts (the text generated before the token, plus the alternative, begins one of them), in the
    completion returned and in its cache entry (label scoring reads only the tokens that spell
    its options out of a thousand alternatives a token). It is part of the cache key.
    """

    def __init__(
        self,
        model: str,
        *,
        cache: bool | None = None,
        num_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        rpm: float | None = None,
        sleep: Callable[[float], Any] | None = None,
        **params: Any,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise UsageError(f"an LM needs a non-empty model name, got {model!r}")
        if cache is not None and not isinstance(cache, bool):
            raise UsageError(f"cache must be True, False or None, got {cache!r}")
        self.model = model
        self.cache = cache
        self.retry_policy = RetryPolicy(num_retries, backoff_base, backoff_max)
        self._sleep = sleep
        self.rate_limiter = RateLimiter(rpm, sleep=sleep) if rpm is not None else None
        public, secret = split_secrets(params)
        self.params: dict[str, Any] = public
        self._secret_params = secret
        self._meter = UsageMeter()
        self._constraint: object = _UNKNOWN
        self._tools: bool | None = None  # native tool calling, once asked (LM)

    def __repr__(self) -> str:
        shown = "".join(f", {name}={value!r}" for name, value in sorted(self.params.items()))
        return f"{type(self).__name__}({self.model!r}{shown})"

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this LM's answers: its class, model and default request parameters
        (never secrets). Stored results (a study, a recorded score) are reused only under the same
        fingerprint; subclasses whose answers depend on more add it."""
        cls = type(self)
        return {
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "model": self.model,
            "params": {k: to_jsonable(v) for k, v in sorted(self.params.items())},
        }

    @property
    def usage(self) -> Usage:
        """Total usage since creation or ``reset_usage()``: every completion this LM returned and
        every provider request it sent, failed ones included (``requests``, ``failed_requests``)."""
        return self._meter.total

    def reset_usage(self) -> None:
        self._meter.reset()

    def complete(self, messages: Sequence[Mapping[str, str]], **params: Any) -> Completion:
        """The completion of ``messages``: from the cache, or from the provider (rate limited,
        transient failures retried).

        Args:
            messages: the chat messages, ``{"role": ..., "content": ...}`` dicts.
            **params: request parameters for this call; they override the LM's defaults, which
                override the settings' ``temperature`` and ``max_tokens``. ``None`` means unset.

        Returns:
            The completion, with this call's usage (failed attempts included) and latency.

        Raises:
            TransientLMError: the last transient failure, once the retries are spent.
            LMError: a failure that is not worth retrying (bad key, bad request...).
            BudgetExceededError: a usage budget (``lmprog.usage.track``) refused the request.
            UsageError: the messages or a parameter are malformed.
        """
        run = self._run(messages, params)
        hit = run.lookup()
        if hit is not None:
            return hit
        sleep = self._sleep or time.sleep
        while True:
            scopes = run.begin()
            try:
                if self.rate_limiter is not None:
                    self.rate_limiter.acquire()
                raw = self._send(run.call)
            except BaseException as error:
                wait: float | None = run.raised(scopes, error)
            else:
                wait = run.returned(scopes, raw)
            if wait is None:
                return run.finish()
            sleep(wait)

    async def acomplete(self, messages: Sequence[Mapping[str, str]], **params: Any) -> Completion:
        """The async twin of :meth:`complete` (cache access runs in a worker thread); ``sleep``
        may be sync or async."""
        run = self._run(messages, params)
        hit = await asyncio.to_thread(run.lookup)
        if hit is not None:
            return hit
        sleep: Callable[[float], Any] = self._sleep or asyncio.sleep
        while True:
            scopes = run.begin()
            try:
                if self.rate_limiter is not None:
                    await self.rate_limiter.aacquire()
                raw = await self._asend(run.call)
            except BaseException as error:
                wait: float | None = run.raised(scopes, error)
            else:
                wait = run.returned(scopes, raw)
            if wait is None:
                return await asyncio.to_thread(run.finish)
            pending = sleep(wait)
            if isinstance(pending, Awaitable):
                await pending

    def stream(
        self, messages: Sequence[Mapping[str, str]], **params: Any
    ) -> Generator[TextDelta | Completion, None, None]:
        """The completion of ``messages`` as it is written: :class:`TextDelta` pieces, then the
        whole :class:`Completion` (the same one :meth:`complete` returns: cache, retries, rate
        limit and usage as there).

        A cache hit, and a provider that cannot stream, give the whole text as one delta. A
        request retried after a transient failure that had already streamed text yields
        ``TextDelta("", restart=True)`` before the new attempt's text: discard the text so far.
        The completion is cached once, whole. Raises what :meth:`complete` raises.
        """
        acquire = self.rate_limiter.acquire if self.rate_limiter is not None else None
        return stream_call(self._run(messages, params), self._send_stream, acquire, self._sleep or time.sleep)

    def astream(
        self, messages: Sequence[Mapping[str, str]], **params: Any
    ) -> AsyncGenerator[TextDelta | Completion, None]:
        """The async twin of :meth:`stream`."""
        acquire = self.rate_limiter.aacquire if self.rate_limiter is not None else None
        sleep: Callable[[float], Any] = self._sleep or asyncio.sleep
        return astream_call(self._run(messages, params), self._asend_stream, acquire, sleep)

    def native_reasoning(self) -> bool:
        """Whether the model reasons natively (it takes ``reasoning_effort`` and returns its
        thoughts in ``Completion.reasoning``). lm_functions with ``reasoning=True`` then send
        ``reasoning_effort`` instead of asking for a ``reasoning`` field. Default: False."""
        return False

    @abstractmethod
    def _request(self, messages: Messages, params: dict[str, Any]) -> Completion:
        """Send one request to the provider; raise ``TransientLMError`` for retryable failures.

        Return the text, the model that answered and ``usage`` with ``prompt_tokens``,
        ``completion_tokens`` and ``cost``; the other fields are filled in by the caller.
        """

    async def _arequest(self, messages: Messages, params: dict[str, Any]) -> Completion:
        """Async request; by default ``_request`` in a worker thread."""
        return await asyncio.to_thread(self._request, messages, params)

    def _request_stream(self, messages: Messages, params: dict[str, Any]) -> Iterator[StreamItem]:
        """Stream one request: yield text pieces (``str``) as they come, then exactly one whole
        :class:`Completion` (as ``_request`` returns it; its text is the pieces joined). By
        default, no pieces: the completion of ``_request`` (one chunk)."""
        yield self._request(messages, params)

    async def _arequest_stream(self, messages: Messages, params: dict[str, Any]) -> AsyncIterator[StreamItem]:
        """Async stream: by default ``_request_stream`` read piece by piece in a worker thread when
        a subclass streams, else the completion of ``_arequest`` (one chunk)."""
        if type(self)._request_stream is BaseLM._request_stream:
            yield await self._arequest(messages, params)
            return
        pieces = self._request_stream(messages, params)
        while (item := await asyncio.to_thread(next, pieces, None)) is not None:
            yield item

    def constraint_kind(self) -> ConstraintKind | None:
        """Which constraint the provider honours: ``"grammar"`` (a GBNF string in the request
        parameter ``grammar``), ``"json_schema"`` (an OpenAI-style ``response_format``) or None
        (neither: replies are read in the text format). lm_functions ask before each call."""
        return None

    def takes_prompt(self) -> bool:
        """Whether the provider continues plain text: a request whose messages are the single
        ``{"role": "prompt", "content": ...}`` message (:data:`~lmprog.lm.PROMPT_ROLE`; the
        ``"completion"`` prompt layout). False unless a subclass says otherwise."""
        return False

    def returns_logprobs(self) -> bool:
        """Whether the provider returns token logprobs when a request asks for ``logprobs``
        (label scoring needs them). False unless a subclass says otherwise."""
        return False

    def supports_tools(self) -> bool:
        """Whether the provider takes native tool calling (a request parameter ``tools`` of
        OpenAI-style function schemas, answered with :attr:`Completion.tool_calls`). When it does
        not, an lm_function with tools uses a text protocol (see :mod:`lmprog.tools`)."""
        return False

    def _run(self, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]) -> CallRun:
        started = time.perf_counter()
        run = CallRun(
            self.model, self._prepare(messages, params), self._cache(), self.retry_policy, self._meter
        )
        run.started = started  # latency counts the preparation too
        return run

    def _prepare(self, messages: Sequence[Mapping[str, str]], call_params: Mapping[str, Any]) -> PreparedCall:
        msgs = check_messages(messages)
        current = current_settings()
        merged: dict[str, Any] = {
            "temperature": current.temperature,
            "max_tokens": current.max_tokens,
            "rollout": current.rollout,
        }
        for layer in (self.params, self._secret_params, call_params):
            merged.update((k, v) for k, v in layer.items() if v is not None)
        rollout = merged.pop("rollout", None)
        if rollout is not None and (isinstance(rollout, bool) or not isinstance(rollout, int)):
            raise UsageError(f"rollout must be an int, got {rollout!r}")
        alternatives = alternatives_param(merged.pop("alternatives_for", None))
        keyed = {k: v for k, v in merged.items() if k not in _TRANSPORT_PARAMS}
        if rollout:
            keyed["rollout"] = rollout
        if alternatives is not None:
            keyed["alternatives_for"] = list(alternatives)
        return PreparedCall(msgs, merged, cache_key(self.model, msgs, keyed), alternatives)

    def caches(self) -> bool:
        """Whether a completion of this LM is served from the persistent response cache when the
        same request was made before (its ``cache``, else the ``cache`` setting; never while
        :func:`intercept_requests` records or replays)."""
        if _request_hook is not None:  # record/replay sees every request: no cache in between
            return False
        return self.cache if self.cache is not None else current_settings().cache

    def _cache(self) -> ResponseCache | None:
        return get_cache(current_settings().cache_dir) if self.caches() else None

    def _send(self, call: PreparedCall) -> Completion:
        hook = _request_hook
        if hook is None:
            return self._request(call.messages, dict(call.send))
        request = InterceptedRequest(self, call.messages, without_secrets(call.send), call.key)
        return hook(request, lambda: self._request(call.messages, dict(call.send)))

    async def _asend(self, call: PreparedCall) -> Completion:
        if _request_hook is None:
            return await self._arequest(call.messages, dict(call.send))
        return await asyncio.to_thread(self._send, call)

    def _send_stream(self, call: PreparedCall) -> Iterator[StreamItem]:
        """A provider stream; under a request hook (record/replay) one whole completion."""
        if _request_hook is not None:
            yield self._send(call)
            return
        yield from self._request_stream(call.messages, dict(call.send))

    async def _asend_stream(self, call: PreparedCall) -> AsyncIterator[StreamItem]:
        if _request_hook is not None:
            yield await asyncio.to_thread(self._send, call)
            return
        async for item in self._arequest_stream(call.messages, dict(call.send)):
            yield item


# -- request interception (record/replay in tests: lmprog.testing.pytest_plugin) ---------------
@dataclass(frozen=True)
class InterceptedRequest:
    """A provider request as an interception hook sees it: ``params`` without secrets, ``key`` the
    cache key of (model, messages, params)."""

    lm: BaseLM
    messages: Messages
    params: dict[str, Any]
    key: str


RequestHook = Callable[[InterceptedRequest, Callable[[], Completion]], Completion]
_request_hook: RequestHook | None = None
_hook_lock = threading.Lock()


@contextmanager
def intercept_requests(hook: RequestHook) -> Iterator[None]:
    """Route every provider request of every LM, in every thread, through ``hook(request, send)``
    inside the block; ``send()`` makes the real request. The response cache is bypassed meanwhile;
    retries, usage accounting and budgets work as usual around the hook."""
    global _request_hook
    with _hook_lock:
        previous, _request_hook = _request_hook, hook
    try:
        yield
    finally:
        with _hook_lock:
            _request_hook = previous
