"""The steps of one MIPRO run, each stored as it completes (:class:`~lmprog.optimize.mipro_store.
MiproStore`) so that a killed run resumes where it stopped and several workers share one study.

The steps that call the LM say so by their names and are called in this order by
:meth:`MIPRO.run <lmprog.optimize.mipro.MIPRO.run>`: :meth:`MiproRun.ground` (demo sets and the
data summary), :meth:`MiproRun.baseline` (the original program, fully evaluated), then per round
:meth:`MiproRun.propose_round` (instruction candidates) and :meth:`MiproRun.search_round`
(minibatch trials and the full evaluations they make due). Each step first reads what the store
holds and calls the LM only for what is missing; reads never call the LM.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lmprog.errors import BudgetExceededError
from lmprog.optimize._base import OptimizationResult, Task
from lmprog.optimize.balance import is_collapsed, label_counts
from lmprog.optimize.bootstrap import BootstrapFewShot
from lmprog.optimize.demos import sample_labeled
from lmprog.optimize.mipro_config import MiproConfig
from lmprog.optimize.mipro_plan import MiproPlan
from lmprog.optimize.mipro_result import build_result
from lmprog.optimize.mipro_store import BASELINE, DemoSets, FullEvaluation, MiproStore
from lmprog.optimize.mipro_trials import RoundSearch, prompt_tokens
from lmprog.optimize.propose import GroundedProposer
from lmprog.optimize.search import Space, config_from_attrs, instruction_scores, minibatch_means
from lmprog.promptfile import DemoPool

if TYPE_CHECKING:
    import optuna

__all__ = ["Grounding", "MiproRun"]

logger = logging.getLogger("lmprog.optimize.mipro")


@dataclass(frozen=True)
class Grounding:
    """What every round's proposals and search build on: the demo sets, the pools of the
    retrieved demo sets and the data summary ("" when the run proposes no instruction)."""

    demo_sets: DemoSets
    summary: str
    pools: dict[str, DemoPool] = field(default_factory=dict)


class MiproRun:
    """One MIPRO run over ``task``: its settings, store and proposer are fixed when it is made."""

    def __init__(
        self,
        config: MiproConfig,
        bootstrapper: BootstrapFewShot,
        task: Task,
        store: MiproStore,
        storage: optuna.storages.BaseStorage,
        ids: Sequence[str],
        proposer: GroundedProposer,
    ) -> None:
        self.config = config
        self.bootstrapper = bootstrapper
        self.task = task
        self.store = store
        self.ids = list(ids)
        self.proposer = proposer
        self.spaces: dict[int, Space] = {}
        self.search = RoundSearch(config, task, storage, store.name)

    def use_config(self, config: MiproConfig) -> None:
        """Continue under ``config`` (a plan made after the baseline, see ``plan_for_cost``)."""
        self.config = config
        self.search.config = config

    def baseline_record(self) -> FullEvaluation | None:
        """The baseline's stored full evaluation, once made."""
        return next((e for e in self.store.full_evaluations() if e.round == BASELINE), None)

    # -- steps -----------------------------------------------------------------------------------
    def ground(self) -> Grounding:
        """The demo sets (bootstrapped: LM calls), the retrieved demo sets' pools (no call) and
        the data summary (an LM call, made only when instructions are proposed), each read from
        the store when a run made it before, else made and stored."""
        demo_sets = self.store.demo_sets()
        if demo_sets is None:
            demo_sets = self._bootstrap_demo_sets()
            self.store.put_demo_sets(demo_sets)
        pools = self.store.pools()
        if pools is None:
            pools = self._pools()
            self.store.put_pools(pools)
        if self.config.num_instructions <= 1:
            return Grounding(demo_sets, "", pools)
        summary = self.store.data_summary()
        if summary is None:
            summary = self.proposer.summarize(self.task.trainset)
            self.store.put_data_summary(summary)
        return Grounding(demo_sets, summary, pools)

    def baseline(self) -> None:
        """Fully evaluate the original program (original instructions, no demos): round -1."""
        functions = self.task.functions
        space = Space(
            tuple(functions),
            tuple(self.ids),
            {fid: [fn.signature.instruction] for fn, fid in zip(functions, self.ids, strict=True)},
            {fid: [[]] for fid in self.ids},
        )
        self.spaces[BASELINE] = space
        if "baseline" in self.store.due_done():
            return
        self._full_eval(BASELINE, space, {fid: (0, 0) for fid in self.ids}, "baseline", 0)

    def propose_round(self, r: int, grounding: Grounding) -> Space:
        """Round ``r``'s candidates: its instructions (from the store, else proposed: LM calls)
        with the demo sets. Rounds are proposed in order: each sees the earlier ones' scores."""
        candidates = self.store.instructions(r)
        if candidates is None:
            candidates = self._propose(r, grounding)
            self.store.put_instructions(r, candidates)
        space = Space(
            tuple(self.task.functions),
            tuple(self.ids),
            {fid: list(candidates[fid]) for fid in self.ids},
            {fid: grounding.demo_sets[fid] for fid in self.ids},
            {fid: grounding.pools[fid] for fid in self.ids if fid in grounding.pools},
        )
        self.spaces[r] = space
        return space

    def search_round(self, r: int, space: Space) -> None:
        """Run round ``r``'s trials until its quota, shared by every worker on the study, is used
        (re-running orphaned trials first, so that a resumed run evaluates what the uninterrupted
        one would have), with the full evaluations that become due on the way and at the end."""
        # enqueued again on resume, as a kill may have cut the enqueueing short
        self.search.enqueue_new_candidates(r, space, self._history(r))
        self.search.adopt_orphans(r, space)
        self._full_evals_due(r)
        quota = self.config.trials_in_round(r)
        while self.search.live_count(r) < quota:
            self._check_trial_budget()
            if not self.search.run_next_trial(r, space, quota):
                break  # another worker took the last one
            self._full_evals_due(r)
        self.search.wait_for_others(r, space)
        self._full_evals_due(r, end=True)

    def result(self, stopped: str | None, plan: MiproPlan) -> OptimizationResult:
        """The run's result from what the store and the studies hold."""
        rounds = [r for r in sorted(self.spaces) if r != BASELINE]
        result = build_result(
            functions=self.task.functions,
            ids=self.ids,
            valset_size=len(self.task.valset),
            seed=self.task.seed,
            evaluations=self.store.full_evaluations(),
            spaces=self.spaces,
            studies={r: self.search.study(r) for r in rounds},
            study=self.store.name,
            estimated_calls=plan.calls,
            rejected_proposals=self.proposer.rejections,
            cost_aware=self.config.cost_aware,
            stopped=stopped,
            plan=plan,
        )
        demo_sets = self.store.demo_sets()
        if self.config.num_demo_sets > 0 and demo_sets:  # made (not cut short by a budget cap)
            functions = self.task.functions
            counts = {
                fn: len(demo_sets.get(fid, [[]])) - 1 for fn, fid in zip(functions, self.ids, strict=True)
            }
            result.warnings = self.bootstrapper.demo_warnings(self.task, counts, None, "mipro", stopped)
        if plan.note:
            result.warnings.append(plan.note)
        if not any(c.label != "baseline" for c in result.candidates):
            why = "the search had none to evaluate (no demo set and no instruction besides the original)"
            if stopped == "max_calls":
                why = (
                    f"the budget (max_calls) ran out first (the plan estimated {plan.calls} calls at one "
                    "request per lm_function call; retries after unparsable replies cost more)"
                )
            elif stopped:
                why = f"the budget ({stopped}) ran out first"
            message = (
                "mipro: no configuration besides the baseline was evaluated on the validation set: "
                f"{why}; the result is the unoptimized program"
            )
            logger.warning("%s", message)
            result.warnings.append(message)
        return result

    # -- grounding and proposals -------------------------------------------------------------------
    def _bootstrap_demo_sets(self) -> DemoSets:
        task, boot = self.task, self.bootstrapper
        sets: DemoSets = {fid: [[]] for fid in self.ids}
        for k in range(self.config.num_demo_sets):
            rng = random.Random(task.seed * 1009 + k)
            order = list(range(len(task.trainset)))
            rng.shuffle(order)
            found = boot.bootstrap(task, order, max_runs=self.config.bootstrap_runs)
            if found.budget_error is not None:  # never store a truncated demo set as complete
                raise found.budget_error
            states = boot.states_from(task, found, rng)
            for fn, fid in zip(task.functions, self.ids, strict=True):
                demos = [dict(d) for d in states[fn].demos]
                if demos and demos not in sets[fid]:
                    sets[fid].append(demos)
        return sets

    def _pools(self) -> dict[str, DemoPool]:
        """Per function with labeled training examples, the pool of its retrieved demo set: at
        most ``max_pool`` of them (a seeded sample, label-balanced), compared on all its inputs."""
        k = self.config.retrieved_demos or 0
        if k <= 0:
            return {}
        rng = random.Random(f"{self.task.seed}-pool")
        pools = {}
        for fn, fid in zip(self.task.functions, self.ids, strict=True):
            demos = sample_labeled(fn, self.task.trainset, self.config.max_pool, rng)
            if demos:
                pools[fid] = DemoPool(k=k, demos=tuple(demos), fields=tuple(fn.signature.input_names))
        return pools

    def _propose(self, r: int, grounding: Grounding) -> dict[str, list[str]]:
        config, task = self.config, self.task
        per_round = -(-(config.num_instructions - 1) // config.rounds)  # ceiling division
        out: dict[str, list[str]] = {}
        history = self._history(r)
        for fn, fid in zip(task.functions, self.ids, strict=True):
            earlier = sorted(history.get(fid, {}).items(), key=lambda kv: -kv[1])
            keep = [text for text, _ in earlier if text != fn.signature.instruction][:2]
            sets = grounding.demo_sets[fid]
            new = self.proposer.propose(
                fn,
                per_round,
                data_summary=grounding.summary,
                demos=sets[1] if len(sets) > 1 else [],
                history=[(text, score) for text, score in earlier],
                round=r,
                exclude=keep,
            )
            out[fid] = [fn.signature.instruction, *keep, *(p.instruction for p in new)]
        return out

    def _history(self, r: int) -> dict[str, dict[str, float]]:
        """Scores of the instructions of rounds before ``r`` (the mean minibatch score of each, from
        the rounds' trials) and of the original instructions (the baseline's full evaluation)."""
        scores: dict[str, dict[str, float]] = {fid: {} for fid in self.ids}
        for prev in range(r):
            for fid, d in instruction_scores(self.search.study(prev), self.spaces[prev]).items():
                scores[fid].update(d)
        for entry in self.store.full_evaluations():
            if entry.round == BASELINE:
                for fn, fid in zip(self.task.functions, self.ids, strict=True):
                    scores[fid].setdefault(fn.signature.instruction, entry.score)
        return scores

    # -- budget and full evaluations ---------------------------------------------------------------
    def _check_trial_budget(self) -> None:
        cap = self.task.budget.max_trials
        if cap is None:
            return
        done = sum(self.search.complete_count(r) for r in self.spaces if r != BASELINE)
        if done >= cap:
            raise BudgetExceededError("max_trials", cap, done)

    def _full_evals_due(self, r: int, end: bool = False) -> None:
        """The full evaluations due after every ``full_eval_every`` finished trials (and at the end
        of the round), each over the trials finished by then; each done once and stored, so that
        a resumed run catches up on the ones a kill skipped, in order."""
        every = self.config.full_eval_every
        due: list[tuple[str, int | None]] = [
            (f"r{r}-{k}", k) for k in range(every, self.search.complete_count(r) + 1, every)
        ]
        if end:
            due.append((f"r{r}-end", None))
        for name, upto in due:
            if name not in self.store.due_done():
                self._full_eval_best(r, name, upto)

    def _full_eval_best(self, r: int, due: str, upto: int | None) -> None:
        """Fully evaluate the best configuration by mean minibatch score (over the first ``upto``
        finished trials) that has no full evaluation yet; with none left, mark ``due`` done."""
        study = self.search.study(r)
        means = minibatch_means(study, upto=upto)
        evaluated = {e.key for e in self.store.full_evaluations()}
        ranked = sorted((m for m in means.items() if m[0] not in evaluated), key=lambda kv: -kv[1][0])
        if not ranked:
            self.store.mark_due_done(due)
            return
        key = ranked[0][0]
        config = next(
            config_from_attrs(t.user_attrs["config"])
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("config_key") == key
        )
        self._full_eval(r, self.spaces[r], config, due, upto)

    def _full_eval(
        self, r: int, space: Space, config: Mapping[str, tuple[int, int]], due: str, step: int | None
    ) -> None:
        res = self.task.evaluate(self.task.valset, space.states(config))
        counts, expected = label_counts(self.task.functions, res)
        record = FullEvaluation(
            space.key(config),
            r,
            dict(config),
            res.score,
            prompt_tokens(res),
            due,
            step,
            label_counts=counts,
            collapsed=is_collapsed(counts, expected),
            cost=res.usage.cost,
            requests=res.usage.requests,
        )
        self.store.put_full_evaluation(record)  # one write: the evaluation and its due point,
        self.store.mark_due_done(due)  # and the point again, should another worker's record replace it
