"""One LM call as a state machine, shared by :meth:`BaseLM.complete` and :meth:`BaseLM.acomplete`.

A :class:`CallRun` holds what one call knows: its prepared request, the cache, the attempts so
far and what the failed ones spent. The two drivers only wait, rate-limit and send (sync or
async); every decision is made here, once:

1. :meth:`CallRun.lookup`: a cache hit ends the call at once (counted as a call, no request);
2. :meth:`CallRun.begin` before each attempt: the usage scopes (budgets) may refuse it;
3. :meth:`CallRun.raised` or :meth:`CallRun.returned` after it: account the request, then either
   accept the completion (None), or return the pause before the next attempt (a
   :class:`~lmprog.errors.TransientLMError`, an empty completion included, with retries left),
   or raise (any other error, or the last transient one);
4. :meth:`CallRun.finish`: the completion with the call's whole usage (and its native tool calls,
   if any), its top logprob alternatives cut to the ones the caller reads
   (``PreparedCall.alternatives_for``, see :func:`keep_alternatives`), stored in the cache unless
   it was cut at ``max_tokens`` (a request for logprobs is stored anyway: label scoring reads the
   alternatives of a one-token reply).

Every provider request, failed ones included, is counted once in ``lm.usage`` and in the usage
scopes of :func:`lmprog.usage.track`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lmprog.errors import TransientLMError, UsageError
from lmprog.lm._cache import ResponseCache
from lmprog.lm._retry import RetryPolicy, next_wait
from lmprog.lm._types import Completion, Messages, ToolCall
from lmprog.usage import Usage, UsageMeter, UsageScope, acquire_request, release_request
from lmprog.usage import record as record_usage

__all__ = ["CallRun", "PreparedCall", "alternatives_param", "keep_alternatives"]

logger = logging.getLogger("lmprog.lm")

# What a provider request that raised adds to the usage (budgets count retries).
_FAILED_REQUEST = Usage(requests=1, failed_requests=1)

Scopes = tuple[UsageScope, ...]


@dataclass(frozen=True)
class PreparedCall:
    """A request ready to send: ``send`` is what the provider receives (secrets included, rollout
    and ``alternatives_for`` excluded), ``key`` its cache key; ``alternatives_for``: keep only the
    top logprob alternatives that continue the reply towards one of these texts (None: keep them
    all; see :func:`keep_alternatives`)."""

    messages: Messages
    send: dict[str, Any]
    key: str
    alternatives_for: tuple[str, ...] | None = None


def alternatives_param(value: Any) -> tuple[str, ...] | None:
    """The ``alternatives_for`` request parameter as a tuple of texts (None when not set)."""
    if value is None:
        return None
    if (
        isinstance(value, str | bytes)
        or not isinstance(value, Sequence)
        or not all(isinstance(t, str) for t in value)
    ):
        raise UsageError(f"alternatives_for must be a sequence of texts, got {value!r}")
    return tuple(value)


def keep_alternatives(
    logprobs: list[dict[str, Any]] | None, texts: tuple[str, ...] | None
) -> list[dict[str, Any]] | None:
    """``logprobs`` with each token's ``top_logprobs`` cut to the alternatives that continue the
    reply towards one of ``texts``: at a position where the tokens generated before spell ``P``,
    an alternative ``t`` is kept when ``P + t`` (``t`` non-empty) begins one of the texts (at the
    first position: ``t`` begins one). The generated tokens themselves are kept. A reply to a
    label-scoring request carries up to a thousand alternatives per token, of which the scorer
    reads only those that spell an option further: cut, a one-token reply's cache entry is a few
    hundred bytes instead of ~45 KB."""
    if logprobs is None or texts is None:
        return logprobs
    prefixes = {text[:end] for text in texts for end in range(1, len(text) + 1)}
    out = []
    before = ""
    for position in logprobs:
        top = position.get("top_logprobs")
        if isinstance(top, list):
            kept = [t for t in top if _continues_one(t, before, prefixes)]
            position = {**position, "top_logprobs": kept}
        out.append(position)
        token = position.get("token")
        before += token if isinstance(token, str) else ""
    return out


def _continues_one(alternative: Any, before: str, prefixes: set[str]) -> bool:
    token = alternative.get("token") if isinstance(alternative, dict) else None
    return isinstance(token, str) and bool(token) and before + token in prefixes


class CallRun:
    """The state of one call to an LM (see the module docstring for the order of the steps)."""

    def __init__(
        self,
        model: str,
        call: PreparedCall,
        cache: ResponseCache | None,
        policy: RetryPolicy,
        meter: UsageMeter,
        *,
        started: float | None = None,
    ) -> None:
        self.model = model
        self.call = call
        self.cache = cache
        self.policy = policy
        self.meter = meter
        self.started = time.perf_counter() if started is None else started
        self.attempts = 0
        self.failed: list[Usage] = []  # what the failed attempts of this call spent
        self._raw: Completion | None = None

    def lookup(self) -> Completion | None:
        """The cached completion of this call, accounted as a cache hit; None on a miss."""
        if self.cache is None:
            return None
        entry = self.cache.get(self.call.key)
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
            latency=time.perf_counter() - self.started,
            attempts=0,
            finish_reason=entry.get("finish_reason"),
            logprobs=entry.get("logprobs"),
            reasoning=entry.get("reasoning") if isinstance(entry.get("reasoning"), str) else None,
            tool_calls=_tool_calls_of(entry.get("tool_calls")),
        )
        self.meter.add(usage)
        record_usage(usage)
        logger.debug("%s: cache hit (%d tokens)", self.model, usage.total_tokens)
        return completion

    def begin(self) -> Scopes:
        """Start an attempt: reserve it in the usage scopes (a budget may refuse it by raising)."""
        scopes = acquire_request()
        self.attempts += 1
        return scopes

    def raised(self, scopes: Scopes, error: BaseException) -> float:
        """The attempt's request raised ``error``: account it, then return the pause before the
        next attempt, or raise ``error`` when it is not to be retried."""
        self._spend(scopes, _FAILED_REQUEST)
        return self._retry(error)

    def returned(self, scopes: Scopes, raw: Any) -> float | None:
        """The attempt's request returned ``raw``: account it; None when it is the answer, else
        the pause before the next attempt (an empty completion is a transient failure, unless it
        was cut at ``max_tokens``: an lm_function retries that with a larger budget)."""
        try:
            used = _request_usage(raw)
        except BaseException:
            self._spend(scopes, _FAILED_REQUEST)
            raise
        if not raw.text.strip() and not raw.tool_calls and raw.finish_reason != "length":
            self._spend(scopes, dataclasses.replace(used, calls=0, failed_requests=1))
            return self._retry(TransientLMError("the model returned an empty completion", model=self.model))
        release_request(scopes, used)
        self._raw = raw
        return None

    def finish(self) -> Completion:
        """The answer with the usage of every attempt; stored in the cache when complete."""
        raw = self._raw
        if raw is None:
            raise RuntimeError("CallRun.finish() before a completion was returned")
        used = _request_usage(raw)
        usage = used
        for spent in self.failed:
            usage = usage + spent
        completion = Completion(
            text=raw.text,
            usage=usage,
            cache_hit=False,
            model=raw.model or self.model,
            latency=time.perf_counter() - self.started,
            attempts=self.attempts,
            finish_reason=raw.finish_reason,
            logprobs=keep_alternatives(raw.logprobs, self.call.alternatives_for),
            reasoning=raw.reasoning,
            tool_calls=raw.tool_calls,
        )
        answered = bool(completion.text.strip() or completion.tool_calls)
        # a reply cut at max_tokens is no answer, except to a request for logprobs: label
        # scoring asks for one token and reads its alternatives, which are complete
        whole = completion.finish_reason != "length" or bool(self.call.send.get("logprobs"))
        if self.cache is not None and answered and whole:
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
            if completion.reasoning is not None:
                entry["reasoning"] = completion.reasoning
            if completion.tool_calls:
                entry["tool_calls"] = [call.to_dict() for call in completion.tool_calls]
            self.cache.set(self.call.key, entry)
        self.meter.add(used)  # the failed requests were added as they failed
        logger.debug(
            "%s: %d attempt(s), %.3fs, %d tokens, cost %.6f",
            self.model,
            self.attempts,
            completion.latency,
            usage.total_tokens,
            usage.cost,
        )
        return completion

    def _spend(self, scopes: Scopes, usage: Usage) -> None:
        """Account a failed request: in the usage scopes, in ``lm.usage`` and in the call's own."""
        release_request(scopes, usage)
        self.meter.add(usage)
        self.failed.append(usage)

    def _retry(self, error: BaseException) -> float:
        """The pause before the next attempt after ``error``; raises it when it is not transient
        or the retries are spent."""
        if not isinstance(error, TransientLMError):
            raise error
        wait = next_wait(self.policy, self.attempts, error, self.model)
        if wait is None:
            raise error
        return wait


def _request_usage(raw: Completion) -> Usage:
    """The usage of one successful provider request, whatever the provider filled in."""
    if not isinstance(raw, Completion):
        raise TypeError(f"_request must return a Completion, got {raw!r}")
    return dataclasses.replace(raw.usage, calls=1, requests=1, cache_hits=0)


def _tool_calls_of(entry: Any) -> tuple[ToolCall, ...]:
    """The tool calls of a cache entry (none when it holds none, or anything else)."""
    if not isinstance(entry, list):
        return ()
    return tuple(
        ToolCall(str(c.get("name", "")), str(c.get("arguments", "{}")), str(c.get("id", "")))
        for c in entry
        if isinstance(c, dict)
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
