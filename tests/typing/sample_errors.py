# mypy: disable-error-code="empty-body"
"""Calls mypy must refuse (checked in ``tests/test_typing.py``): each line marked ``# E:`` is an error."""

from __future__ import annotations

from typing import Literal

from lmprog import lm_function


@lm_function
def classify(ticket: str) -> Literal["billing", "bug"]:
    """Classify a support ticket."""


@lm_function(temperature=0.0)
def count(text: str) -> int:
    """Count the words."""


label: int = classify("x")  # E: Incompatible types in assignment
classify(3)  # E: Argument 1 to "__call__" of "LMFunction" has incompatible type "int"
count("x", "y")  # E: Too many arguments for "__call__" of "LMFunction"
words: str = count(text="x")  # E: Incompatible types in assignment
