"""Where an lm_function's state comes from besides its own: context overrides and the record of
states set on functions.

- :func:`use_states` replaces some lm_functions' states for a block, in that context only
  (a ``contextvars`` variable: thread- and async-safe; optimizers evaluate candidate states in
  parallel this way). :func:`overridden` is what ``LMFunction.state`` reads first.
- :func:`mark_set` records a function whose state was set (weakly: it does not keep it alive),
  so that :func:`states_in_force` can hand process workers the states a copy of the program in
  another process would not see.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from lmprog.function._pickle import by_reference
from lmprog.promptfile import State

#: an lm_function (``LMFunction``; typed loosely here, as ``_function`` imports this module)
Fn = Any

_overrides: contextvars.ContextVar[Mapping[Fn, State] | None] = contextvars.ContextVar(
    "lmprog_state_overrides", default=None
)
_set_states: weakref.WeakSet[Fn] = weakref.WeakSet()  # lm_functions given a state
_set_states_lock = threading.Lock()


@contextmanager
def use_states(states: Mapping[Fn, State]) -> Iterator[None]:
    """Run the block with these lm_functions' states replaced, in this context only (thread-safe:
    optimizers evaluate candidate states in parallel this way)."""
    merged = {**(_overrides.get() or {}), **states}
    token = _overrides.set(merged)
    try:
        yield
    finally:
        _overrides.reset(token)


def overridden(fn: Fn) -> State | None:
    """The state :func:`use_states` gives ``fn`` in this context, or None."""
    override = _overrides.get()
    return None if override is None else override.get(fn)


def mark_set(fn: Fn) -> None:
    """Record that ``fn``'s own state was set (see :func:`states_in_force`)."""
    with _set_states_lock:
        _set_states.add(fn)


def states_in_force() -> dict[Fn, State]:
    """The states in force here that a copy of the program in another process would not see
    (process workers run under them): the state set on each lm_function that pickles by
    reference (one that pickles by value carries its own), and this context's ``use_states``
    overrides on top."""
    with _set_states_lock:
        given = list(_set_states)
    states = {fn: fn.state for fn in given if by_reference(fn)}
    states.update(_overrides.get() or {})
    return states
