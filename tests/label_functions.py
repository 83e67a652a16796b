"""Test helper shared by the label-scoring tests: an lm_function made of a plain function, in a
given state."""

from __future__ import annotations

from lmprog import lm_function
from lmprog.function import LMFunction, State


def make(fn: object, **state: object) -> LMFunction:
    """``fn`` decorated with ``@lm_function``, its state ``State(**state)``."""
    func = lm_function(fn)  # type: ignore[call-overload]
    func.state = State(**state)  # type: ignore[arg-type]
    return func
