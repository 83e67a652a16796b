"""The settings of a reflective run (:class:`ReflectConfig`), where its records are stored, and the
paired sign test its acceptance gate may use."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lmprog.errors import UsageError
from lmprog.optimize.search import DEFAULT_STORAGE_DIR

__all__ = ["ReflectConfig", "sign_test", "storage_path"]


@dataclass(frozen=True)
class ReflectConfig:
    """The settings of a reflective run.

    ``num_iterations`` caps the iterations (reflections and merges); ``minibatch_size`` training
    examples are run per iteration; ``gate`` and ``gate_alpha`` choose the acceptance rule (see
    the module docstring); ``select`` picks the function to edit (``"round_robin"`` or
    ``"blame"``); ``merge``/``max_merges`` enable merges; ``reflection_lm`` writes the
    edits (None: the task LM); ``init`` is ``"none"`` or ``"bootstrap"`` (start from bootstrapped
    demos, at most ``max_demos`` per function); ``storage`` is a JSON file holding the run's
    records (default ``.lmprog/reflect.json``; ``":memory:"`` keeps them for this run only) under
    ``study_name`` (default: a digest of everything the run depends on); ``listing_tokens`` caps
    the program listing; ``testset`` (rows or a file) is scored at the end to report the
    validation -> test gap.
    """

    num_iterations: int = 20
    minibatch_size: int = 3
    gate: Literal["improve", "paired"] = "improve"
    gate_alpha: float = 0.25
    select: Literal["round_robin", "blame"] = "round_robin"
    merge: bool = True
    max_merges: int = 5
    reflection_lm: Any = None
    init: Literal["none", "bootstrap"] = "none"
    max_demos: int = 3
    storage: str | Path | None = None
    study_name: str | None = None
    listing_tokens: int = 1200
    testset: Any = None

    def __post_init__(self) -> None:
        if self.num_iterations < 0 or self.minibatch_size < 1 or self.max_merges < 0:
            raise UsageError("reflect: num_iterations and max_merges must be >= 0, minibatch_size >= 1")
        if self.gate not in ("improve", "paired"):
            raise UsageError(f"reflect: gate must be 'improve' or 'paired', got {self.gate!r}")
        if not 0.0 < self.gate_alpha <= 1.0:
            raise UsageError(f"reflect: gate_alpha must be in (0, 1], got {self.gate_alpha}")
        if self.select not in ("round_robin", "blame"):
            raise UsageError(f"reflect: select must be 'round_robin' or 'blame', got {self.select!r}")
        if self.init not in ("none", "bootstrap"):
            raise UsageError(f"reflect: init must be 'none' or 'bootstrap', got {self.init!r}")


def storage_path(storage: str | Path | None) -> Path | None:
    """The JSON file of a run's records: ``.lmprog/reflect.json`` by default, None (in memory, no
    resume) for ``":memory:"``."""
    if storage is None:
        return DEFAULT_STORAGE_DIR / "reflect.json"
    return None if str(storage) == ":memory:" else Path(storage)


def sign_test(before: list[float], after: list[float]) -> float:
    """The one-sided sign test's p-value that ``after`` beats ``before`` (ties dropped)."""
    wins = sum(a > b for a, b in zip(after, before, strict=True))
    n = wins + sum(a < b for a, b in zip(after, before, strict=True))
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n)
