"""MIPRO-style optimization: grounded instruction proposals x bootstrapped demo sets, searched with
optuna TPE on validation minibatches, with full evaluations of the most promising configurations.

Steps (each stored in optuna storage as it completes, through the typed records of
:mod:`lmprog.optimize.mipro_store`, so a killed run resumes where it stopped and, with the response
cache, repeats no LM call; :mod:`lmprog.optimize.mipro_run` holds the steps):

0. the plan: with ``Budget(max_calls=N)`` the phases below are sized to fit ``N`` before the
   first call (:mod:`lmprog.optimize.mipro_plan`; a budget below the smallest plan is a
   UsageError); the plan is in the result's details;
1. the baseline: the original program, fully evaluated;
2. demo sets: ``num_demo_sets`` bootstrapped sets per lm_function, plus the empty set and, per
   function with labeled training examples, a set of retrieved demos (its ``retrieved_demos``
   nearest training examples per call, from a pool stored with the prompt file, as
   ``optimizer="knn"``);
3. a data summary (computed statistics + the proposer's description of a sample);
4. rounds of search: each round the proposer writes new instructions per function, seeing the
   program listing from ``analyze()``, the function, the data summary, demos, a random tip and the
   scores of earlier rounds' instructions (so later rounds learn from earlier ones); a TPE study
   searches the round's instruction x demo-set space on minibatches; every ``full_eval_every``
   trials and at the end of a round the best configuration by mean minibatch score is evaluated on
   the whole validation set;
5. the result is the best configuration by full evaluation (the baseline included), with
   :class:`MiproDetails` (every score 0-100).
"""

from __future__ import annotations

import logging
from typing import Any

from lmprog.errors import BudgetExceededError, UsageError
from lmprog.optimize._base import OptimizationResult, Optimizer, Task
from lmprog.optimize.mipro_config import MiproConfig, estimate_calls, study_key
from lmprog.optimize.mipro_plan import MiproPlan, plan_for_cost, plan_run, smallest_calls
from lmprog.optimize.mipro_result import MiproDetails, ParetoPoint, TrialRecord
from lmprog.optimize.mipro_run import MiproRun
from lmprog.optimize.mipro_store import MiproStore
from lmprog.optimize.propose import GroundedProposer
from lmprog.optimize.search import open_storage
from lmprog.promptfile import DEFAULT_MAX_POOL, function_id

__all__ = ["MIPRO", "MiproConfig", "MiproDetails", "MiproPlan", "ParetoPoint", "TrialRecord"]

logger = logging.getLogger("lmprog.optimize.mipro")


class MIPRO(Optimizer):
    """Source-grounded instruction proposals + Bayesian search over instructions and demos.

    The keyword arguments are the fields of :class:`MiproConfig` (see there); or pass a whole
    ``config=MiproConfig(...)`` instead. Several workers may run one study (same storage and
    settings): ``num_trials`` is their total. A trial left RUNNING by a killed run is re-run by the
    next run (at once when its process is known dead on this host, else after ``stale_after``
    seconds). With ``Budget(max_calls=N)`` the run is planned to fit ``N`` (:meth:`plan`). The
    result's ``details`` is a :class:`MiproDetails`.
    """

    name = "mipro"
    needs_valset = True

    def __init__(
        self,
        num_instructions: int = 5,
        num_demo_sets: int = 3,
        max_bootstrapped_demos: int = 3,
        max_labeled_demos: int = 3,
        num_trials: int = 16,
        minibatch_size: int = 16,
        full_eval_every: int = 4,
        rounds: int = 2,
        proposer_lm: Any = None,
        storage: str | None = None,
        study_name: str | None = None,
        cost_aware: bool = False,
        metric_threshold: float | None = None,
        listing_tokens: int = 600,
        tips: bool = True,
        stale_after: float = 3600.0,
        bootstrap_runs: int | None = None,
        retrieved_demos: int | None = None,
        max_pool: int = DEFAULT_MAX_POOL,
        *,
        config: MiproConfig | None = None,
    ) -> None:
        given = MiproConfig(
            num_instructions=num_instructions,
            num_demo_sets=num_demo_sets,
            max_bootstrapped_demos=max_bootstrapped_demos,
            max_labeled_demos=max_labeled_demos,
            num_trials=num_trials,
            minibatch_size=minibatch_size,
            full_eval_every=full_eval_every,
            rounds=rounds,
            proposer_lm=proposer_lm,
            storage=storage,
            study_name=study_name,
            cost_aware=cost_aware,
            metric_threshold=metric_threshold,
            listing_tokens=listing_tokens,
            tips=tips,
            stale_after=stale_after,
            bootstrap_runs=bootstrap_runs,
            retrieved_demos=retrieved_demos,
            max_pool=max_pool,
        )
        if config is not None and given != MiproConfig():
            raise UsageError("MIPRO takes either config= or keyword settings, not both")
        self.config: MiproConfig = config if config is not None else given
        self.bootstrapper = self.config.bootstrapper()

    def estimate_calls(self, task: Task) -> int:
        """An upper estimate of the LM calls of a fresh run (cache hits make the real count lower):
        its plan's, which fits ``task.budget.max_calls`` when the budget allows one."""
        try:
            return self.plan(task).calls
        except UsageError:  # below the smallest plan: run() says so
            return estimate_calls(self.config, task)

    def min_calls(self, task: Task) -> int:
        """The calls of the smallest plan: ``plan`` refuses a ``max_calls`` below it."""
        return smallest_calls(self.config.resolved(), task)

    def plan(self, task: Task) -> MiproPlan:
        """How a run of ``task`` sizes its phases to its budget (see :mod:`.mipro_plan`).

        Raises:
            UsageError: ``task.budget.max_calls`` is below the smallest plan.
        """
        return plan_run(self.config.resolved(), task)

    def run(self, task: Task) -> OptimizationResult:
        import optuna

        plan = self.plan(task)  # before the first call: a budget too small for any plan stops here
        config = plan.config
        logger.info("mipro: plan: %s", plan.describe())
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(config.storage)
        key = study_key(config, task, self.bootstrapper)
        logger.info("mipro: study %s", key)
        store = MiproStore(optuna.create_study(study_name=key, storage=storage, load_if_exists=True))
        proposer = GroundedProposer(
            self._listing(task), lm=config.proposer_lm, seed=task.seed, use_tips=config.tips
        )
        ids = [function_id(fn) for fn in task.functions]
        run = MiproRun(config, self.bootstrapper, task, store, storage, ids, proposer)
        stopped = None
        try:
            run.baseline()
            if task.budget.max_cost is not None:
                plan = self._plan_for_cost(plan, task, run)
            grounding = run.ground()
            for r in range(plan.config.rounds):
                run.search_round(r, run.propose_round(r, grounding))
        except BudgetExceededError as e:
            stopped = e.what
            logger.warning("mipro: budget exhausted (%s); returning the best result so far", e.what)
        return run.result(stopped, plan)

    def _plan_for_cost(self, plan: MiproPlan, task: Task, run: MiproRun) -> MiproPlan:
        """The plan fitted to ``max_cost`` by the baseline's price; the run goes on under it."""
        plan = plan_for_cost(plan, task, run.baseline_record())
        if plan.price is None:
            logger.info("mipro: the price of a call is unknown; max_cost is a hard cap only")
        else:
            logger.info("mipro: plan for max_cost: %s", plan.describe())
        if plan.note:
            logger.warning("%s", plan.note)
        run.use_config(plan.config)
        return plan

    def _listing(self, task: Task) -> str:
        """The program listing the proposer sees (static analysis: no LM call)."""
        try:
            from lmprog.source import analyze

            return analyze(task.program).render(max_tokens=self.config.listing_tokens)
        except Exception as e:  # analysis is grounding, not a requirement
            logger.warning("mipro: program analysis failed (%s); proposing without the listing", e)
            return "\n\n".join(
                f"{fn.signature.qualname}: {fn.signature.instruction}" for fn in task.functions
            )
