"""Token, cost and call accounting, per call and accumulated (thread-safe)."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Usage:
    """Usage of one call or a sum of calls (``a + b``, ``a - b``).

    Every count means the same wherever a ``Usage`` appears: ``LM.usage``, ``track()`` scopes and
    budgets, spans, evaluation and optimization results.

    Attributes:
        calls: completions returned (cache hits included).
        requests: every request sent to the provider, failed ones included (a timeout, a 429,
            an empty completion...).
        cache_hits: completions that came from the cache.
        prompt_tokens: tokens sent (as the provider counted them; a cache hit counts its
            original ones).
        completion_tokens: tokens received.
        cost: in US dollars, as litellm prices the model (0 for a cache hit or an unknown price).
        failed_requests: the requests that failed.
    """

    calls: int = 0
    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    failed_requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def describe_requests(self) -> str:
        """``"12 requests"``, or ``"12 requests, 3 failed"`` when some failed."""
        failed = f", {self.failed_requests} failed" if self.failed_requests else ""
        return f"{self.requests} requests{failed}"

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            requests=self.requests + other.requests,
            cache_hits=self.cache_hits + other.cache_hits,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost=self.cost + other.cost,
            failed_requests=self.failed_requests + other.failed_requests,
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls - other.calls,
            requests=self.requests - other.requests,
            cache_hits=self.cache_hits - other.cache_hits,
            prompt_tokens=self.prompt_tokens - other.prompt_tokens,
            completion_tokens=self.completion_tokens - other.completion_tokens,
            cost=self.cost - other.cost,
            failed_requests=self.failed_requests - other.failed_requests,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class UsageMeter:
    """A running total that many threads add to."""

    _total: Usage = field(default_factory=Usage)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, usage: Usage) -> None:
        with self._lock:
            self._total = self._total + usage

    @property
    def total(self) -> Usage:
        with self._lock:
            return self._total

    def reset(self) -> None:
        with self._lock:
            self._total = Usage()

    def __getstate__(self) -> dict[str, Any]:
        return {"_total": self.total}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._total = state["_total"]
        self._lock = threading.Lock()


class UsageScope:
    """Usage of every LM call made inside a ``with track():`` block, in any LM, in this context and
    in the worker threads lmprog starts from it.

    ``limit`` (optional) is called with the usage so far, plus the requests already in flight, before
    each provider request; it raises (e.g. ``BudgetExceededError``) to stop the request. Reserving
    in-flight requests under a lock means parallel callers can never overshoot a call cap.
    """

    def __init__(self, limit: Callable[[Usage], None] | None = None) -> None:
        self.limit = limit
        self._total = Usage()
        self._inflight = 0
        self._lock = threading.Lock()

    @property
    def total(self) -> Usage:
        with self._lock:
            return self._total

    def acquire(self) -> None:
        with self._lock:
            if self.limit is not None:
                self.limit(self._total + Usage(requests=self._inflight + 1))
            self._inflight += 1

    def release(self, usage: Usage) -> None:
        with self._lock:
            self._inflight -= 1
            self._total = self._total + usage

    def add(self, usage: Usage) -> None:
        with self._lock:
            self._total = self._total + usage


_scopes: contextvars.ContextVar[tuple[UsageScope, ...]] = contextvars.ContextVar("lmprog_usage", default=())


@contextmanager
def track(limit: Callable[[Usage], None] | None = None) -> Iterator[UsageScope]:
    """Account (and optionally cap) every LM call inside the block, in any LM.

    Args:
        limit: called with the usage so far (plus the requests in flight) before each provider
            request; it raises (e.g. ``BudgetExceededError``) to refuse the request.

    Yields:
        The :class:`UsageScope`; ``.total`` is the :class:`Usage` of the calls made so far.

    Example:
        >>> from lmprog.testing import ScriptedLM
        >>> from lmprog.usage import track
        >>> lm = ScriptedLM(["blue"])
        >>> with track() as scope:
        ...     lm.complete([{"role": "user", "content": "Name a colour."}]).text
        'blue'
        >>> scope.total.calls, scope.total.requests
        (1, 1)
    """
    scope = UsageScope(limit)
    token = _scopes.set((*_scopes.get(), scope))
    try:
        yield scope
    finally:
        _scopes.reset(token)


@contextmanager
def joined(scope: UsageScope) -> Iterator[UsageScope]:
    """Make an existing scope (a subclass that accounts elsewhere, e.g. in a ledger shared by the
    workers of a cluster) count every LM call inside the block, like ``track()`` does."""
    token = _scopes.set((*_scopes.get(), scope))
    try:
        yield scope
    finally:
        _scopes.reset(token)


def limits_in_force() -> list[tuple[Callable[[Usage], None], Usage]]:
    """The caps of the ``track(limit=...)`` scopes active here, each with what its scope used so far
    (requests in flight included): what workers elsewhere must check their requests against."""
    out = []
    for s in _scopes.get():
        if s.limit is not None:
            with s._lock:
                out.append((s.limit, s._total + Usage(requests=s._inflight)))
    return out


def acquire_request() -> tuple[UsageScope, ...]:
    """Called by LMs before each provider request; returns the scopes to release afterwards."""
    scopes = _scopes.get()
    taken: list[UsageScope] = []
    try:
        for s in scopes:
            s.acquire()
            taken.append(s)
    except BaseException:
        for s in taken:
            s.release(Usage())
        raise
    return scopes


def release_request(scopes: tuple[UsageScope, ...], usage: Usage) -> None:
    """Called by LMs after each provider request (failed ones too, with what it cost)."""
    for s in scopes:
        s.release(usage)


def record(usage: Usage) -> None:
    """Called by LMs for a completion that reached no provider (a cache hit)."""
    for s in _scopes.get():
        s.add(usage)
