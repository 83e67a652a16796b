"""The ``@lm_function`` decorator and ``LMFunction``, the callable it returns (sync or async), with
its per-function state.

Holds ``_decorator`` (the typed ``lm_function`` decorator), ``_function`` (``LMFunction``,
``AsyncLMFunction``, state overrides, one call's attempts) and ``_pickle`` (how an lm_function
travels to process workers). May import every layer below it: ``signature``, ``lm``, ``format``,
``trace``, ``promptfile`` and (on first use, for its libcst) ``source``.
"""

from __future__ import annotations

from lmprog.function._decorator import LMFunctionDecorator, lm_function
from lmprog.function._function import (
    FORMAT_RETRIES,
    MAX_RETRY_TOKENS,
    SHORT_OUTPUT_TOKENS,
    AsyncLMFunction,
    LMFunction,
    states_in_force,
    use_states,
)
from lmprog.promptfile import State

__all__ = [
    "FORMAT_RETRIES",
    "MAX_RETRY_TOKENS",
    "SHORT_OUTPUT_TOKENS",
    "AsyncLMFunction",
    "LMFunction",
    "LMFunctionDecorator",
    "State",
    "lm_function",
    "states_in_force",
    "use_states",
]
