"""``optimizer="knn"``: retrieved demos. For each call, the ``k`` training examples nearest to its
inputs become its demos.

The optimizer makes no LM call: it stores, per lm_function, a pool of labeled demos from the
training set (at most ``max_pool``, a seeded sample, label-balanced when the output is categorical)
in the function's state, and so in its prompt file (a ``knn:`` section), so the deployed program
retrieves from it with nothing else. Retrieval is BM25 (``bm25s``, the ``lmprog[knn]`` extra) by
default, or cosine similarity of embeddings from a litellm embedding model (``embedder=``); see
:mod:`lmprog.promptfile._pool`. When a validation set is given the result is scored on it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

from lmprog.errors import UsageError
from lmprog.function import LMFunction, State
from lmprog.optimize._base import OptimizationResult, Optimizer, Task
from lmprog.optimize.demos import no_demo_warnings, no_labeled_demo_reason, sample_labeled
from lmprog.promptfile import DEFAULT_MAX_POOL, DemoPool

logger = logging.getLogger("lmprog.optimize")


class KNNFewShot(Optimizer):
    """Retrieve the ``k`` nearest of up to ``max_pool`` labeled training examples per call.

    ``embedder`` names a litellm embedding model (None: BM25); ``fields`` are the input fields
    compared (None: all of a function's inputs).
    """

    name = "knn"

    def __init__(
        self,
        k: int = 4,
        max_pool: int = DEFAULT_MAX_POOL,
        embedder: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> None:
        if k < 1:
            raise UsageError(f"knn: k must be at least 1, got {k}")
        if max_pool < 1:
            raise UsageError(f"knn: max_pool must be at least 1, got {max_pool}")
        self.k = k
        self.max_pool = max_pool
        self.embedder = embedder
        self.fields = tuple(fields) if fields is not None else None

    def estimate_calls(self, task: Task) -> int:
        return 0

    def run(self, task: Task) -> OptimizationResult:
        rng = random.Random(task.seed)
        states: dict[LMFunction[..., Any], State] = {}
        for fn in task.functions:
            pool = sample_labeled(fn, task.trainset, self.max_pool, rng)
            states[fn] = State(pool=self.pool_for(fn, pool)) if pool else State()
        counts = {fn: len(st.pool.demos) if st.pool else 0 for fn, st in states.items()}
        warnings = no_demo_warnings(self.name, counts, lambda fn: no_labeled_demo_reason(fn, task.trainset))
        logger.info(
            "knn: demo pools of %s",
            ", ".join(f"{fn.signature.qualname}: {n}" for fn, n in counts.items()),
        )
        return OptimizationResult(
            self.name,
            states,
            score=None,
            seed=task.seed,
            details={"k": self.k, "pool": {fn.signature.qualname: n for fn, n in counts.items()}},
            warnings=warnings,
        )

    def pool_for(self, fn: LMFunction[..., Any], demos: Sequence[dict[str, Any]]) -> DemoPool:
        """The pool of ``fn`` over ``demos``, compared on this optimizer's fields."""
        inputs = fn.signature.input_names
        fields = self.fields if self.fields is not None else inputs
        unknown = [f for f in fields if f not in inputs]
        if unknown:
            raise UsageError(
                f"knn: fields {unknown} are not inputs of {fn.signature.qualname} "
                f"(inputs: {', '.join(inputs)})"
            )
        return DemoPool(k=self.k, demos=tuple(demos), fields=tuple(fields), embedder=self.embedder)
