"""The ``@lm_function`` decorator and ``LMFunction``, the callable it returns (sync or async), with
its per-function state.

Holds ``_function`` (the decorator, ``LMFunction``, state overrides), ``_run`` (one call's
attempts: messages out, completions in, the retry policy) and ``_pickle`` (how an lm_function
travels to process workers). May import every layer below it: ``signature``, ``lm``, ``format``,
``trace``, ``promptfile`` and (on first use, for its libcst) ``source``.
"""

from __future__ import annotations

from lmprog.function._function import (
    FORMAT_RETRIES,
    SHORT_OUTPUT_TOKENS,
    LMFunction,
    State,
    lm_function,
    states_in_force,
    use_states,
)

__all__ = [
    "FORMAT_RETRIES",
    "SHORT_OUTPUT_TOKENS",
    "LMFunction",
    "State",
    "lm_function",
    "states_in_force",
    "use_states",
]
