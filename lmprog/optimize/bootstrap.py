"""Few-shot optimizers: labeled demos, bootstrapped demos (DSPy's BootstrapFewShot algorithm) and a
random search over bootstrapped demo sets.

Bootstrapping runs the program on training examples with tracing on, keeps the runs that pass the
metric, and turns every lm_function call inside them into a demonstration for that function, so
intermediate lm_functions that have no labels of their own get demos too.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lmprog import settings
from lmprog.errors import BudgetExceededError
from lmprog.function import LMFunction, State
from lmprog.optimize._base import Candidate, OptimizationResult, Optimizer, Task
from lmprog.optimize.balance import balance, is_collapsed, label_counts, label_field, rank_key
from lmprog.optimize.demos import (
    Demo,
    demos_from_traces,
    no_demo_warnings,
    no_labeled_demo_reason,
    sample_labeled,
)

logger = logging.getLogger("lmprog.optimize")


def _passes(score: float | None, threshold: float | None) -> bool:
    if score is None:
        return False
    return score >= threshold if threshold is not None else bool(score)


@dataclass
class Bootstrapped:
    """Demos per function from passing traces, and which training examples produced them."""

    demos: dict[LMFunction[..., Any], list[Demo]]
    used: set[int]
    runs: int = 0
    passed: int = 0
    #: the budget error that ended bootstrapping early, if one did (the demos found are kept)
    budget_error: BudgetExceededError | None = None

    @property
    def stopped_by(self) -> str | None:
        return None if self.budget_error is None else self.budget_error.what


class LabeledFewShot(Optimizer):
    """Attach up to ``k`` labeled training examples as demos to every lm_function they fit."""

    name = "labeled"

    def __init__(self, k: int = 4) -> None:
        self.k = k

    def estimate_calls(self, task: Task) -> int:
        return 0

    def run(self, task: Task) -> OptimizationResult:
        rng = random.Random(task.seed)
        states = {
            fn: State(demos=tuple(sample_labeled(fn, task.trainset, self.k, rng))) for fn in task.functions
        }
        result = OptimizationResult(self.name, states, score=None, seed=task.seed)
        if self.k > 0:
            counts = {fn: len(st.demos) for fn, st in states.items()}
            result.warnings = no_demo_warnings(
                self.name, counts, lambda fn: no_labeled_demo_reason(fn, task.trainset)
            )
        return result


class BootstrapFewShot(Optimizer):
    """DSPy's BootstrapFewShot: demos from the program's own successful runs.

    The training set is run in chunks (stopping once every lm_function has
    ``max_bootstrapped_demos``); a run passes when its metric value is truthy, or at least
    ``metric_threshold`` when one is given. Rounds after the first retry the examples that failed
    at ``temperature`` with a distinct cache rollout, so new samples are drawn. Each function's
    demos are its bootstrapped demos, topped up with labeled training examples not used for
    bootstrapping up to ``max_labeled_demos`` in total.
    """

    name = "bootstrap"

    def __init__(
        self,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 4,
        max_rounds: int = 2,
        metric_threshold: float | None = None,
        temperature: float = 0.7,
    ) -> None:
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.max_rounds = max_rounds
        self.metric_threshold = metric_threshold
        self.temperature = temperature

    def bootstrap(
        self, task: Task, order: list[int], *, max_demos: int | None = None, max_runs: int | None = None
    ) -> Bootstrapped:
        """Run training examples (in ``order``) until every function has enough demos, or
        ``max_runs`` runs were made (None: no such limit)."""
        want = self.max_bootstrapped_demos if max_demos is None else max_demos
        found = Bootstrapped({fn: [] for fn in task.functions}, set())
        if want <= 0 or max_runs == 0:
            return found
        chunk = max(task.threads, want)
        for rnd in range(self.max_rounds):
            pending = [i for i in order if i not in found.used]
            overrides = {} if rnd == 0 else {"temperature": self.temperature, "rollout": rnd}
            for start in range(0, len(pending), chunk):
                if self._enough(found, want):
                    return found
                size = chunk if max_runs is None else min(chunk, max_runs - found.runs)
                if size <= 0:
                    return found
                batch = pending[start : start + size]
                try:
                    with settings.context(**overrides):
                        result = task.evaluate([task.trainset[i] for i in batch])
                except BudgetExceededError as e:
                    found.budget_error = e  # keep what passed so far: the best found
                    return found
                found.runs += len(batch)
                for i, res in zip(batch, result.results, strict=True):
                    if res.error is not None or not _passes(res.value, self.metric_threshold):
                        continue
                    found.passed += 1
                    found.used.add(i)
                    spans = res.trace.spans if res.trace is not None else []
                    for fn, demos in demos_from_traces(found.demos, spans).items():
                        if fn not in found.demos:
                            found.demos[fn] = []
                        found.demos[fn].extend(demos)
            if self._enough(found, want):
                break
        return found

    def estimate_calls(self, task: Task) -> int:
        return len(task.trainset) * self.max_rounds * max(1, len(task.functions))

    @staticmethod
    def _enough(found: Bootstrapped, want: int) -> bool:
        return bool(found.demos) and all(len(d) >= want for d in found.demos.values())

    def states_from(
        self, task: Task, found: Bootstrapped, rng: random.Random, max_boot: int | None = None
    ) -> dict[LMFunction[..., Any], State]:
        k_boot = self.max_bootstrapped_demos if max_boot is None else max_boot
        unused = [ex for i, ex in enumerate(task.trainset) if i not in found.used]
        states = {}
        for fn in task.functions:
            boot = found.demos.get(fn, [])[:k_boot]
            labeled = sample_labeled(fn, unused, self.max_labeled_demos - len(boot), rng)
            demos = boot + labeled
            if label_field(fn) is not None:
                # categorical: the same number of demos, label-balanced; per label the bootstrapped
                # ones first, labeled ones where the passing runs left a label out
                more = sample_labeled(fn, unused, len(unused), rng)
                demos = balance(fn, found.demos.get(fn, []) + more, len(demos))
            states[fn] = State(demos=tuple(demos))
        return states

    def run(self, task: Task) -> OptimizationResult:
        rng = random.Random(task.seed)
        order = list(range(len(task.trainset)))
        rng.shuffle(order)
        found = self.bootstrap(task, order)
        stopped = found.stopped_by
        states = self.states_from(task, found, rng)
        logger.info("bootstrap: %d of %d training runs passed", found.passed, found.runs)
        return OptimizationResult(
            self.name,
            states,
            score=None,
            seed=task.seed,
            stopped_by=stopped,
            details={"runs": found.runs, "passed": found.passed},
            warnings=self.demo_warnings(
                task, {fn: len(st.demos) for fn, st in states.items()}, [found], stopped=stopped
            ),
        )

    def demo_warnings(
        self,
        task: Task,
        counts: dict[LMFunction[..., Any], int],
        boots: list[Bootstrapped] | None,
        name: str | None = None,
        stopped: str | None = None,
    ) -> list[str]:
        """A warning for every function with no demo (``counts``), saying why: the budget cap
        that stopped the run (``stopped``), what the bootstrap runs (``boots``, None when
        unknown) and the labeled examples gave."""
        if self.max_bootstrapped_demos <= 0 and self.max_labeled_demos <= 0:
            return []
        runs = sum(b.runs for b in boots or [])
        passed = sum(b.passed for b in boots or [])
        used: set[int] = set().union(*(b.used for b in boots)) if boots else set()

        def reason(fn: LMFunction[..., Any]) -> str:
            parts = [f"the budget ({stopped}) stopped the run"] if stopped else []
            if self.max_bootstrapped_demos > 0:
                if boots is None or passed:
                    parts.append("no training run that passed the metric made a call to it that fits")
                else:
                    parts.append(f"none of {runs} training run(s) passed the metric")
            if self.max_labeled_demos > 0:
                unused = [ex for i, ex in enumerate(task.trainset) if i not in used]
                parts.append(no_labeled_demo_reason(fn, unused))
            return "; ".join(p for p in parts if p)

        return no_demo_warnings(name or self.name, counts, reason)


#: under a call budget below the whole search, random_search's seeded bootstrap runs at most this
#: many training examples per demo it wants (at 25 % passing runs it still finds them all)
FIRST_RUNS_PER_DEMO = 4


class RandomSearch(BootstrapFewShot):
    """Score several candidate demo sets on the validation set and keep the best.

    Candidates, the likeliest first: labeled demos only, bootstrapped demos in a seeded order, no
    demos (the baseline), then ``num_candidates - 1`` more bootstrapped sets from shuffled
    training sets with a random number of demos each. ``Budget.max_trials`` caps how many
    candidates are scored. A candidate whose validation predictions collapse to one label is
    never kept over one whose do not (:mod:`.balance`).

    Under ``Budget(max_calls=...)`` the first two are the run's smallest useful plan
    (:meth:`min_calls`): scoring each candidate takes a pass over the validation set, and with
    the baseline first a 200-call budget with 40 validation rows, of which ``optimize()`` sets
    aside up to half for the variants step, ended before any bootstrapped set was scored (the
    zero-shot program was the result on Banking77-10 and Iris in benchmark v2). When the budget
    is below :meth:`estimate_calls`, the seeded bootstrap runs at most
    :data:`FIRST_RUNS_PER_DEMO` training examples per demo it wants (its demos are topped up with
    labeled ones as usual): counted at one pass over the training set, the smallest plan took
    the whole of a 200-call budget with 200 training rows, and ``optimize()`` could set nothing
    aside for scoring and calibrating the labels (ScoNe's random_search cells predicted "no" for
    every test input).
    """

    name = "random_search"
    needs_valset = True

    def __init__(self, num_candidates: int = 6, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.num_candidates = num_candidates

    def estimate_calls(self, task: Task) -> int:
        per_run = max(1, len(task.functions))
        boots = self.num_candidates * len(task.trainset) * self.max_rounds
        return (boots + (self.num_candidates + 2) * len(task.valset)) * per_run

    def min_calls(self, task: Task) -> int:
        """Scoring the labeled demos and the first bootstrapped set, its bootstrap cut to
        :meth:`least_runs` runs included."""
        if self.num_candidates < 1:
            return 0
        return (2 * len(task.valset) + self.least_runs(task)) * max(1, len(task.functions))

    def least_runs(self, task: Task) -> int:
        """The training runs the seeded bootstrap makes at most under a budget that does not
        cover the whole search."""
        wanted = FIRST_RUNS_PER_DEMO * max(0, self.max_bootstrapped_demos)
        return min(len(task.trainset) * self.max_rounds, wanted)

    def first_runs(self, task: Task) -> int | None:
        """The runs the seeded bootstrap may make in ``task``: :meth:`least_runs` when
        ``task.budget.max_calls`` is below :meth:`estimate_calls`, else no limit (None)."""
        cap = task.budget.max_calls
        if cap is None or cap >= self.estimate_calls(task):
            return None
        return self.least_runs(task)

    def run(self, task: Task) -> OptimizationResult:
        candidates: list[Candidate] = []
        stopped = None
        best: Candidate | None = None
        details: dict[str, Any] = {}
        pending: tuple[str, dict[LMFunction[..., Any], State]] | None = None
        boots: list[Bootstrapped] = []
        counts = {fn: 0 for fn in task.functions}
        try:
            for label, states in self.candidate_states(task, boots):
                for fn, st in states.items():
                    counts[fn] = max(counts.get(fn, 0), len(st.demos))
                if task.budget.max_trials is not None and len(candidates) >= task.budget.max_trials:
                    stopped = "max_trials"
                    break
                pending = (label, states)
                result = task.evaluate(task.valset, states)
                pending = None
                cand = Candidate(states, result.score, label, len(task.valset))
                cand.label_counts, expected = label_counts(task.functions, result)
                cand.collapsed = is_collapsed(cand.label_counts, expected)
                candidates.append(cand)
                logger.info(
                    "random_search: %s scored %.1f%s",
                    label,
                    result.score,
                    " (collapsed)" if cand.collapsed else "",
                )
                if best is None or rank_key(cand.score, cand.collapsed) > rank_key(
                    best.score, best.collapsed
                ):
                    best = cand
        except BudgetExceededError as e:
            stopped = e.what
            logger.warning("random_search: budget exhausted (%s); keeping the best scored candidate", e.what)
            if pending is not None:  # made, not scored: reported, never chosen unmeasured
                details["unscored"] = {
                    "label": pending[0],
                    "demos": {fn.signature.qualname: len(st.demos) for fn, st in pending[1].items()},
                }
        if best is None:
            best = Candidate({fn: State() for fn in task.functions}, None, "zero-shot")
        baseline = next((c.score for c in candidates if c.label == "zero-shot"), None)
        return OptimizationResult(
            self.name,
            best.states,
            score=best.score,
            baseline_score=baseline,
            candidates=candidates,
            seed=task.seed,
            stopped_by=stopped,
            details=details,
            warnings=self.demo_warnings(task, counts, boots, stopped=stopped),
            label_counts=best.label_counts,
        )

    def candidate_states(
        self, task: Task, boots: list[Bootstrapped] | None = None
    ) -> Iterator[tuple[str, dict[LMFunction[..., Any], State]]]:
        """Candidate states, made lazily (each bootstrap reuses the response cache); each
        bootstrap's findings are appended to ``boots`` when given."""
        rng = random.Random(task.seed)
        yield (
            "labeled",
            {
                fn: State(demos=tuple(sample_labeled(fn, task.trainset, self.max_labeled_demos, rng)))
                for fn in task.functions
            },
        )
        zero_shot = ("zero-shot", {fn: State() for fn in task.functions})
        if self.num_candidates < 1:
            yield zero_shot
        for k in range(self.num_candidates):
            crng = random.Random(task.seed * 1000 + k)
            order = list(range(len(task.trainset)))
            if k > 0:
                crng.shuffle(order)
            n_boot = self.max_bootstrapped_demos if k == 0 else crng.randint(1, self.max_bootstrapped_demos)
            found = self.bootstrap(
                task, order, max_demos=n_boot, max_runs=self.first_runs(task) if k == 0 else None
            )
            if boots is not None:
                boots.append(found)
            states = self.states_from(task, found, crng, n_boot)
            label = f"bootstrap #{k} ({n_boot} demos)"
            if found.budget_error is not None:
                # the cap ended this bootstrap: offer what it found (scored if the cache allows),
                # then end the search with the cap's error instead of bootstrapping on without it
                logger.warning(
                    "random_search: budget exhausted (%s) while bootstrapping %s; %d demo(s) found so far",
                    found.budget_error.what,
                    label,
                    sum(len(d) for d in found.demos.values()),
                )
                yield (f"{label}, cut short by {found.budget_error.what}", states)
                raise found.budget_error
            yield (label, states)
            if k == 0:  # the baseline after the likeliest candidates (see the class doc)
                yield zero_shot
