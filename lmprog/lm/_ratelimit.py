"""A requests-per-minute limiter shared by the threads and asyncio tasks of one LM.

Requests are spaced evenly: with ``rpm=60`` one request may start each second. Each caller
reserves the next free slot under a lock and then waits (outside the lock) until its slot, so
threads and event loops never block one another while waiting.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lmprog.errors import UsageError


class RateLimiter:
    """Space request starts at least ``60 / rpm`` seconds apart."""

    def __init__(
        self,
        rpm: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        if isinstance(rpm, bool) or not isinstance(rpm, int | float) or not rpm > 0:
            raise UsageError(f"rpm must be a number > 0, got {rpm!r}")
        self.rpm = float(rpm)
        self.interval = 60.0 / self.rpm
        self._clock = clock
        self._sleep = sleep
        self._next_free: float | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RateLimiter(rpm={self.rpm:g})"

    def __getstate__(self) -> dict[str, Any]:
        """A copy (in another process) spaces its own requests: it starts with no slot taken."""
        state = dict(self.__dict__)
        del state["_lock"]
        state["_next_free"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Claim the next slot; return how many seconds to wait before using it."""
        with self._lock:
            now = self._clock()
            start = now if self._next_free is None else max(now, self._next_free)
            self._next_free = start + self.interval
            return start - now

    def acquire(self) -> float:
        """Block until this caller may start a request; return the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            (self._sleep or time.sleep)(wait)
        return wait

    async def aacquire(self) -> float:
        """The async twin of :meth:`acquire`."""
        wait = self.reserve()
        if wait > 0:
            if self._sleep is None:
                await asyncio.sleep(wait)
            else:
                pending = self._sleep(wait)
                if isinstance(pending, Awaitable):
                    await pending
        return wait
