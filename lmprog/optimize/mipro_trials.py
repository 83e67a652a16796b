"""The minibatch trials of MIPRO's search rounds: one optuna study per round, TPE samplers seeded
by a trial's place, and the rules that let several workers share a round's trial quota and let a
resumed run re-run what a killed one left unfinished.

A trial records its owner (host, process, run token) and its configuration; a RUNNING trial whose
owner is gone, or that an interrupted run left, is re-run under its own number with the sampler
of its place, so a resumed search evaluates what the uninterrupted one would have.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

from lmprog.errors import BudgetExceededError, LMError
from lmprog.optimize._base import Task
from lmprog.optimize.identity import digest
from lmprog.optimize.mipro_config import MiproConfig
from lmprog.optimize.quota import take_place
from lmprog.optimize.search import (
    OWNER_ATTR,
    Space,
    finished_elsewhere,
    is_orphan,
    live_count,
    new_owner,
    tell_once,
)

if TYPE_CHECKING:
    import optuna

    from lmprog.evaluate import EvaluationResult

logger = logging.getLogger("lmprog.optimize.mipro")

__all__ = ["RoundSearch", "prompt_tokens"]

_POLL_SECONDS = 0.2  # how often a worker looks whether the others finished the round


class RoundSearch:
    """The trials of every round of one run, in the studies ``{name}-r{round}`` of ``storage``."""

    def __init__(
        self, config: MiproConfig, task: Task, storage: optuna.storages.BaseStorage, name: str
    ) -> None:
        self.config = config
        self.task = task
        self.storage = storage
        self.name = name
        self.owner = new_owner()
        self._studies: dict[int, optuna.Study] = {}

    def study(self, r: int) -> optuna.Study:
        """Round ``r``'s study, loaded (or created) once per run: its sampler keeps its state."""
        if r not in self._studies:
            import optuna

            two = {"directions": ["maximize", "minimize"]}
            kwargs: dict[str, Any] = two if self.config.cost_aware else {"direction": "maximize"}
            self._studies[r] = optuna.create_study(
                study_name=f"{self.name}-r{r}",
                storage=self.storage,
                sampler=self._sampler(r, 0),
                load_if_exists=True,
                **kwargs,
            )
        return self._studies[r]

    def live_count(self, r: int) -> int:
        """Round ``r``'s trials started by any worker and not failed (COMPLETE or RUNNING)."""
        return live_count(self.study(r))

    def complete_count(self, r: int) -> int:
        import optuna

        return len(self.study(r).get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))

    def run_next_trial(self, r: int, space: Space, quota: int) -> bool:
        """Ask for round ``r``'s next trial and run it; False (nothing run) when other workers took
        the round's last places in the meantime (see :func:`~lmprog.optimize.quota.take_place`)."""
        study = self.study(r)
        # a sampler seeded by the trial's place: the same suggestions after a resume
        study.sampler = self._sampler(r, len(study.get_trials(deepcopy=False)))
        trial = take_place(study, self.storage, quota, self.owner)
        if trial is None:
            return False
        self._run(r, space, trial)
        return True

    def adopt_orphans(self, r: int, space: Space) -> None:
        """Re-run the RUNNING trials that a killed or interrupted run left, in trial order."""
        import optuna

        study = self.study(r)
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        for frozen in sorted(running, key=lambda t: t.number):
            if not (is_orphan(frozen, self.owner, self.config.stale_after) or self._interrupted(frozen)):
                continue
            logger.info("mipro: re-running trial %d of round %d, left unfinished", frozen.number, r)
            trial = optuna.trial.Trial(study, frozen._trial_id)
            trial.set_user_attr(OWNER_ATTR, self.owner)
            study.sampler = self._sampler(r, frozen.number)
            self._run(r, space, trial)

    def wait_for_others(self, r: int, space: Space) -> None:
        """Wait for other workers' trials of this round, so every worker starts the next round
        from the same scores (re-running those whose worker died)."""
        import optuna

        study = self.study(r)
        while study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            self.adopt_orphans(r, space)
            time.sleep(_POLL_SECONDS)

    def enqueue_new_candidates(self, r: int, space: Space, seen: dict[str, dict[str, float]]) -> None:
        """Try every new instruction of the round (one not scored in ``seen``) once before TPE
        takes over, and in the first round every non-empty demo set (the retrieved one included)
        once, paired in a seeded order, so that every proposal gets a score (which the next
        round's proposer sees) and a small budget's few trials never re-try the baseline.
        Idempotent: safe to repeat on resume."""
        rng = random.Random(f"{self.task.seed}-enqueue-{r}")
        fresh = {
            fid: [
                i for i, text in enumerate(space.instructions[fid]) if i > 0 and text not in seen.get(fid, {})
            ]
            for fid in space.ids
        }
        sets = {fid: list(range(1, space.demo_choices(fid))) for fid in space.ids}
        for fid in space.ids:
            rng.shuffle(sets[fid])
        count = max((len(v) for v in fresh.values()), default=0)
        if r == 0:
            count = max(count, max((len(v) for v in sets.values()), default=0))
        study = self.study(r)
        for j in range(count):
            params: dict[str, int] = {}
            for i, fid in enumerate(space.ids):
                if fresh[fid]:
                    params[f"f{i}_instruction"] = fresh[fid][j % len(fresh[fid])]
                if sets[fid]:
                    params[f"f{i}_demos"] = sets[fid][j % len(sets[fid])]
            study.enqueue_trial(params, skip_if_exists=True)

    # -- helpers ---------------------------------------------------------------------------------------
    def _run(self, r: int, space: Space, trial: optuna.trial.Trial) -> None:
        import optuna

        study = self.study(r)
        try:
            config = space.suggest(trial)
            trial.set_user_attr("config", {k: list(v) for k, v in config.items()})
            trial.set_user_attr("config_key", space.key(config))
        except optuna.exceptions.UpdateFinishedTrialError:
            # another worker popped the same enqueued trial and finished it first (see tell_once)
            logger.info("mipro: trial %d of round %d was finished by another worker", trial.number, r)
            return
        try:
            res = self.task.evaluate(self._minibatch(r, trial.number), space.states(config))
        except (BudgetExceededError, LMError) as e:
            # no score, and not the configuration's fault: left RUNNING, marked interrupted, so the
            # next run re-runs it under the same number (as the uninterrupted run would have)
            if not finished_elsewhere(study, trial):
                trial.set_user_attr("lmprog_interrupted", type(e).__name__)
            raise
        values: Any = [res.score, prompt_tokens(res)] if self.config.cost_aware else res.score
        tell_once(study, trial, values)

    def _interrupted(self, frozen: optuna.trial.FrozenTrial) -> bool:
        owner = frozen.user_attrs.get(OWNER_ATTR) or {}
        return bool(frozen.user_attrs.get("lmprog_interrupted")) and owner.get("run") != self.owner["run"]

    def _sampler(self, r: int, position: int) -> optuna.samplers.BaseSampler:
        import optuna

        trials = self.config.trials_in_round(r)
        seed = int(digest([self.task.seed, r, position], size=8), 16)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, n_startup_trials=max(2, min(5, trials // 2))
        )

    def _minibatch(self, r: int, number: int) -> list[Any]:
        val = self.task.valset
        size = min(self.config.minibatch_size, len(val))
        rng = random.Random(f"{self.task.seed}-{r}-{number}")
        return [val[i] for i in sorted(rng.sample(range(len(val)), size))]


def prompt_tokens(res: EvaluationResult) -> float:
    """The mean prompt tokens per example of an evaluation."""
    n = max(1, len(res.results))
    return float(res.usage.prompt_tokens) / n
