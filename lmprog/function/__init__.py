"""TODO"""

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
