"""Reflective optimization: a model reads the traces of a few runs and the metric's feedback and
rewrites one function's instruction; edits that help on the minibatch are validated, and parents
are drawn from the Pareto front of per-example best candidates (after GEPA, Agrawal et al. 2025).

Each iteration (:meth:`Reflect.run`), decided by the seed and the stored records before it:

1. a parent is drawn from the Pareto front over the validation examples (weighted by the examples
   it is best on), a function is taken round-robin, a minibatch of training examples is drawn;
2. the parent runs the minibatch with tracing; when it is already perfect there, nothing is tried;
3. the reflection LM (``reflection_lm``, default the task LM) sees the program listing from
   ``analyze()``, the function, its calls in the traces (inputs, outputs, errors, unparsed
   replies), the scores and the metric's :class:`~lmprog.metrics.Feedback`, and the function's
   earlier edits with their scores; it writes a new instruction (guarded like MIPRO's proposals);
4. the child runs the same minibatch; the gate (``gate="improve"``: a higher total;
   ``gate="paired"``: also a one-sided sign test at ``gate_alpha``) accepts or rejects it; an
   accepted child is evaluated on the whole validation set and joins the candidates;
5. after an acceptance, a merge may run instead of a reflection: two front candidates whose
   lineages changed different functions are combined and validated.

``init="bootstrap"`` first bootstraps demos (as ``optimizer="bootstrap"`` does) that every candidate
keeps, so the result has both. Records are stored as they complete (:mod:`reflect_store`): with a
``storage=`` file a killed run resumes and ends with the same prompts. The result's ``details`` is a
:class:`~lmprog.optimize.reflect_result.ReflectDetails`.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from lmprog import settings
from lmprog.data import Example, load_dataset
from lmprog.errors import BudgetExceededError, LmprogError, UsageError
from lmprog.evaluate import EvaluationResult
from lmprog.optimize._base import OptimizationResult, Optimizer, Task, provider_failed
from lmprog.optimize.bootstrap import BootstrapFewShot
from lmprog.optimize.identity import data_fingerprint, digest, models_identity, score_context
from lmprog.optimize.propose import check_instruction, clean_instruction, describe_function
from lmprog.optimize.reflect_front import choose_parent, merge_pair
from lmprog.optimize.reflect_prompt import describe_history, describe_runs, reflect_instruction
from lmprog.optimize.reflect_result import ReflectDetails, best_candidate, build_result, states_of
from lmprog.optimize.reflect_store import STORE_FORMAT, CandidateRecord, IterationRecord, ReflectStore
from lmprog.optimize.search import DEFAULT_STORAGE_DIR
from lmprog.promptfile import function_id

__all__ = ["Reflect", "ReflectConfig", "ReflectDetails"]

logger = logging.getLogger("lmprog.optimize.reflect")


@dataclass(frozen=True)
class ReflectConfig:
    """The settings of a reflective run.

    ``num_iterations`` caps the iterations (reflections and merges); ``minibatch_size`` training
    examples are run per iteration; ``gate`` and ``gate_alpha`` choose the acceptance rule (see
    the module docstring); ``merge``/``max_merges`` enable merges; ``reflection_lm`` writes the
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
        cfg = self.config
        per_example = max(1, len(task.functions))
        val = len(task.valset) * per_example
        batch = min(cfg.minibatch_size, len(task.trainset)) * per_example
        boot = (
            min(len(task.trainset), 2 * max(task.threads, 8)) * per_example if cfg.init == "bootstrap" else 0
        )
        test = 2 * len(self._testset()) * per_example
        return boot + val + cfg.num_iterations * (1 + 2 * batch + val) + test

    def study_key(self, task: Task) -> str:
        cfg = self.config
        if cfg.study_name:
            return cfg.study_name
        skip = ("storage", "study_name", "testset", "reflection_lm")
        settings_ = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in skip}
        settings_["reflection_lm"] = models_identity([], {"r": cfg.reflection_lm})["r"]
        ident = {
            "store": STORE_FORMAT,
            "context": score_context(task),
            "functions": [function_id(f) + ":" + f.signature_hash for f in task.functions],
            "train": data_fingerprint(task.trainset),
            "val": data_fingerprint(task.valset),
            "seed": task.seed,
            "config": settings_,
        }
        return "reflect-" + digest(ident)

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
        store = ReflectStore(storage_path(cfg.storage), key)
        logger.info("reflect: study %s", key)
        run = _Run(cfg, task, store, ids, self._listing(task))
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
            seed_states = states_of(store.candidates()[0], task.functions, ids, store.demos() or {})
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


class _Run:
    """The steps of one reflective run; every decision reads the store, so a resumed run repeats
    the uninterrupted one."""

    def __init__(self, cfg: ReflectConfig, task: Task, store: ReflectStore, ids: list[str], listing: str):
        self.cfg, self.task, self.store, self.ids, self.listing = cfg, task, store, ids, listing

    def states(self, record: CandidateRecord) -> dict[Any, Any]:
        return states_of(record, self.task.functions, self.ids, self.store.demos() or {})

    def start(self) -> None:
        """The starting demos (bootstrapped when asked) and the seed candidate, validated."""
        task = self.task
        if self.store.demos() is None:
            demos: dict[str, list[dict[str, Any]]] = {}
            if self.cfg.init == "bootstrap":
                boot = BootstrapFewShot(max_bootstrapped_demos=self.cfg.max_demos, max_labeled_demos=0)
                order = list(range(len(task.trainset)))
                random.Random(f"{task.seed}-reflect-demos").shuffle(order)
                found = boot.bootstrap(task, order)
                if found.budget_error is not None:  # never store truncated demos as complete
                    raise found.budget_error
                states = boot.states_from(task, found, random.Random(task.seed))
                demos = {
                    fid: [dict(d) for d in states[fn].demos]
                    for fn, fid in zip(task.functions, self.ids, strict=True)
                }
            self.store.put_demos(demos)
        if not self.store.candidates():
            seed = CandidateRecord(
                0,
                {fid: fn.signature.instruction for fn, fid in zip(task.functions, self.ids, strict=True)},
                (),
                -1,
                None,
                (),
            )
            values = self._validate(seed)
            self.store.put_candidate(CandidateRecord(0, seed.instructions, (), -1, None, values))

    def _validate(self, record: CandidateRecord) -> tuple[float, ...]:
        return tuple(self.task.evaluate(self.task.valset, self.states(record)).values)

    def iterate(self, i: int) -> None:
        cands, its = self.store.candidates(), self.store.iterations()
        rng = random.Random(f"{self.task.seed}-reflect-{i}")
        merges = [it for it in its if it.kind == "merge"]
        if self.cfg.merge and len(merges) < self.cfg.max_merges and its and its[-1].accepted:
            pair = merge_pair(cands, {(it.parent, it.other_parent or -1) for it in merges})
            if pair is not None:
                self._merge(i, *pair)
                return
        parent = cands[choose_parent(cands, rng)]
        fid = self.ids[sum(it.kind == "reflect" for it in its) % len(self.ids)]
        fn = self.task.functions[self.ids.index(fid)]
        train = self.task.trainset
        batch = tuple(sorted(rng.sample(range(len(train)), min(self.cfg.minibatch_size, len(train)))))
        record = IterationRecord(i, "reflect", parent.index, fid, minibatch=batch)
        before = self._run_batch(parent, batch)
        record = _with(record, parent_minibatch=before.score)
        if all(v >= 1.0 for v in before.values):
            self.store.put_iteration(_with(record, note="perfect on the minibatch"))
            return
        text, why = self._reflect(i, fn, fid, parent, before, its)
        record = _with(record, instruction=text)
        if why is not None:
            self.store.put_iteration(_with(record, note=why))
            return
        child = CandidateRecord(len(cands), {**parent.instructions, fid: text}, (parent.index,), i, fid, ())
        after = self._run_batch(child, batch)
        record = _with(record, child_minibatch=after.score)
        why = self._gate(before.values, after.values)
        if why is not None:
            self.store.put_iteration(_with(record, note=why))
            return
        child = _with(child, values=self._validate(child))
        logger.info(
            "reflect: iteration %d: %s accepted, validation %.1f (parent %.1f)",
            i,
            fid,
            child.score,
            parent.score,
        )
        self.store.put_step(
            child,
            _with(
                record,
                accepted=True,
                candidate=child.index,
                val_score=child.score,
                parent_val_score=parent.score,
            ),
        )

    def _merge(self, i: int, a: int, b: int, merged: dict[str, str]) -> None:
        cands = self.store.candidates()
        child = CandidateRecord(len(cands), merged, (a, b), i, None, ())
        child = _with(child, values=self._validate(child))
        logger.info("reflect: iteration %d: merged %d and %d, validation %.1f", i, a, b, child.score)
        best_parent = max(cands[a].score, cands[b].score)
        self.store.put_step(
            child,
            IterationRecord(
                i,
                "merge",
                a,
                other_parent=b,
                accepted=True,
                candidate=child.index,
                val_score=child.score,
                parent_val_score=best_parent,
            ),
        )

    def _run_batch(self, record: CandidateRecord, batch: tuple[int, ...]) -> EvaluationResult:
        with settings.context(trace=True):
            return self.task.evaluate([self.task.trainset[j] for j in batch], self.states(record))

    def _reflect(
        self,
        i: int,
        fn: Any,
        fid: str,
        parent: CandidateRecord,
        before: EvaluationResult,
        its: list[IterationRecord],
    ) -> tuple[str, str | None]:
        """The reflection model's new instruction, and why it is refused (None: usable)."""
        current = parent.instructions[fid]
        override = {"lm": self.cfg.reflection_lm} if self.cfg.reflection_lm is not None else {}
        program = f"{self.listing}\n\n(The function to improve: {fn.signature.qualname}.)"
        try:
            with settings.context(**override, rollout=1 + i):
                raw = reflect_instruction(
                    program=program,
                    function=describe_function(fn, current),
                    runs=describe_runs(fn, before),
                    history=describe_history(fid, fn.signature.instruction, its),
                )
        except BudgetExceededError:
            raise
        except LmprogError as e:
            if provider_failed(e):
                raise
            return "", f"reflection failed: {str(e)[:200]}"
        text = clean_instruction(raw)
        why = check_instruction(text, fn)
        if why == "same as the original" and text != current:
            why = None  # going back to the docstring is a fair edit
        if why is None and text.strip().lower() == current.strip().lower():
            why = "unchanged"
        return text, why

    def _gate(self, before: list[float], after: list[float]) -> str | None:
        """Why the minibatch does not accept the edit, or None."""
        if sum(after) <= sum(before):
            return "no gain on the minibatch"
        if self.cfg.gate == "paired":
            p = sign_test(before, after)
            if p > self.cfg.gate_alpha:
                return f"paired sign test p={p:.3f} > {self.cfg.gate_alpha}"
        return None


def _with(record: Any, **changes: Any) -> Any:
    return replace(record, **changes)
