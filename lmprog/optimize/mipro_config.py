"""The settings of a MIPRO run (:class:`MiproConfig`), what they imply before the run starts (an
upper estimate of its LM calls) and the key of the optuna study that stores it.

A stored study is reused only by a run whose key is the same, so the key covers everything a
score or a proposal depends on: the metric, the models, the program, the data, the seed, these
settings and the layout of the stored records (:data:`~lmprog.optimize.mipro_store.STORE_FORMAT`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from dataclasses import dataclass
from typing import Any

from lmprog.errors import MissingDependencyError, UsageError
from lmprog.optimize._base import Task
from lmprog.optimize.bootstrap import BootstrapFewShot
from lmprog.optimize.identity import data_fingerprint, digest, models_identity, score_context
from lmprog.optimize.mipro_store import STORE_FORMAT
from lmprog.promptfile import DEFAULT_MAX_POOL, function_id

__all__ = ["MiproConfig", "estimate_calls", "study_key"]


@dataclass(frozen=True)
class MiproConfig:
    """The settings of :class:`~lmprog.optimize.mipro.MIPRO` (its keyword arguments).

    Args:
        num_instructions: instruction candidates per function over all rounds (the original
            included); at least 1.
        num_demo_sets: bootstrapped demo sets per function (the empty set is added); at least 0.
        max_bootstrapped_demos: demos per set taken from the program's own passing runs.
        max_labeled_demos: demos per set in all, topped up with labeled training rows.
        num_trials: minibatch trials over all rounds, shared by every worker on the study.
        minibatch_size: validation examples per trial.
        full_eval_every: a full validation evaluation of the best configuration after this many
            finished trials of a round (and at its end).
        rounds: proposal rounds; each round's proposer sees the earlier rounds' scores.
        proposer_lm: the LM writing proposals (default: the task LM).
        storage: an optuna storage URL or SQLite path (default ``.lmprog/optuna.db``).
        study_name: the study to use instead of the one keyed by the run's identity.
        cost_aware: also minimize prompt tokens (multi-objective) and report the Pareto front.
        metric_threshold: the metric value a bootstrapped run must reach (default: truthy).
        listing_tokens: the size of the program listing shown to the proposer.
        tips: draw a random writing tip for each proposal.
        stale_after: seconds after which a trial left RUNNING by another host is re-run.
        bootstrap_runs: training runs per bootstrapped demo set at most (None: until it has its
            demos; 0: labeled demos only, no call). A ``Budget(max_calls=...)`` may lower it (see
            :mod:`lmprog.optimize.mipro_plan`).
        retrieved_demos: ``k`` of a demo set of retrieved demos per function (the ``k`` training
            examples nearest to each call's inputs, by BM25, as ``optimizer="knn"``): one more
            demo set the search can pick, costing no call. None: ``max_labeled_demos`` when
            ``bm25s`` (``lmprog[knn]``) is installed, else none; 0: none.
        max_pool: the training examples a retrieved demo set's pool holds at most (it is stored
            in the prompt file).

    Counts below their minimum are raised to it.
    """

    num_instructions: int = 5
    num_demo_sets: int = 3
    max_bootstrapped_demos: int = 3
    max_labeled_demos: int = 3
    num_trials: int = 16
    minibatch_size: int = 16
    full_eval_every: int = 4
    rounds: int = 2
    proposer_lm: Any = None
    storage: str | None = None
    study_name: str | None = None
    cost_aware: bool = False
    metric_threshold: float | None = None
    listing_tokens: int = 600
    tips: bool = True
    stale_after: float = 3600.0
    bootstrap_runs: int | None = None
    retrieved_demos: int | None = None
    max_pool: int = DEFAULT_MAX_POOL

    def __post_init__(self) -> None:
        for name, least in _MINIMUM.items():
            object.__setattr__(self, name, max(least, getattr(self, name)))
        if self.bootstrap_runs is not None and self.bootstrap_runs < 0:
            raise UsageError(f"mipro: bootstrap_runs must be >= 0 or None, got {self.bootstrap_runs}")
        if self.retrieved_demos is not None and self.retrieved_demos < 0:
            raise UsageError(f"mipro: retrieved_demos must be >= 0 or None, got {self.retrieved_demos}")

    def resolved(self) -> MiproConfig:
        """These settings with ``retrieved_demos`` decided (None becomes a number, see above)."""
        if self.retrieved_demos is not None:
            if self.retrieved_demos > 0 and not _has_bm25s():
                raise MissingDependencyError(
                    "mipro: retrieved_demos needs the bm25s package: pip install 'lmprog[knn]' "
                    "(or pass retrieved_demos=0)"
                )
            return self
        k = self.max_labeled_demos if _has_bm25s() else 0
        return dataclasses.replace(self, retrieved_demos=k)

    def bootstrapper(self) -> BootstrapFewShot:
        """The bootstrapper that finds the demo sets."""
        return BootstrapFewShot(
            max_bootstrapped_demos=self.max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos,
            metric_threshold=self.metric_threshold,
        )

    def trials_in_round(self, r: int) -> int:
        """Round ``r``'s share of ``num_trials`` (the first rounds take the remainder)."""
        base, extra = divmod(self.num_trials, self.rounds)
        return base + (1 if r < extra else 0)


_MINIMUM = {
    "num_instructions": 1,
    "num_demo_sets": 0,
    "num_trials": 1,
    "minibatch_size": 1,
    "full_eval_every": 1,
    "rounds": 1,
}


def _has_bm25s() -> bool:
    return importlib.util.find_spec("bm25s") is not None


def estimate_calls(config: MiproConfig, task: Task) -> int:
    """An upper estimate of the LM calls of a fresh run (cache hits make the real count lower)."""
    per_example = max(1, len(task.functions))
    val = max(1, len(task.valset))
    batch = min(config.minibatch_size, val)
    boot = config.num_demo_sets * min(len(task.trainset), 2 * max(task.threads, 8)) * per_example
    proposals = 1 + len(task.functions) * (config.num_instructions - 1) * 2
    trials = config.num_trials * batch * per_example
    full = (1 + math.ceil(config.num_trials / config.full_eval_every) + config.rounds) * val * per_example
    return boot + proposals + trials + full


def study_key(config: MiproConfig, task: Task, bootstrapper: BootstrapFewShot) -> str:
    """The name of the study storing a run of ``task`` under ``config``: ``study_name`` when
    given, else a digest of everything the run's scores and proposals depend on."""
    if config.study_name:
        return config.study_name
    ident = {
        "store": STORE_FORMAT,
        "context": score_context(task),
        "proposer": models_identity([], {"proposer": config.proposer_lm})["proposer"],
        "functions": [function_id(f) + ":" + f.signature_hash for f in task.functions],
        "train": data_fingerprint(task.trainset),
        "val": data_fingerprint(task.valset),
        "seed": task.seed,
        "config": [
            config.num_instructions,
            config.num_demo_sets,
            config.num_trials,
            config.minibatch_size,
            config.full_eval_every,
            config.rounds,
            config.cost_aware,
            config.listing_tokens,
            config.tips,
            bootstrapper.max_bootstrapped_demos,
            bootstrapper.max_labeled_demos,
            bootstrapper.max_rounds,
            bootstrapper.metric_threshold,
            bootstrapper.temperature,
        ],
    }
    # settings added later join the key only when they change what a run does, so the studies
    # of runs without them keep their names
    if config.bootstrap_runs is not None:
        ident["bootstrap_runs"] = config.bootstrap_runs
    if config.retrieved_demos:
        ident["retrieved"] = [config.retrieved_demos, config.max_pool]
    if task.budget.max_cost is not None:  # the plan of the phases after the baseline depends on it
        ident["max_cost"] = round(task.budget.max_cost, 9)
    return "mipro-" + digest(ident)
