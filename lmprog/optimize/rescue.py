"""The variants step's first resort for a collapsed result: the same states with retrieved demos.

A small model shown the same few demos for every input may answer one label for all of them
(a collapsed configuration, :mod:`.balance`), and when it does not read the inputs no layout or
label decoding of those demos changes that: on Iris, whose inputs are four measurements, every
program of the embedded 135M model with fixed demos predicted one species for all 50 test
flowers (30.0-38.0 against a majority class of 36.0). Demos retrieved per call, the nearest
training rows last, change with the input, and the model copies the nearest one's label often
enough to follow it: the same model scored 90.0-94.0 with them
(``benchmarks/results/v2/full/findings.md``).

So when the optimizer's result collapses on validation data (or nearly:
:func:`~.balance.is_collapsed`) and scoring and calibrating its labels in its layout did not
help (calibration corrects a label bias, and on ScoNe it was what kept results from collapsing;
tried first, the rescue took the calls it needed), :func:`~.variants.choose_variant` evaluates
:func:`retrieved_states`: the result's states with each categorical function's fixed demos
replaced by a pool of its labeled training rows (``k`` per call: as many as the demos it
replaces, else :data:`RESCUE_K`), in the same layout and decoding. It replaces the result when
it ranks higher (:func:`~.balance.rank_key`: a configuration that does not collapse always
does), and the later variants then build on it. It is not planned into the budget's reserve
(:func:`~.variants_budget.plan_reserve`): it runs only when needed, and then spends what the later
variants would have. A function keeps its states when it already retrieves (a ``knn`` or
mipro pool), has no categorical output, has labeled training rows of fewer than two labels
(demos of one label pull every answer to it) or without a label the validation rows expect (an
answer copied from the nearest demos can never be it), or has inputs that need BM25 where
``bm25s`` (``lmprog[knn]``) is missing.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Mapping
from typing import Any

from lmprog.function import LMFunction, State
from lmprog.optimize._base import Task
from lmprog.optimize.balance import LabelCounts, label_field, label_of
from lmprog.optimize.demos import sample_labeled
from lmprog.promptfile import DEFAULT_MAX_POOL, DemoPool

logger = logging.getLogger("lmprog.optimize")

#: demos retrieved per call for a function that had none
RESCUE_K = 4


def retrieved_states(
    task: Task, states: Mapping[LMFunction[..., Any], State], expected: LabelCounts
) -> dict[LMFunction[..., Any], State] | None:
    """``states`` with every function that can take retrieved demos given a pool of its labeled
    training rows instead of its fixed demos; None when no function can (see the module doc).
    ``expected``: the validation labels per function (:func:`~.balance.expected_counts`)."""
    rng = random.Random(task.seed)
    out = dict(states)
    rescued = False
    for fn, state in states.items():
        if state.pool is not None:
            continue
        pool = _pool(task, fn, len(state.demos) or RESCUE_K, rng, expected.get(fn.signature.qualname, {}))
        if pool is not None:
            out[fn] = dataclasses.replace(state, demos=(), pool=pool)
            rescued = True
    return out if rescued else None


def _pool(
    task: Task, fn: LMFunction[..., Any], k: int, rng: random.Random, expected: Mapping[str, int]
) -> DemoPool | None:
    name = label_field(fn)
    if name is None:
        return None
    rows = sample_labeled(fn, task.trainset, DEFAULT_MAX_POOL, rng)
    labels = {label_of(row[name]) for row in rows if name in row}
    if len(labels) < 2:
        return None  # demos of one label would pull every answer to it
    missing = sorted(set(expected) - labels)
    if missing:  # an answer copied from the nearest demos can never be these
        logger.info(
            "no retrieved demos for %s: no training row is labeled %s", fn.signature.qualname, missing
        )
        return None
    pool = DemoPool(k=k, demos=tuple(rows), fields=tuple(fn.signature.input_names))
    return pool if pool.ready else None
