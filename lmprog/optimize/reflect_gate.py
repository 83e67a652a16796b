"""The acceptance gate of a reflective run: how many training examples an edit is tried on, and
what it must show there to be validated; and how ``gate="auto"`` chooses it as the run goes.

A gate is a minibatch size and a test: ``"improve"`` (the child's total on the minibatch beats
the parent's) or ``"paired"`` (that, and a one-sided sign test over the examples at
``gate_alpha``). ``gate="improve"`` and ``gate="paired"`` keep ``minibatch_size`` and that test.

``gate="auto"`` (the default) starts with the cheap gate (``minibatch_size``, improve) and counts
its false accepts: accepted edits that then did not beat their parent on the whole validation set.
After each accepted edit, when more than ``max_false_accept_rate`` of the edits the current gate
accepted were false accepts, the gate goes up one level. Level ``k`` uses the paired test on
``minibatch_size * 2**k`` examples, capped by ``max_minibatch_size`` (default four times
``minibatch_size``), by the training set and by the budget: with ``Budget(max_calls=N)`` a size
is used only when an iteration at that size (a reflection, two minibatch runs and a validation)
costs at most half of the calls left of ``N`` after the calls the stored records account for (the
starting demos, the seed's validation, and every stored iteration at its own size); else the
largest size that does (never below ``minibatch_size``). The level never goes down, and the count
starts over at each level, so a gate that proves itself stays.

The gate of an iteration is computed from the settings, the budget and the stored iterations
alone, so a run resumed after a kill (with the same budget) chooses the gates it chose before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from lmprog.optimize.reflect_store import IterationRecord

__all__ = ["Gate", "GateSettings", "Plan", "choose_gate", "gate_verdict", "sign_test"]


class GateSettings(Protocol):
    """The settings the gate is chosen from (a :class:`~lmprog.optimize.reflect.ReflectConfig`)."""

    @property
    def gate(self) -> str: ...
    @property
    def minibatch_size(self) -> int: ...
    @property
    def max_minibatch_size(self) -> int | None: ...
    @property
    def max_false_accept_rate(self) -> float: ...


@dataclass(frozen=True)
class Gate:
    """The gate of one iteration: ``size`` training examples, the ``test`` they must pass, the
    ``level`` (0: the starting gate) and, above level 0, ``reason`` (why it was raised last)."""

    size: int
    test: str
    level: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class Plan:
    """What the gate's sizes are planned from: the training and validation sizes, the LM calls one
    example costs (one per lm_function, an estimate), the calls made before the first iteration
    (starting demos and the seed's validation) and the budget's ``max_calls`` (None: no cap)."""

    train: int
    val: int
    per_example: int
    start_calls: int
    max_calls: int | None

    def iteration_calls(self, size: int, validated: bool = True) -> int:
        """The calls of one reflection iteration on ``size`` examples (an upper estimate)."""
        return 1 + 2 * size * self.per_example + (self.val * self.per_example if validated else 0)

    def spent(self, iterations: Sequence[IterationRecord]) -> int:
        """The calls the stored records account for (an upper estimate: cache hits are free)."""
        total = self.start_calls
        for it in iterations:
            if it.kind == "merge":
                total += self.val * self.per_example
            else:
                total += self.iteration_calls(len(it.minibatch), it.accepted)
        return total


def sign_test(before: Sequence[float], after: Sequence[float]) -> float:
    """The one-sided sign test's p-value that ``after`` beats ``before`` (ties dropped)."""
    wins = sum(a > b for a, b in zip(after, before, strict=True))
    n = wins + sum(a < b for a, b in zip(after, before, strict=True))
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n)


def gate_verdict(gate: Gate, alpha: float, before: Sequence[float], after: Sequence[float]) -> str | None:
    """Why ``gate`` does not accept the edit (minibatch values before and after), or None."""
    if sum(after) <= sum(before):
        return "no gain on the minibatch"
    if gate.test == "paired":
        p = sign_test(before, after)
        if p > alpha:
            return f"paired sign test p={p:.3f} > {alpha}"
    return None


def max_size(cfg: GateSettings, train: int) -> int:
    """The largest minibatch the settings allow (before the budget)."""
    if cfg.gate != "auto":
        return max(1, min(cfg.minibatch_size, train))
    top = cfg.max_minibatch_size if cfg.max_minibatch_size is not None else 4 * cfg.minibatch_size
    return max(1, min(max(top, cfg.minibatch_size), train))


def choose_gate(cfg: GateSettings, iterations: Sequence[IterationRecord], plan: Plan) -> Gate:
    """The gate of the next iteration, after the stored ``iterations`` (see the module docstring)."""
    base = max(1, min(cfg.minibatch_size, plan.train))
    if cfg.gate != "auto":
        return Gate(base, cfg.gate)
    level, accepted, false, reason = 0, 0, 0, None
    for it in iterations:
        if it.kind != "reflect" or not it.accepted:
            continue
        accepted += 1
        false += it.false_accept
        if false / accepted > cfg.max_false_accept_rate:
            reason = (
                f"{false} of {accepted} accepted edit(s) lost on validation at level {level} "
                f"(more than {cfg.max_false_accept_rate:.0%})"
            )
            level, accepted, false = level + 1, 0, 0
    if level == 0:
        return Gate(base, "improve")
    want = min(base * 2**level, max_size(cfg, plan.train))
    size = _fit(want, base, plan, iterations)
    return Gate(size, "paired", level, reason)


def _fit(want: int, base: int, plan: Plan, iterations: Sequence[IterationRecord]) -> int:
    """The largest size from ``want`` down to ``base`` whose iteration costs at most half of the
    calls the budget has left by the records' count."""
    if plan.max_calls is None:
        return want
    left = plan.max_calls - plan.spent(iterations)
    size = want
    while size > base and 2 * plan.iteration_calls(size) > left:
        size -= 1
    return size
