"""MIPRO-style optimization: grounded instruction proposals x bootstrapped demo sets, searched with
optuna TPE on validation minibatches, with full evaluations of the most promising configurations.

Steps (each persisted in optuna storage as it completes, so a killed run resumes where it stopped
and, with the response cache, repeats no LM call):

1. demo sets: ``num_demo_sets`` bootstrapped sets per lm_function, plus the empty set;
2. a data summary (computed statistics + the proposer's description of a sample);
3. the baseline: the original program, fully evaluated;
4. rounds of search: each round the proposer writes new instructions per function, seeing the
   program listing from ``analyze()``, the function, the data summary, demos, a random tip and the
   scores of earlier rounds' instructions (so later rounds learn from earlier ones); a TPE study
   searches the round's instruction x demo-set space on minibatches; every ``full_eval_every``
   trials and at the end of a round the best configuration by mean minibatch score is evaluated on
   the whole validation set;
5. the result is the best configuration by full evaluation (the baseline included).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lmprog.errors import BudgetExceededError, LMError
from lmprog.optimize._base import OptimizationResult, Optimizer, Task
from lmprog.optimize.bootstrap import BootstrapFewShot
from lmprog.optimize.identity import data_fingerprint, digest, models_identity, score_context
from lmprog.optimize.mipro_result import BASELINE, build_result
from lmprog.optimize.propose import GroundedProposer
from lmprog.optimize.search import (
    OWNER_ATTR,
    Space,
    config_from_attrs,
    instruction_scores,
    is_orphan,
    live_count,
    minibatch_means,
    new_owner,
    open_storage,
    optuna_state,
    rank_among_live,
)
from lmprog.promptfile import function_id

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger("lmprog.optimize.mipro")

_POLL_SECONDS = 0.2  # how often a worker looks whether the others finished the round


class MIPRO(Optimizer):
    """Source-grounded instruction proposals + Bayesian search over instructions and demos.

    ``num_instructions``: instruction candidates per function over all rounds (the original
    included); ``num_demo_sets``: bootstrapped demo sets per function (plus the empty set);
    ``num_trials``: minibatch trials over all rounds; ``rounds``: proposal rounds;
    ``proposer_lm``: the LM writing proposals (default: the task LM); ``storage``: an optuna
    storage URL or SQLite path (default ``.lmprog/optuna.db``); ``cost_aware``: also minimize
    prompt tokens (multi-objective) and report the Pareto front. Several workers may run one
    study (same storage and settings): ``num_trials`` is their total. A trial left RUNNING by a
    killed run is re-run by the next run (at once when its process is known dead on this host,
    else after ``stale_after`` seconds).
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
    ) -> None:
        self.num_instructions = max(1, num_instructions)
        self.num_demo_sets = max(0, num_demo_sets)
        self.num_trials = max(1, num_trials)
        self.minibatch_size = max(1, minibatch_size)
        self.full_eval_every = max(1, full_eval_every)
        self.rounds = max(1, rounds)
        self.proposer_lm = proposer_lm
        self.storage = storage
        self.study_name = study_name
        self.cost_aware = cost_aware
        self.listing_tokens = listing_tokens
        self.tips = tips
        self.stale_after = stale_after
        self.bootstrapper = BootstrapFewShot(
            max_bootstrapped_demos=max_bootstrapped_demos,
            max_labeled_demos=max_labeled_demos,
            metric_threshold=metric_threshold,
        )

    # -- planning --------------------------------------------------------------------------------
    def estimate_calls(self, task: Task) -> int:
        """An upper estimate of the LM calls of a fresh run (cache hits make the real count lower)."""
        per_example = max(1, len(task.functions))
        val = max(1, len(task.valset))
        batch = min(self.minibatch_size, val)
        boot = self.num_demo_sets * min(len(task.trainset), 2 * max(task.threads, 8)) * per_example
        proposals = 1 + len(task.functions) * (self.num_instructions - 1) * 2
        trials = self.num_trials * batch * per_example
        full = (1 + math.ceil(self.num_trials / self.full_eval_every) + self.rounds) * val * per_example
        return boot + proposals + trials + full

    def _study_key(self, task: Task) -> str:
        if self.study_name:
            return self.study_name
        bootstrapper = self.bootstrapper
        ident = {
            # everything a score or a proposal depends on: a stored study is reused only when all
            # of it is the same (the metric, the models, the program, the data, the config)
            "context": score_context(task),
            "proposer": models_identity([], {"proposer": self.proposer_lm})["proposer"],
            "functions": [function_id(f) + ":" + f.signature_hash for f in task.functions],
            "train": data_fingerprint(task.trainset),
            "val": data_fingerprint(task.valset),
            "seed": task.seed,
            "config": [
                self.num_instructions,
                self.num_demo_sets,
                self.num_trials,
                self.minibatch_size,
                self.full_eval_every,
                self.rounds,
                self.cost_aware,
                self.listing_tokens,
                self.tips,
                bootstrapper.max_bootstrapped_demos,
                bootstrapper.max_labeled_demos,
                bootstrapper.max_rounds,
                bootstrapper.metric_threshold,
                bootstrapper.temperature,
            ],
        }
        return "mipro-" + digest(ident)

    # -- the run -----------------------------------------------------------------------------------
    def run(self, task: Task) -> OptimizationResult:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(self.storage)
        key = self._study_key(task)
        meta = optuna.create_study(study_name=key, storage=storage, load_if_exists=True)
        ids = [function_id(fn) for fn in task.functions]
        estimate = self.estimate_calls(task)
        logger.info("mipro: study %s", key)
        run = _Run(self, task, meta, ids, storage)
        stopped = None
        try:
            run.prepare()
            run.baseline()
            for r in range(self.rounds):
                run.search_round(r)
        except BudgetExceededError as e:
            stopped = e.what
            logger.warning("mipro: budget exhausted (%s); returning the best result so far", e.what)
        return run.result(stopped, estimate, key)


class _Run:
    """The state of one MIPRO run, read from and written to its optuna studies."""

    def __init__(
        self, opt: MIPRO, task: Task, meta: optuna.Study, ids: list[str], storage: optuna.storages.BaseStorage
    ) -> None:
        self.opt = opt
        self.storage = storage
        self.task = task
        self.meta = meta
        self.ids = ids
        self.demo_sets: dict[str, list[list[dict[str, Any]]]] = {}
        self.summary = ""
        self.spaces: dict[int, Space] = {}
        self.trials_done = 0
        self.proposer: GroundedProposer | None = None
        self._studies: dict[int, optuna.Study] = {}
        self.owner = new_owner()

    # persisted attributes --------------------------------------------------------------------
    def _attr(self, name: str) -> Any:
        return self.meta.user_attrs.get(name)

    def _set(self, name: str, value: Any) -> None:
        self.meta.set_user_attr(name, value)

    @property
    def full_evals(self) -> dict[str, dict[str, Any]]:
        return dict(self._attr("full_evals") or {})

    def _record_full(
        self, space_round: int, config: Mapping[str, tuple[int, int]], score: float, tokens: float
    ) -> None:
        space = self.spaces[space_round]
        evals = self.full_evals
        evals[space.key(config)] = {
            "round": space_round,
            "config": {k: list(v) for k, v in config.items()},
            "score": score,
            "prompt_tokens": tokens,
        }
        self._set("full_evals", evals)

    # steps -------------------------------------------------------------------------------------
    def prepare(self) -> None:
        task, opt = self.task, self.opt
        listing = self._listing()
        self.proposer = GroundedProposer(listing, lm=opt.proposer_lm, seed=task.seed, use_tips=opt.tips)
        stored = self._attr("demo_sets")
        if stored is None:
            stored = self._bootstrap_demo_sets()
            self._set("demo_sets", stored)
        self.demo_sets = stored
        summary = self._attr("data_summary")
        if summary is None:
            summary = self.proposer.summarize(task.trainset)
            self._set("data_summary", summary)
        self.summary = summary

    def _listing(self) -> str:
        try:
            from lmprog.source import analyze

            return analyze(self.task.program).render(max_tokens=self.opt.listing_tokens)
        except Exception as e:  # analysis is grounding, not a requirement
            logger.warning("mipro: program analysis failed (%s); proposing without the listing", e)
            return "\n\n".join(
                f"{fn.signature.qualname}: {fn.signature.instruction}" for fn in self.task.functions
            )

    def _bootstrap_demo_sets(self) -> dict[str, list[list[dict[str, Any]]]]:
        task, boot = self.task, self.opt.bootstrapper
        sets: dict[str, list[list[dict[str, Any]]]] = {fid: [[]] for fid in self.ids}
        for k in range(self.opt.num_demo_sets):
            rng = random.Random(task.seed * 1009 + k)
            order = list(range(len(task.trainset)))
            rng.shuffle(order)
            found = boot.bootstrap(task, order)
            if found.budget_error is not None:  # never persist a truncated demo set as complete
                raise found.budget_error
            states = boot.states_from(task, found, rng)
            for fn, fid in zip(task.functions, self.ids, strict=True):
                demos = [dict(d) for d in states[fn].demos]
                if demos and demos not in sets[fid]:
                    sets[fid].append(demos)
        return sets

    def baseline(self) -> None:
        """Fully evaluate the original program (original instructions, no demos): round -1."""
        space = Space(
            tuple(self.task.functions),
            tuple(self.ids),
            {fid: [fn.signature.instruction] for fn, fid in zip(self.task.functions, self.ids, strict=True)},
            {fid: [[]] for fid in self.ids},
        )
        self.spaces[BASELINE] = space
        config = {fid: (0, 0) for fid in self.ids}
        if space.key(config) in self.full_evals:
            return
        res = self.task.evaluate(self.task.valset, space.states(config))
        self._record_full(BASELINE, config, res.score, _tokens(res))

    def _space(self, r: int) -> Space:
        if r in self.spaces:
            return self.spaces[r]
        name = f"instructions_r{r}"
        stored = self._attr(name)
        if stored is None:
            stored = self._propose(r)
            self._set(name, stored)
        space = Space(
            tuple(self.task.functions),
            tuple(self.ids),
            {fid: list(v) for fid, v in stored.items()},
            {fid: self.demo_sets[fid] for fid in self.ids},
        )
        self.spaces[r] = space
        return space

    def _propose(self, r: int) -> dict[str, list[str]]:
        assert self.proposer is not None
        opt, task = self.opt, self.task
        per_round = math.ceil((opt.num_instructions - 1) / opt.rounds)
        out: dict[str, list[str]] = {}
        history = self._history(r)
        for fn, fid in zip(task.functions, self.ids, strict=True):
            earlier = sorted(history.get(fid, {}).items(), key=lambda kv: -kv[1])
            keep = [text for text, _ in earlier if text != fn.signature.instruction][:2]
            demos = self.demo_sets[fid][1] if len(self.demo_sets[fid]) > 1 else []
            new = self.proposer.propose(
                fn,
                per_round,
                data_summary=self.summary,
                demos=demos,
                history=[(text, score) for text, score in earlier],
                round=r,
                exclude=keep,
            )
            out[fid] = [fn.signature.instruction, *keep, *(p.instruction for p in new)]
        return out

    def _history(self, r: int) -> dict[str, dict[str, float]]:
        """Scores of the instructions of rounds before ``r``: mean minibatch score per instruction."""
        scores: dict[str, dict[str, float]] = {fid: {} for fid in self.ids}
        for prev in range(r):
            study = self.study_of(prev)  # instruction scores of earlier rounds, from their trials
            for fid, d in instruction_scores(study, self._space(prev)).items():
                scores[fid].update(d)
        for entry in self.full_evals.values():
            if int(entry["round"]) == BASELINE:
                for fn, fid in zip(self.task.functions, self.ids, strict=True):
                    scores[fid].setdefault(fn.signature.instruction, float(entry["score"]))
        return scores

    def study_of(self, r: int) -> optuna.Study:
        """Round ``r``'s study, loaded (or created) once per run: its sampler keeps its state."""
        if r not in self._studies:
            self._studies[r] = self._open_study(r)
        return self._studies[r]

    def _open_study(self, r: int) -> optuna.Study:
        import optuna

        sampler = self._sampler(r, 0)
        kwargs: dict[str, Any] = (
            {"directions": ["maximize", "minimize"]} if self.opt.cost_aware else {"direction": "maximize"}
        )
        return optuna.create_study(
            study_name=f"{self.meta.study_name}-r{r}",
            storage=self.storage,
            sampler=sampler,
            load_if_exists=True,
            **kwargs,
        )

    def _trials_for(self, r: int) -> int:
        base, extra = divmod(self.opt.num_trials, self.opt.rounds)
        return base + (1 if r < extra else 0)

    def search_round(self, r: int) -> None:
        """Run round ``r``'s trials until the round's quota is used, shared by every worker on
        the study (a worker never starts a trial once the quota is reached); re-run orphaned
        trials first, so that a resumed run evaluates what the uninterrupted one would have."""
        space = self._space(r)
        study = self.study_of(r)
        self._enqueue_new_candidates(r, space, study)  # again on resume: a kill may have cut it short
        self._adopt_orphans(r, space, study)
        self._full_evals_due(r, study)
        budget = self.task.budget
        quota = self._trials_for(r)
        while live_count(study) < quota:
            if budget.max_trials is not None and self.total_trials() >= budget.max_trials:
                raise BudgetExceededError("max_trials", budget.max_trials, self.total_trials())
            # a sampler seeded by the trial's place: the same suggestions after a resume
            study.sampler = self._sampler(r, len(study.get_trials(deepcopy=False)))
            trial = study.ask()
            trial.set_user_attr(OWNER_ATTR, self.owner)
            if rank_among_live(study, trial.number) >= quota:  # another worker took the last one
                trial.set_user_attr("lmprog_skipped", "the round's trial quota was reached")
                study.tell(trial, state=optuna_state("FAIL"))
                break
            self._run_trial(r, space, study, trial)
            self._full_evals_due(r, study)
        self._wait_for_others(r, space, study)
        self._full_evals_due(r, study, end=True)

    def _run_trial(self, r: int, space: Space, study: optuna.Study, trial: optuna.trial.Trial) -> None:
        config = space.suggest(trial)
        trial.set_user_attr("config", {k: list(v) for k, v in config.items()})
        trial.set_user_attr("config_key", space.key(config))
        batch = self._minibatch(r, trial.number)
        try:
            res = self.task.evaluate(batch, space.states(config))
        except (BudgetExceededError, LMError) as e:
            # no score, and not the configuration's fault: left RUNNING, marked interrupted, so the
            # next run re-runs it under the same number (as the uninterrupted run would have)
            trial.set_user_attr("lmprog_interrupted", type(e).__name__)
            raise
        values: Any = [res.score, _tokens(res)] if self.opt.cost_aware else res.score
        study.tell(trial, values)

    def _adopt_orphans(self, r: int, space: Space, study: optuna.Study) -> None:
        """Re-run the RUNNING trials that a killed or interrupted run left, in trial order."""
        import optuna

        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        for frozen in sorted(running, key=lambda t: t.number):
            if not (is_orphan(frozen, self.owner, self.opt.stale_after) or self._interrupted(frozen)):
                continue
            logger.info("mipro: re-running trial %d of round %d, left unfinished", frozen.number, r)
            trial = optuna.trial.Trial(study, frozen._trial_id)
            trial.set_user_attr(OWNER_ATTR, self.owner)
            study.sampler = self._sampler(r, frozen.number)
            self._run_trial(r, space, study, trial)

    def _interrupted(self, frozen: optuna.trial.FrozenTrial) -> bool:
        owner = frozen.user_attrs.get(OWNER_ATTR) or {}
        return bool(frozen.user_attrs.get("lmprog_interrupted")) and owner.get("run") != self.owner["run"]

    def _wait_for_others(self, r: int, space: Space, study: optuna.Study) -> None:
        """Wait for other workers' trials of this round, so every worker starts the next round
        from the same scores (re-running those whose worker died)."""
        import optuna

        while True:
            running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if not running:
                return
            self._adopt_orphans(r, space, study)
            time.sleep(_POLL_SECONDS)

    def _sampler(self, r: int, position: int) -> optuna.samplers.BaseSampler:
        import optuna

        trials = self._trials_for(r)
        seed = int(digest([self.task.seed, r, position], size=8), 16)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, n_startup_trials=max(2, min(5, trials // 2))
        )

    def _enqueue_new_candidates(self, r: int, space: Space, study: optuna.Study) -> None:
        """Try every new instruction of the round once before TPE takes over, each with a random
        demo set, so that every proposal gets a score (which the next round's proposer sees)."""
        rng = random.Random(f"{self.task.seed}-enqueue-{r}")
        seen = self._history(r)
        fresh = {
            fid: [
                i for i, text in enumerate(space.instructions[fid]) if i > 0 and text not in seen.get(fid, {})
            ]
            for fid in space.ids
        }
        for j in range(max((len(v) for v in fresh.values()), default=0)):
            params: dict[str, int] = {}
            for i, fid in enumerate(space.ids):
                if fresh[fid]:
                    params[f"f{i}_instruction"] = fresh[fid][j % len(fresh[fid])]
                if len(space.demo_sets[fid]) > 1:
                    params[f"f{i}_demos"] = rng.randrange(len(space.demo_sets[fid]))
            study.enqueue_trial(params, skip_if_exists=True)  # idempotent: safe to repeat on resume

    def total_trials(self) -> int:
        import optuna

        total = 0
        for r in range(self.opt.rounds):
            if r in self.spaces:
                total += len(
                    self.study_of(r).get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                )
        return total

    def _minibatch(self, r: int, number: int) -> list[Any]:
        val = self.task.valset
        size = min(self.opt.minibatch_size, len(val))
        rng = random.Random(f"{self.task.seed}-{r}-{number}")
        return [val[i] for i in sorted(rng.sample(range(len(val)), size))]

    def _full_evals_due(self, r: int, study: optuna.Study, end: bool = False) -> None:
        """The full evaluations due after every ``full_eval_every`` finished trials (and at the end
        of the round), each over the trials finished by then; done once, recorded in storage, so
        that a resumed run catches up on the ones a kill skipped, in order."""
        import optuna

        n_done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        every = self.opt.full_eval_every
        due: list[tuple[str, int | None]] = [(f"r{r}-{k}", k) for k in range(every, n_done + 1, every)]
        if end:
            due.append((f"r{r}-end", None))
        for name, upto in due:
            if name in (self._attr("full_evals_done") or []):
                continue
            self._full_eval_best(r, study, upto)
            done = list(self._attr("full_evals_done") or [])
            self._set("full_evals_done", [*done, name])

    def _full_eval_best(self, r: int, study: optuna.Study, upto: int | None = None) -> None:
        space = self.spaces[r]
        means = minibatch_means(study, upto=upto)
        evaluated = self.full_evals
        configs = {
            t.user_attrs["config_key"]: config_from_attrs(t.user_attrs["config"])
            for t in study.get_trials(deepcopy=False)
            if "config_key" in t.user_attrs
        }
        ranked = sorted((m for m in means.items() if m[0] not in evaluated), key=lambda kv: -kv[1][0])
        if not ranked:
            return
        key = ranked[0][0]
        config = configs[key]
        res = self.task.evaluate(self.task.valset, space.states(config))
        self._record_full(r, config, res.score, _tokens(res))

    def result(self, stopped: str | None, estimate: int, key: str) -> OptimizationResult:
        return build_result(self, stopped, estimate, key)


def _tokens(res: Any) -> float:
    n = max(1, len(res.results))
    return float(res.usage.prompt_tokens) / n
