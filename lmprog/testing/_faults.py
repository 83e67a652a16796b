"""FaultyLM: an LM wrapper that injects provider failures at configurable rates, for reliability tests.

The failures are the ones real providers produce, raised through the same translation the litellm
client uses (:func:`lmprog.lm.translate_error`), so they reach the retry logic exactly as a
real failure would: a timeout, a 429 with a ``Retry-After`` header, a 500, a dropped connection.
It can also return an empty or a truncated completion, as a provider does when it answers badly.

Which request fails is decided by the request itself: the ``n``-th time a given request (model,
messages and non-secret parameters) reaches the wrapper, a generator seeded with ``(seed, request,
n)`` picks the outcome. The same program on the same data therefore meets the same faults however
its threads are scheduled, and a run is reproducible from its seed.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from lmprog.errors import UsageError
from lmprog.lm import BaseLM, Completion, Messages, cache_key, translate_error, without_secrets

#: The fault kinds, in the order their rates are laid out on [0, 1).
RAISED = ("timeout", "rate_limit", "server_error", "connection_reset")
RETURNED = ("empty", "truncated")
KINDS = (*RAISED, *RETURNED)


@dataclass(frozen=True)
class FaultEvent:
    """One request the wrapper saw: ``kind`` is a fault kind or ``"ok"``; ``key`` identifies the
    request (its cache key), ``attempt`` counts how many times that request was seen (1-based) and
    ``thread`` is the id of the thread that made it."""

    kind: str
    key: str
    attempt: int
    thread: int


class ProviderHTTPError(Exception):
    """What an HTTP client raises for an error status (carries the status and the headers)."""

    def __init__(self, message: str, status_code: int, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = dict(headers or {})


class FaultyLM(BaseLM):
    """Wrap ``inner`` and make some of its requests fail.

    Each rate is the probability that a request meets that fault (their sum is at most 1):
    ``timeout``, ``rate_limit`` (a 429 whose ``Retry-After`` header says ``retry_after`` seconds;
    ``None`` sends no header), ``server_error`` (a 500), ``connection_reset`` raise before ``inner``
    is asked; ``empty`` and ``truncated`` ask ``inner`` and return an empty completion or the first
    half of its text with ``finish_reason="length"``, as a provider cuts a reply at ``max_tokens``
    (the request and its prompt tokens are spent, as with a real provider).
    Everything else is ``inner``'s answer.

    The wrapper is itself the LM that caches, retries and counts usage (``inner`` is only asked for
    raw completions, with its own default parameters), so give it the retry policy to exercise:
    ``num_retries``, ``backoff_base``, ``backoff_max`` and ``sleep`` (pass a recorder so tests do
    not wait). ``cache`` defaults to ``inner.cache``. Thread-safe.

    What was injected is recorded: :attr:`counts` (by kind, ``"ok"`` included) and :attr:`events`
    (every request in arrival order).
    """

    def __init__(
        self,
        inner: BaseLM,
        *,
        timeout: float = 0.0,
        rate_limit: float = 0.0,
        server_error: float = 0.0,
        connection_reset: float = 0.0,
        empty: float = 0.0,
        truncated: float = 0.0,
        seed: int = 0,
        retry_after: float | None = 1.0,
        cache: bool | None = None,
        num_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        **kwargs: Any,
    ) -> None:
        if not isinstance(inner, BaseLM):
            raise UsageError(f"FaultyLM wraps an LM object (a BaseLM), got {inner!r}")
        rates = {
            "timeout": timeout,
            "rate_limit": rate_limit,
            "server_error": server_error,
            "connection_reset": connection_reset,
            "empty": empty,
            "truncated": truncated,
        }
        bad = {k: v for k, v in rates.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise UsageError(f"fault rates are probabilities in [0, 1], got {bad}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise UsageError(f"fault rates add up to more than 1: {rates}")
        super().__init__(
            inner.model,
            cache=inner.cache if cache is None else cache,
            num_retries=num_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            # inner's defaults, credentials included, so that inner receives what it would send
            **{**inner.params, **inner._secret_params, **kwargs},
        )
        self.inner = inner
        self.rates = rates
        self.seed = seed
        self.retry_after = retry_after
        self._seen: Counter[str] = Counter()
        self._events: list[FaultEvent] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        active = ", ".join(f"{k}={v}" for k, v in self.rates.items() if v)
        return f"FaultyLM({self.inner!r}, {active or 'no faults'}, seed={self.seed})"

    @property
    def counts(self) -> Counter[str]:
        """How many requests met each outcome (fault kinds and ``"ok"``)."""
        with self._lock:
            return Counter(e.kind for e in self._events)

    @property
    def events(self) -> list[FaultEvent]:
        """Every request seen, in arrival order (a copy)."""
        with self._lock:
            return list(self._events)

    @property
    def raised(self) -> int:
        """How many requests the wrapper failed with an exception (each one is a provider request
        spent); an ``empty`` completion fails too, in the LM (see ``usage.failed_requests``)."""
        counts = self.counts
        return sum(counts[k] for k in RAISED)

    def _request(self, messages: Messages, params: dict[str, Any]) -> Completion:
        kind = self._draw(messages, params)
        if kind in RAISED:
            raise _fault(kind, self.model, self.retry_after)
        return self._alter(kind, self.inner._request(messages, params))

    async def _arequest(self, messages: Messages, params: dict[str, Any]) -> Completion:
        kind = self._draw(messages, params)
        if kind in RAISED:
            raise _fault(kind, self.model, self.retry_after)
        return self._alter(kind, await self.inner._arequest(messages, params))

    def _draw(self, messages: Messages, params: Mapping[str, Any]) -> str:
        key = cache_key(self.model, messages, without_secrets(params))
        with self._lock:
            self._seen[key] += 1
            attempt = self._seen[key]
            seed = hashlib.sha256(f"{self.seed}:{key}:{attempt}".encode()).digest()
            point = random.Random(seed).random()
            kind = "ok"
            edge = 0.0
            for name in KINDS:
                edge += self.rates[name]
                if point < edge:
                    kind = name
                    break
            self._events.append(FaultEvent(kind, key, attempt, threading.get_ident()))
        return kind

    @staticmethod
    def _alter(kind: str, completion: Completion) -> Completion:
        if kind == "empty":
            return replace(completion, text="", usage=replace(completion.usage, completion_tokens=0))
        if kind == "truncated":
            text = completion.text[: len(completion.text) // 2]
            share = len(text) / len(completion.text) if completion.text else 0.0
            tokens = round(completion.usage.completion_tokens * share)
            usage = replace(completion.usage, completion_tokens=tokens)
            return replace(completion, text=text, usage=usage, finish_reason="length")
        return completion


def _fault(kind: str, model: str, retry_after: float | None) -> Exception:
    """The lmprog error the litellm client raises for this failure."""
    error: BaseException
    if kind == "timeout":
        error = TimeoutError("Request timed out")
    elif kind == "rate_limit":
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        error = ProviderHTTPError("Rate limit reached, please slow down", 429, headers)
    elif kind == "server_error":
        error = ProviderHTTPError("The server had an error while processing your request", 500)
    else:
        error = ConnectionResetError(104, "Connection reset by peer")
    return translate_error(error, model=model)
