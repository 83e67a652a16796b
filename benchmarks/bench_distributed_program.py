"""The program of ``bench_distributed.py``, in a module of its own so that the cluster's worker
processes import it by name (lm_functions pickle by reference to their module)."""

from __future__ import annotations

from typing import Literal

from lmprog import lm_function


@lm_function
def parity(number: str) -> Literal["even", "odd"]:
    """Say whether the number is even or odd."""
