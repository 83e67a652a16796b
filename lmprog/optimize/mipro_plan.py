"""How a MIPRO run spends a call budget, planned before its first call.

With ``Budget(max_calls=N)`` the run's phases (the baseline, the bootstrapped demo sets, the data
summary and instruction proposals, the minibatch trials, the full evaluations) are sized up front
so that their upper estimates add up to at most ``N`` and the run ends with at least one
configuration besides the baseline evaluated on the whole validation set. When the settings do
not fit, they are scaled down in this order, each step only as far as needed:

1. full evaluations only at the end of each round (``full_eval_every`` above the round's trials);
2. one round;
3. fewer training runs per bootstrapped demo set, halved down to none (a demo set then holds
   labeled training examples only, which costs no call; demo sets of retrieved demos cost none
   either);
4. minibatches halved down to 4 examples;
5. fewer instruction proposals, down to none (then no data summary is written either);
6. fewer trials, down to one;
7. minibatches halved down to one example.

When even that smallest plan does not fit, the run stops before its first call with a
``UsageError`` saying what the smallest plan needs. The plan is a function of the settings, the
budget and the sizes of the task only, so the same command always makes the same plan (and a
killed run resumes the same study); the planned settings are what the study key records.

With ``Budget(max_cost=...)`` the price of a call is unknown before the first one, so the phases
after the baseline are planned again once the baseline is evaluated (:func:`plan_for_cost`):
each later call is priced from the baseline's measured price per request: a trial's or a full
evaluation's at :data:`COST_MARGIN` times it (its prompt carries demos), a proposal's by the
length of the program listing it shows; the same steps fit the plan to what ``max_cost`` affords. The
price comes from the baseline's stored record, so a resumed run makes the same plan; when it is
unknown (a free model, or a baseline answered from the response cache) ``max_cost`` stays a hard
cap only. When even the smallest plan is beyond ``max_cost``, the run goes on with it and its
result warns that the cap may stop it.

Every estimate assumes one request per lm_function per program run; retries after unparsable
replies cost more, and the hard cap then stops the run (its result says so).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmprog.errors import UsageError
from lmprog.optimize._base import Task
from lmprog.optimize.mipro_config import MiproConfig
from lmprog.optimize.mipro_store import FullEvaluation

__all__ = ["COST_MARGIN", "MiproPlan", "plan_for_cost", "plan_run", "smallest_calls"]

#: instruction proposals drawn per accepted one at most (the proposer's ``attempts``)
PROPOSAL_ATTEMPTS = 3
#: a max_cost plan prices a call with demos at this many times the baseline's price per request
COST_MARGIN = 2.0
#: a proposal's prompt beyond the program listing (function, data summary, demos, history), in
#: tokens
_PROPOSAL_EXTRA_TOKENS = 500
#: step 4 halves minibatches down to this many examples; step 7 goes below it
_SMALL_MINIBATCH = 4


@dataclass(frozen=True)
class MiproPlan:
    """The sizes of a MIPRO run's phases and their estimated LM calls (upper estimates).

    ``config`` is the settings the run uses (the given ones, scaled down to fit ``max_calls``);
    ``phases`` the estimated calls per phase, in the order the run makes them; ``scaled`` what was
    scaled down to fit, one line per setting (empty when the settings fit as given).
    """

    max_calls: int | None
    config: MiproConfig
    phases: tuple[tuple[str, int], ...]
    scaled: tuple[str, ...] = ()
    #: the cost cap, and the price per request measured on the baseline (None: unknown)
    max_cost: float | None = None
    price: float | None = None
    #: what the plan could not fit (a warning of the result), else ""
    note: str = ""
    given: MiproConfig | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def calls(self) -> int:
        """The estimated LM calls of the whole plan."""
        return sum(n for _, n in self.phases)

    def describe(self) -> str:
        """One line: the phases with their calls, the total against the budget."""
        c = self.config
        runs = "until enough demos" if c.bootstrap_runs is None else f"<= {c.bootstrap_runs} runs each"
        parts = [
            f"{c.num_demo_sets} bootstrapped demo set(s) ({runs})",
            f"{c.num_instructions - 1} instruction proposal(s)",
            f"{c.num_trials} trial(s) of {c.minibatch_size} example(s)",
            f"{c.rounds} round(s)",
        ]
        calls = ", ".join(f"{name} {n}" for name, n in self.phases)
        cap = f" of max_calls {self.max_calls}" if self.max_calls is not None else ""
        line = f"{'; '.join(parts)}; estimated calls: {calls} = {self.calls}{cap}"
        if self.max_cost is not None:
            price = "unknown" if self.price is None else f"{self.price:.3g} per request"
            line += f"; max_cost {self.max_cost:g} (baseline price {price})"
        if self.scaled:
            line += f" (scaled down: {', '.join(self.scaled)})"
        return line

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return {
            "max_calls": self.max_calls,
            "calls": self.calls,
            "phases": dict(self.phases),
            "scaled": list(self.scaled),
            "num_demo_sets": c.num_demo_sets,
            "bootstrap_runs": c.bootstrap_runs,
            "num_instructions": c.num_instructions,
            "num_trials": c.num_trials,
            "minibatch_size": c.minibatch_size,
            "full_eval_every": c.full_eval_every,
            "rounds": c.rounds,
            "max_cost": self.max_cost,
            "price": self.price,
        }


def phases(config: MiproConfig, task: Task) -> tuple[tuple[str, int], ...]:
    """The estimated calls of each phase of a fresh run of ``task`` under ``config``."""
    per_run = max(1, len(task.functions))
    val = max(1, len(task.valset))
    runs = len(task.trainset) * config.bootstrapper().max_rounds
    if config.bootstrap_runs is not None:
        runs = min(runs, config.bootstrap_runs)
    if config.max_bootstrapped_demos <= 0:
        runs = 0
    per_round = -(-(config.num_instructions - 1) // config.rounds)
    proposals = config.rounds * per_round * len(task.functions) * PROPOSAL_ATTEMPTS
    batch = min(config.minibatch_size, val)
    full = sum(config.trials_in_round(r) // config.full_eval_every + 1 for r in range(config.rounds))
    return (
        ("baseline", val * per_run),
        ("bootstrap", config.num_demo_sets * runs * per_run),
        ("proposals", (1 if proposals else 0) + proposals),
        ("trials", config.num_trials * batch * per_run),
        ("full evaluations", full * val * per_run),
    )


def plan_run(config: MiproConfig, task: Task) -> MiproPlan:
    """The plan of a run of ``task`` under ``config`` within ``task.budget.max_calls``.

    Raises:
        UsageError: the budget is below the smallest plan (see the module docstring).
    """
    cap = task.budget.max_calls
    if cap is None:
        return MiproPlan(None, config, phases(config, task), given=config)
    fitted = _fit(config, task, lambda c: _total(c, task) <= cap)
    if _total(fitted, task) > cap:
        need = _total(fitted, task)
        raise UsageError(
            f"mipro: Budget(max_calls={cap}) is below the smallest plan for this task, {need} calls "
            f"({_phase_text(phases(fitted, task))}), with {len(task.valset)} validation example(s) "
            f"x {max(1, len(task.functions))} lm_function(s) per full evaluation: raise max_calls to "
            f"at least {need}, or give a smaller validation set"
        )
    return MiproPlan(cap, fitted, phases(fitted, task), _scaled(config, fitted), given=config)


def smallest_calls(config: MiproConfig, task: Task) -> int:
    """The estimated calls of the smallest plan of ``task`` under ``config``: the least
    ``max_calls`` :func:`plan_run` accepts."""
    return _total(_fit(config, task, lambda c: False), task)


def plan_for_cost(plan: MiproPlan, task: Task, baseline: FullEvaluation | None) -> MiproPlan:
    """``plan`` fitted to ``task.budget.max_cost`` too, once the baseline's cost is known (its
    stored full evaluation: what it spent at the provider); see the module docstring."""
    cap = task.budget.max_cost
    if cap is None:
        return plan
    if baseline is None or baseline.requests <= 0 or baseline.cost <= 0:
        return dataclasses.replace(plan, max_cost=cap)
    price = baseline.cost / baseline.requests
    per_request = max(1.0, baseline.prompt_tokens / max(1, len(task.functions)))

    def cost(c: MiproConfig) -> float:
        return sum(n * price * _weight(name, c, per_request) for name, n in phases(c, task)[1:])

    left = cap - baseline.cost
    fitted = _fit(plan.config, task, lambda c: cost(c) <= left)
    out = dataclasses.replace(
        plan,
        config=fitted,
        phases=phases(fitted, task),
        scaled=_scaled(plan.given or plan.config, fitted),
        max_cost=cap,
        price=price,
    )
    if cost(fitted) > left:
        out = dataclasses.replace(
            out,
            note=(
                f"mipro: max_cost {cap:g} is below the smallest plan at the baseline's price "
                f"({price:.3g} per request): the smallest plan needs about "
                f"{baseline.cost + cost(fitted):.3g}, so the cap may stop the run before it "
                "evaluates a candidate besides the baseline"
            ),
        )
    return out


def _weight(phase: str, config: MiproConfig, baseline_prompt: float) -> float:
    """The price of a call of ``phase`` in baseline calls: a proposal's prompt holds the program
    listing, a trial's or a full evaluation's holds demos (counted at :data:`COST_MARGIN`)."""
    if phase == "proposals":
        return max(COST_MARGIN, (config.listing_tokens + _PROPOSAL_EXTRA_TOKENS) / baseline_prompt)
    if phase in ("trials", "full evaluations"):
        return COST_MARGIN
    return 1.0


def _fit(config: MiproConfig, task: Task, fits: Callable[[MiproConfig], bool]) -> MiproConfig:
    """``config`` scaled down by the steps, in order, until it ``fits`` (or the smallest plan,
    when none does)."""
    for step in _STEPS:
        while not fits(config):
            smaller = step(config, task)
            if smaller is None:
                break
            config = smaller
        if fits(config):
            break
    return config


def _total(config: MiproConfig, task: Task) -> int:
    return sum(n for _, n in phases(config, task))


def _scaled(given: MiproConfig, fitted: MiproConfig) -> tuple[str, ...]:
    out = []
    for name in _SCALED_FIELDS:
        before, after = getattr(given, name), getattr(fitted, name)
        if before != after:
            out.append(f"{name} {'all' if before is None else before} -> {after}")
    return tuple(out)


def _phase_text(ph: tuple[tuple[str, int], ...]) -> str:
    return ", ".join(f"{name} {n}" for name, n in ph if n)


def _replace(config: MiproConfig, **changes: Any) -> MiproConfig:
    return dataclasses.replace(config, **changes)


def _evals_at_round_end(c: MiproConfig, task: Task) -> MiproConfig | None:
    longest = c.trials_in_round(0)
    return None if c.full_eval_every > longest else _replace(c, full_eval_every=longest + 1)


def _one_round(c: MiproConfig, task: Task) -> MiproConfig | None:
    if c.rounds <= 1:
        return None
    return _replace(c, rounds=1, full_eval_every=c.num_trials + 1)  # step 1 made it end-only


def _fewer_bootstrap_runs(c: MiproConfig, task: Task) -> MiproConfig | None:
    if c.num_demo_sets == 0 or c.max_bootstrapped_demos <= 0:
        return None
    runs = len(task.trainset) * c.bootstrapper().max_rounds
    current = runs if c.bootstrap_runs is None else min(runs, c.bootstrap_runs)
    if current <= 0:
        return None
    return _replace(c, bootstrap_runs=current // 2)


def _halve_minibatch(least: int) -> Any:
    def step(c: MiproConfig, task: Task) -> MiproConfig | None:
        size = min(c.minibatch_size, max(1, len(task.valset)))
        if size <= least:
            return None
        return _replace(c, minibatch_size=max(least, size // 2))

    return step


def _fewer_proposals(c: MiproConfig, task: Task) -> MiproConfig | None:
    return None if c.num_instructions <= 1 else _replace(c, num_instructions=c.num_instructions - 1)


def _fewer_trials(c: MiproConfig, task: Task) -> MiproConfig | None:
    if c.num_trials <= 1:
        return None
    return _replace(c, num_trials=c.num_trials - 1)


_STEPS = (
    _evals_at_round_end,
    _one_round,
    _fewer_bootstrap_runs,
    _halve_minibatch(_SMALL_MINIBATCH),
    _fewer_proposals,
    _fewer_trials,
    _halve_minibatch(1),
)

_SCALED_FIELDS = (
    "full_eval_every",
    "rounds",
    "bootstrap_runs",
    "minibatch_size",
    "num_instructions",
    "num_trials",
)
