"""Reflective optimization: a model reads the traces of a few runs and the metric's feedback and
rewrites one function's instruction; edits that help on the minibatch are validated, and parents
are drawn from the Pareto front of per-example best candidates (after GEPA, Agrawal et al.).

Each iteration (:meth:`Reflect.run`), decided by the seed and the stored records before it:

1. a parent is drawn from the Pareto front over the validation examples (weighted by the examples
   it is best on) and a minibatch of training examples is drawn;
2. the parent runs the minibatch with tracing; when it is already perfect there, nothing is tried;
   the function to edit is taken round-robin (``select="round_robin"``) or, with
   ``select="blame"``, the one whose calls failed or drew per-function feedback on the examples
   that lost points (round-robin among equals);
3. the reflection LM (``reflection_lm``, default the task LM) sees the program listing from
   ``analyze()``, the function, its calls in the traces (inputs, outputs, errors, unparsed
   replies), the scores and the metric's :class:`~lmprog.metrics.Feedback`, and the function's
   earlier edits with their scores; it writes a new instruction (guarded like MIPRO's proposals);
4. the child runs the same minibatch; the gate (``gate="improve"``: a higher total;
   ``gate="paired"``: also a one-sided sign test at ``gate_alpha``; ``gate="auto"``, the default:
   improve on ``minibatch_size`` examples, raised to the paired test on larger minibatches when
   accepted edits keep losing on validation, within the budget: :mod:`reflect_gate`) accepts or
   rejects it; an accepted child is evaluated on the whole validation set and joins the
   candidates;
5. after an acceptance, a merge may run instead of a reflection: two front candidates whose
   lineages changed different functions are combined and validated.

Module map: ``reflect_config`` (settings), ``reflect_run`` (the steps), ``reflect_gate`` (the
acceptance gate and how it is chosen), ``reflect_front`` (Pareto front, parents, merges),
``reflect_prompt`` (what the reflection model sees), ``reflect_store`` (records),
``reflect_result`` (result and details).

``init="bootstrap"`` first bootstraps demos (as ``optimizer="bootstrap"`` does) and ``init="knn"``
makes a pool of labeled training examples to retrieve ``max_demos`` of per call (as
``optimizer="knn"`` does); every candidate keeps them, so the result (and its prompt files) has
both the demos and the edited instructions.

Records are stored as they complete: in ``.lmprog/reflect.json`` or the JSON file ``storage=``
names (:mod:`reflect_store`), or, when ``storage=`` names a database (``postgresql://...``,
``sqlite:///runs.db``, a ``.db`` file), in the optuna study of that name, in the storage MIPRO
uses (:mod:`reflect_study`): a killed run resumes and ends with the same prompts.
The result's ``details`` is a :class:`~lmprog.optimize.reflect_result.ReflectDetails`.
"""

from __future__ import annotations

import logging
from typing import Any

from lmprog.data import Example, load_dataset
from lmprog.errors import BudgetExceededError, UsageError
from lmprog.optimize._base import OptimizationResult, Optimizer, Task
from lmprog.optimize.reflect_config import ReflectConfig, estimate_calls, storage_path, study_key
from lmprog.optimize.reflect_gate import sign_test
from lmprog.optimize.reflect_result import ReflectDetails, best_candidate, build_result, states_of
from lmprog.optimize.reflect_run import ReflectRun
from lmprog.optimize.reflect_store import ReflectStore
from lmprog.optimize.reflect_study import open_reflect_store
from lmprog.promptfile import function_id

__all__ = ["Reflect", "ReflectConfig", "ReflectDetails", "sign_test"]

logger = logging.getLogger("lmprog.optimize.reflect")


class Reflect(Optimizer):
    """Trace- and feedback-driven instruction edits with a Pareto front and merges.

    The keyword arguments are the fields of :class:`ReflectConfig`, or pass ``config=``.
    """

    name = "reflect"
    needs_valset = True

    def __init__(self, *, config: ReflectConfig | None = None, **settings_: Any) -> None:
        if config is not None and settings_:
            raise UsageError("reflect takes either config= or keyword settings, not both")
        self.config = config if config is not None else ReflectConfig(**settings_)

    # -- planning -----------------------------------------------------------------------------------
    def estimate_calls(self, task: Task) -> int:
        """An upper estimate of the LM calls of a fresh run (cache hits make the real count lower)."""
        return estimate_calls(self.config, task, len(self._testset()))

    def study_key(self, task: Task) -> str:
        """The key of this run's records in the storage (see :func:`reflect_config.study_key`)."""
        return study_key(self.config, task)

    # -- the run ------------------------------------------------------------------------------------
    def run(self, task: Task) -> OptimizationResult:
        cfg = self.config
        if not task.valset:
            raise UsageError(
                "reflect needs validation data to score candidates on: pass valset=, or at least 4 "
                "training rows (half of them are then split off for validation)"
            )
        ids = [function_id(fn) for fn in task.functions]
        key = self.study_key(task)
        store = open_reflect_store(storage_path(cfg.storage), cfg.storage, key)
        logger.info("reflect: study %s", key)
        run = ReflectRun(cfg, task, store, ids, self._listing(task))
        stopped = None
        try:
            run.start()
            while len(store.iterations()) < cfg.num_iterations:
                done = len(store.iterations())
                cap = task.budget.max_trials
                if cap is not None and done >= cap:
                    stopped = "max_trials"
                    break
                run.iterate(done)
        except BudgetExceededError as e:
            stopped = e.what
            logger.warning("reflect: budget exhausted (%s); returning the best result so far", e.what)
        result = build_result(
            functions=task.functions,
            ids=ids,
            demos=store.demos() or {},
            pools=store.pools(),
            candidates=store.candidates(),
            iterations=store.iterations(),
            study=key,
            estimated_calls=self.estimate_calls(task),
            seed=task.seed,
            stopped=stopped,
        )
        if stopped is None and result.candidates:
            self._score_test(task, store, ids, result)
        return result

    def _testset(self) -> list[Example]:
        return [] if self.config.testset is None else load_dataset(self.config.testset)

    def _score_test(
        self, task: Task, store: ReflectStore, ids: list[str], result: OptimizationResult
    ) -> None:
        test = self._testset()
        details = ReflectDetails.of(result)
        best = best_candidate(store.candidates())
        if not test or best is None:
            return
        try:
            seed_states = states_of(
                store.candidates()[0], task.functions, ids, store.demos() or {}, store.pools()
            )
            details.baseline_test_score = task.evaluate(test, seed_states).score
            details.test_score = task.evaluate(test, result.states).score
        except BudgetExceededError as e:
            result.stopped_by = e.what

    def _listing(self, task: Task) -> str:
        """The program listing the reflection model sees (static analysis: no LM call)."""
        try:
            from lmprog.source import analyze

            return analyze(task.program).render(max_tokens=self.config.listing_tokens)
        except Exception as e:  # analysis is grounding, not a requirement
            logger.warning("reflect: program analysis failed (%s); reflecting without the listing", e)
            return "\n\n".join(
                f"{fn.signature.qualname}: {fn.signature.instruction}" for fn in task.functions
            )
