"""The budget ledger workers in other processes share: a request is reserved from it before it is
sent and settled after, so workers together can never send more requests than the caller's caps
allow.

:class:`Ledger` holds the usage of one evaluation against the caps of the caller's
``track(limit=...)`` scopes (e.g. an optimizer's ``Budget``). It lives where every worker can call
it one call at a time: in a dask actor or a ray actor (``_cluster``) or, for the process backends
of this machine (``"loky"``, ``"multiprocessing"``), in a multiprocessing manager's server process
(:func:`process_ledger`). :class:`LedgerHandle` calls it synchronously from a worker;
:class:`LedgerScope` is the usage scope a worker runs an example under.

Thread safety: every method of :class:`Ledger` takes its lock; the actors and the manager serve
calls one at a time anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.managers import BaseManager
from typing import Any

from lmprog.evaluate._workers import portable
from lmprog.usage import Usage, UsageScope, limits_in_force

Limit = Callable[[Usage], None]


class Ledger:
    """The usage of every worker of one evaluation against the caller's caps (thread-safe).

    ``limits`` pairs each cap with what its scope had used before the evaluation started.
    """

    def __init__(self, limits: list[tuple[Limit, Usage]]) -> None:
        self.limits = limits
        self._total = Usage()
        self._inflight = 0
        self._lock = threading.Lock()

    def reserve(self) -> BaseException | None:
        """Reserve one provider request; the error of the cap it would pass (nothing reserved)."""
        with self._lock:
            ahead = self._total + Usage(requests=self._inflight + 1)
            for limit, before in self.limits:
                try:
                    limit(before + ahead)
                except Exception as e:
                    return portable(e)
            self._inflight += 1
            return None

    def settle(self, usage: Usage, reserved: bool) -> None:
        """Account a finished request (``reserved``) or a cache hit."""
        with self._lock:
            self._inflight -= int(reserved)
            self._total = self._total + usage

    def total(self) -> Usage:
        with self._lock:
            return self._total


class LedgerScope(UsageScope):
    """A usage scope, inside a worker, that reserves and settles through a remote ledger."""

    def __init__(self, handle: LedgerHandle) -> None:
        super().__init__()
        self.handle = handle

    def acquire(self) -> None:
        error = self.handle.reserve()
        if error is not None:
            raise error
        with self._lock:
            self._inflight += 1

    def release(self, usage: Usage) -> None:
        self.handle.settle(usage, True)
        super().release(usage)

    def add(self, usage: Usage) -> None:
        self.handle.settle(usage, False)
        super().add(usage)


class LedgerHandle:
    """A ledger living in a dask or ray actor or a manager process, called synchronously from any
    worker (it pickles: the proxy or actor reference travels with each task)."""

    def __init__(self, kind: str, actor: Any) -> None:
        self.kind = kind
        self.actor = actor

    def reserve(self) -> BaseException | None:
        return self._call("reserve")  # type: ignore[no-any-return]

    def settle(self, usage: Usage, reserved: bool) -> None:
        self._call("settle", usage, reserved)

    def total(self) -> Usage:
        return self._call("total")  # type: ignore[no-any-return]

    def _call(self, method: str, *args: Any) -> Any:
        if self.kind == "ray":
            import ray

            return ray.get(getattr(self.actor, method).remote(*args))
        if self.kind == "manager":
            return getattr(self.actor, method)(*args)
        return getattr(self.actor, method)(*args).result()


class _LedgerManager(BaseManager):
    """A server process holding ledgers for workers of this machine."""


_LedgerManager.register("Ledger", Ledger)


@contextmanager
def process_ledger() -> Iterator[LedgerHandle | None]:
    """A ledger for worker processes of this machine, in a manager process started for the block
    (None, and no process, when the caller has no cap)."""
    limits = limits_in_force()
    if not limits:
        yield None
        return
    with _LedgerManager() as manager:
        yield LedgerHandle("manager", manager.Ledger(limits))  # type: ignore[attr-defined]
