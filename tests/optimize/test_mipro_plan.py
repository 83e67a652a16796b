"""MIPRO under a call budget: the plan fits it, a run never exceeds it, a small budget still
evaluates a candidate besides the baseline, and a budget below the smallest plan is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import pytest

import lmprog
from lmprog import Budget, lm_function
from lmprog.errors import LMError, UsageError
from lmprog.optimize import Task, optimize
from lmprog.optimize.mipro import MIPRO, MiproConfig
from lmprog.optimize.mipro_plan import plan_run
from lmprog.testing import ScriptedLM

WORDS = {"billing": "money", "bug": "broken", "feature": "wish"}


@lm_function
def ticket_kind(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify the ticket."""


DATA = [
    {"ticket": f"{word} problem number {i}", "label": label}
    for i in range(12)
    for label, word in WORDS.items()
]
TRAIN, VAL = DATA[:20], DATA[20:32]  # 12 validation examples: the smallest plan needs 12 + 12 + 1

# the old benchmark's MIPRO settings (TREC at 48 calls returned the unoptimized program)
SETTINGS: dict[str, Any] = dict(
    num_instructions=3,
    num_demo_sets=3,
    num_trials=4,
    minibatch_size=8,
    full_eval_every=2,
    rounds=1,
    max_bootstrapped_demos=3,
    max_labeled_demos=3,
    threads=1,
)


def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    return prediction == example["label"]


class Model:
    """Answers "billing" unless a demo shows the keyword of the ticket (the last demo wins):
    every demo set beats the baseline's one label in three, so the search has signal. Its
    answers depend on the messages alone (a resumed run gets the same ones); it counts requests."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, messages: list[dict[str, str]]) -> str:
        self.requests += 1
        system, user = messages[0]["content"], messages[-1]["content"]
        if system.startswith("Describe this data set"):
            return "Short support tickets."
        if system.startswith("Write a better instruction"):
            return f"Name the kind of the support ticket, variant {len(user)}."  # from the messages
        answer = "billing"
        demos = "\n".join(m["content"] for m in messages[1:-1])
        for label, word in WORDS.items():
            if word in user and label in demos:
                answer = label
        return answer


def run(tmp_path: Path, budget: Budget | None, model: Any = None, **kwargs: Any) -> lmprog.OptimizationResult:
    lm = ScriptedLM(model or Model(), cache=True)
    opts = {**SETTINGS, **kwargs}
    with lmprog.context(lm=lm, load_prompts=False, cache_dir=tmp_path / "cache"):
        return optimize(
            ticket_kind,
            TRAIN,
            metric,
            valset=VAL,
            optimizer="mipro",
            budget=budget,
            save=False,
            apply=False,
            progress=False,
            storage=str(tmp_path / "study.db"),
            variants=False,  # mipro's plan and its own requests are measured here
            **opts,
        )


def task(budget: Budget, train: int = 20, val: int = 16) -> Task:
    rows = [{"ticket": "t", "label": "bug"}] * max(train, val)
    return Task(
        ticket_kind, rows[:train], rows[:val], metric, budget, seed=0, threads=1, functions=[ticket_kind]
    )


@pytest.mark.parametrize("budget", [30, 48, 100, 250])
def test_a_small_budget_is_never_exceeded_and_still_evaluates_a_candidate(
    tmp_path: Path, budget: int
) -> None:
    model = Model()
    result = run(tmp_path, Budget(max_calls=budget), model)
    assert model.requests == result.usage.requests <= budget
    plan = result.details.plan
    assert plan is not None and plan.max_calls == budget and plan.calls <= budget
    assert result.stopped_by is None and result.warnings == []
    assert result.details.trials == plan.config.num_trials
    assert result.baseline_score == pytest.approx(100 / 3, abs=0.1)
    assert any(c.label != "baseline" for c in result.candidates)  # the old run at 48: none
    assert result.score is not None and result.score > result.baseline_score


def test_a_budget_below_the_smallest_plan_is_refused_before_any_call(tmp_path: Path) -> None:
    model = Model()
    with pytest.raises(
        UsageError, match=r"Budget\(max_calls=20\) is below the smallest plan for this task, 25"
    ):
        run(tmp_path, Budget(max_calls=20), model)
    assert model.requests == 0


def test_settings_are_scaled_down_in_the_documented_order() -> None:
    config = MiproConfig(**{k: v for k, v in SETTINGS.items() if k != "threads"}, retrieved_demos=0)
    unplanned = plan_run(config, task(Budget()))
    assert unplanned.config == config and unplanned.scaled == ()
    # 48 calls, 16 validation examples: end-of-round evaluations, no bootstrapping, minibatches
    # of 4, no proposals; the 4 trials fit
    small = plan_run(config, task(Budget(max_calls=48)))
    assert small.scaled == (
        "full_eval_every 2 -> 5",
        "bootstrap_runs all -> 0",
        "minibatch_size 8 -> 4",
        "num_instructions 3 -> 1",
    )
    assert dict(small.phases) == {
        "baseline": 16,
        "bootstrap": 0,
        "proposals": 0,
        "trials": 16,
        "full evaluations": 16,
    }
    # 100 calls: bootstrapping only shortened (40 runs per demo set would be 120 calls)
    larger = plan_run(config, task(Budget(max_calls=100)))
    assert larger.scaled == ("full_eval_every 2 -> 5", "bootstrap_runs all -> 5")
    assert larger.calls <= 100 and larger.config.num_instructions == 3
    # a budget that fits the settings changes nothing
    assert plan_run(config, task(Budget(max_calls=10_000))).config == config
    # the smallest plan: the baseline, one trial of one example, one full evaluation
    assert plan_run(config, task(Budget(max_calls=33))).calls == 33
    with pytest.raises(UsageError, match="raise max_calls to at least 33"):
        plan_run(config, task(Budget(max_calls=32)))


def test_the_same_settings_make_the_same_plan_and_study(tmp_path: Path) -> None:
    a = run(tmp_path / "a", Budget(max_calls=48))
    b = run(tmp_path / "b", Budget(max_calls=48))
    assert a.details.plan.to_dict() == b.details.plan.to_dict() and a.details.study == b.details.study
    assert a.states == b.states and [c.score for c in a.candidates] == [c.score for c in b.candidates]
    # a budget the settings fit in plans nothing away: the study of the run without a budget
    roomy = run(tmp_path / "a", Budget(max_calls=10_000))
    unbudgeted = run(tmp_path / "a", None)
    assert roomy.details.plan is not None and roomy.details.plan.scaled == ()
    assert roomy.details.study == unbudgeted.details.study != a.details.study


class Dying(Model):
    """The provider fails for good after ``after`` requests (as a killed run stops)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def __call__(self, messages: list[dict[str, str]]) -> Any:
        if self.requests >= self.after:
            return LMError("provider down", status_code=401)
        return super().__call__(messages)


@pytest.mark.parametrize("after", [5, 15, 25])
def test_a_planned_run_resumed_after_a_failure_gives_the_uninterrupted_result(
    tmp_path: Path, after: int
) -> None:
    clean = run(tmp_path / "clean", Budget(max_calls=48))
    assert after < clean.usage.requests
    with pytest.raises(LMError):
        run(tmp_path / "cut", Budget(max_calls=48), Dying(after))
    resumed = run(tmp_path / "cut", Budget(max_calls=48))
    assert resumed.usage.requests <= 48
    assert resumed.details.study == clean.details.study
    assert resumed.states == clean.states and resumed.score == clean.score
    assert [(c.label, c.score) for c in resumed.candidates] == [(c.label, c.score) for c in clean.candidates]


class Rambling(Model):
    """Every task answer is unparsable: each call is retried, costing three requests, not one."""

    def __call__(self, messages: list[dict[str, str]]) -> str:
        answer = super().__call__(messages)
        if messages[0]["content"].startswith(("Describe", "Write a better")):
            return answer
        return "I think it might be a ticket."


def test_a_run_the_cap_stops_before_any_candidate_says_it_returned_the_unoptimized_program(
    tmp_path: Path,
) -> None:
    result = run(tmp_path, Budget(max_calls=48), Rambling())
    assert result.usage.requests <= 48
    assert result.stopped_by == "max_calls"
    assert [c.label for c in result.candidates] in ([], ["baseline"])
    assert any(
        "no configuration besides the baseline was evaluated" in w
        and "the result is the unoptimized program" in w
        for w in result.warnings
    )


def test_the_estimate_is_the_plan(tmp_path: Path) -> None:
    config = MiproConfig(**{k: v for k, v in SETTINGS.items() if k != "threads"}, retrieved_demos=0)
    t = task(Budget(max_calls=48))
    assert MIPRO(config=config).estimate_calls(t) == plan_run(config, t).calls <= 48


class Priced(ScriptedLM):
    """A ScriptedLM that charges per prompt word, as a hosted model charges per token."""

    def _request(self, messages: Any, params: dict[str, Any]) -> Any:
        done = super()._request(messages, params)
        usage = dataclasses.replace(done.usage, cost=done.usage.prompt_tokens * 0.0001)
        return dataclasses.replace(done, usage=usage)


def priced_run(tmp_path: Path, budget: Budget) -> lmprog.OptimizationResult:
    with lmprog.context(lm=Priced(Model(), cache=True), load_prompts=False, cache_dir=tmp_path / "cache"):
        return optimize(
            ticket_kind,
            TRAIN,
            metric,
            valset=VAL,
            optimizer="mipro",
            budget=budget,
            save=False,
            apply=False,
            progress=False,
            storage=str(tmp_path / "study.db"),
            variants=False,  # the plan's cost, not the layouts tried after it
            **SETTINGS,
        )


def test_a_cost_cap_plans_the_phases_after_the_baseline_by_its_price(tmp_path: Path) -> None:
    result = priced_run(tmp_path, Budget(max_cost=0.15))
    plan = result.details.plan
    assert plan is not None and plan.max_cost == 0.15 and plan.price is not None and plan.price > 0
    assert plan.scaled and plan.note == ""
    assert result.details.trials == plan.config.num_trials  # the run went by the plan
    assert result.stopped_by is None and result.usage.cost < 0.15
    assert any(c.label != "baseline" for c in result.candidates)
    # the price is the stored baseline's: the same command resumes to the same plan
    again = priced_run(tmp_path, Budget(max_cost=0.15))
    assert again.details.plan == plan and again.details.study == result.details.study
    assert again.usage.requests == 0


def test_a_cost_cap_below_the_smallest_plan_is_a_warning_of_the_result(tmp_path: Path) -> None:
    result = priced_run(tmp_path, Budget(max_cost=0.03))
    plan = result.details.plan
    assert plan is not None and "the smallest plan needs" in plan.note
    assert plan.note in result.warnings
