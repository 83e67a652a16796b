"""The variants step planned into ``Budget(max_calls=...)``: a reserve set aside before the
optimizer runs, the optimizer under the rest, and the step within the whole cap."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

import lmprog
from lmprog import Budget, lm_function, optimize, settings
from lmprog.lm import Messages
from lmprog.optimize import Task
from lmprog.optimize.bootstrap import RandomSearch
from lmprog.optimize.mipro import MIPRO
from lmprog.optimize.variants_budget import RESERVE_SHARE, plan_reserve
from lmprog.testing import ScriptedLM
from optimize.test_variants import VAL, metric


@lm_function
def sentiment(review: str) -> Literal["positive", "negative"]:
    """Classify the review."""


# every training review is negative and the chat layout samples "positive" for everything, so no
# bootstrap run passes: bootstrap goes on until its cap stops it
TRAIN = [{"review": f"awful thing {i}", "output": "negative"} for i in range(40)]


@pytest.fixture(autouse=True)
def prompt_dir(tmp_path: Path) -> Iterator[Path]:
    with settings.context(
        prompt_dir=tmp_path / "prompts", cache=False, cache_dir=tmp_path / "cache", load_prompts=False
    ):
        yield tmp_path / "prompts"


def question(messages: Messages) -> str:
    return messages[-1]["content"].rsplit("review:", 1)[-1]


def always_positive(messages: Messages) -> str:
    return "positive"


def scored(messages: Messages, text: str) -> float:
    """ "positive" is 2 nats likelier everywhere (the label bias calibration divides out); "awful"
    adds 1 nat to "negative"."""
    label = text.strip()
    bonus = 1.0 if label == "negative" and "awful" in question(messages) else 0.0
    return (2.0 if label == "positive" else 0.0) + bonus - 5.0


def lm(**kwargs: Any) -> ScriptedLM:
    return ScriptedLM(always_positive, constraint="grammar", logprobs=scored, **kwargs)


def run(model: ScriptedLM, optimizer: str, budget: Budget, **kwargs: Any) -> lmprog.OptimizationResult:
    with lmprog.context(lm=model):
        return optimize(
            sentiment,
            TRAIN,
            metric,
            valset=VAL,
            optimizer=optimizer,
            budget=budget,
            save=False,
            apply=False,
            progress=False,
            **kwargs,
        )


def test_bootstrap_under_a_tight_cap_leaves_room_for_calibration_and_never_exceeds_it() -> None:
    model = lm()
    result = run(model, "bootstrap", Budget(max_calls=58))
    assert result.usage.requests == len(model.calls) <= 58
    spent = result.details["variants_budget"]
    # the evaluation 4, then chat score 4 (one request scores both options) and calibrated 4 + 3
    # content-free (no cache), sampling in the transcript layout 4: 19 of the 29 (half) that may
    # be set aside; score and calibrated in transcript (11 more) would pass 29
    assert spent["reserve"] == 19 and spent["optimizer_max_calls"] == 39
    assert spent["covers"] == [
        "evaluation",
        "score and calibrated in the optimizer's layout",
        "sample in other layout 1 of 1",
    ]
    assert result.stopped_by == "max_calls"  # bootstrap's share ran out
    assert spent["evaluated"] == ["chat score", "chat calibrated", "transcript sample"]
    assert spent["after_optimizer"] == 19
    # the optimizer's choice predicts one label for every input; calibration un-collapses it
    base, score, calibrated = result.details["variants"][:3]
    assert base["collapsed"] and base["label_counts"] == {"sentiment": {"positive": 4}}
    assert score["collapsed"] and score["requests"] == 4
    assert not calibrated["collapsed"] and calibrated["requests"] == 7 and calibrated["score"] == 100.0
    state = result.states[sentiment]
    assert (state.layout, state.decode) == ("chat", "calibrated") and result.score == 100.0
    assert result.label_counts == {"sentiment": {"negative": 2, "positive": 2}}


def test_with_a_response_cache_calibrated_after_score_costs_the_content_free_requests_only() -> None:
    model = lm(cache=True)
    result = run(model, "bootstrap", Budget(max_calls=60))
    assert result.usage.requests == len(model.calls) <= 60
    spent = result.details["variants_budget"]
    # calibrated counts its 3 content-free requests only: scoring in transcript now fits too
    assert spent["reserve"] == 4 + 4 + 3 + 4 + (4 + 3) and spent["optimizer_max_calls"] == 38
    assert spent["covers"][-1] == "score and calibrated in 1 other layout(s)"
    calibrated = result.details["variants"][2]
    assert (calibrated["decode"], calibrated["requests"]) == ("calibrated", 3)
    assert result.states[sentiment].decode == "calibrated"


def test_the_reserve_is_at_most_half_the_budget_and_whole_steps_only() -> None:
    def task(max_calls: int) -> Task:
        return Task(sentiment, TRAIN, VAL, metric, Budget(max_calls=max_calls), 0, functions=[sentiment])

    with lmprog.context(lm=lm()):
        assert plan_reserve(task(8), measure=True).calls == 4  # the evaluation (4) fits in 4
        assert plan_reserve(task(10), measure=True).calls == 4  # transcript sampling: 8 > 5
        # 15 is above 29 // 2 = 14: the scoring step is left out, sampling in transcript fits
        assert plan_reserve(task(29), measure=True).covers == ("evaluation", "sample in other layout 1 of 1")
        assert plan_reserve(task(29), measure=True).calls == 8
        assert plan_reserve(task(7), measure=True).calls == 0  # no evaluation (4 > 3): nothing
        assert plan_reserve(task(7), measure=False).calls == 0  # neither 11 nor 4 fits in 3
        assert plan_reserve(task(8), measure=False).calls == 4  # sampling in transcript
        assert plan_reserve(task(52), measure=True).calls == 4 + 11 + 4  # scoring in transcript: 30 > 26
        assert plan_reserve(task(52), measure=False).calls == 11 + 4 + 11  # no evaluation: all fit
        assert plan_reserve(task(52), measure=True, least=40).calls == 8  # 52 - 40 leaves 12
        assert plan_reserve(task(2), measure=True).calls == 0
    with lmprog.context(lm=lm(takes_prompt=True)):  # transcript and completion: one step each
        assert plan_reserve(task(10), measure=False).covers == ("sample in other layout 1 of 2",)
        full = plan_reserve(task(1000), measure=True, grid=True)
        assert full.calls == full.wanted == 4 + 11 + 2 * 4 + 2 * 11 and full.optimizer_max_calls == 1000 - 45
        assert full.calls <= 1000 * RESERVE_SHARE


def test_mipro_near_its_smallest_plan_runs_with_the_reserve_dropped_or_shrunk(tmp_path: Path) -> None:
    options = dict(
        num_instructions=1,
        num_demo_sets=1,
        num_trials=2,
        minibatch_size=4,
        max_bootstrapped_demos=1,
        max_labeled_demos=2,
        threads=1,
        storage=str(tmp_path / "study.db"),
    )
    train = TRAIN[:8]
    least = MIPRO(**{k: v for k, v in options.items() if k not in ("threads", "storage")}).min_calls(
        Task(sentiment, train, VAL, metric, Budget(), 0, functions=[sentiment])
    )
    # without logprobs the only step is sampling in the transcript layout: 4 requests; mipro's
    # smallest plan is the baseline 4, a trial of 1, a full evaluation 4
    assert least == 9
    for budget, reserve in ((least, 0), (least + 3, 0), (least + 4, 4)):  # half of 12 is 6, but 12 - 9 < 4
        model = ScriptedLM(always_positive)
        with lmprog.context(lm=model):
            result = optimize(
                sentiment, train, metric, valset=VAL, optimizer="mipro", budget=Budget(max_calls=budget),
                save=False, apply=False, progress=False, **options,
            )  # fmt: skip
        spent = result.details["variants_budget"]
        assert spent["reserve"] == reserve and result.usage.requests <= budget
        assert result.details.plan is not None and result.details.plan.max_calls == budget - reserve
        assert spent["evaluated"] == (["transcript sample"] if reserve else [])


def test_a_zero_call_budget_skips_the_evaluation_and_the_variants_as_before() -> None:
    result = run(lm(), "labeled", Budget(max_calls=0))
    assert result.usage.requests == 0 and result.stopped_by == "max_calls" and result.score is None
    assert "variants" not in result.details and result.details["variants_budget"]["reserve"] == 0


def test_a_cost_cap_reserves_no_calls() -> None:
    model = lm()
    result = run(model, "bootstrap", Budget(max_cost=1.0))
    assert "variants_budget" not in result.details
    assert result.details["runs"] == 80  # the whole training set, twice: no share to run out of
    assert result.states[sentiment].decode == "calibrated"  # the step ran after it, unbudgeted


def test_random_search_on_a_large_training_set_leaves_room_for_calibration() -> None:
    # 200 training rows, none of which bootstraps: counted at a whole pass over them, random
    # search's smallest plan (208) took all of a 60-call budget and the collapsed result was kept
    # (ScoNe's random_search cells predicted "no" for every test input)
    train = [{"review": f"awful thing {i}", "output": "negative"} for i in range(200)]
    options = dict(num_candidates=4, max_bootstrapped_demos=4, max_labeled_demos=4, max_rounds=1)
    search = RandomSearch(**options)  # type: ignore[arg-type]
    task = Task(sentiment, train, VAL, metric, Budget(max_calls=60), 0, functions=[sentiment])
    assert search.least_runs(task) == 16 and search.min_calls(task) == 2 * 4 + 16
    assert search.first_runs(task) == 16  # 60 is below the whole search's 824
    assert search.first_runs(dataclasses.replace(task, budget=Budget())) is None
    assert search.first_runs(dataclasses.replace(task, budget=Budget(max_calls=824))) is None

    model = lm()
    with lmprog.context(lm=model):
        result = optimize(
            sentiment, train, metric, valset=VAL, optimizer="random_search", budget=Budget(max_calls=60),
            save=False, apply=False, progress=False, **options,
        )  # fmt: skip
    assert result.usage.requests == len(model.calls) <= 60
    spent = result.details["variants_budget"]
    # score and calibrated in chat (4 + 7), sampling in transcript (4), scoring there (11): 26 of
    # the 30 that may be set aside, and 60 - 24 leaves them
    assert spent["reserve"] == 26 and spent["optimizer_max_calls"] == 34
    assert spent["covers"][0] == "score and calibrated in the optimizer's layout"
    labels = [c.label for c in result.candidates]
    assert labels[:3] == ["labeled", "bootstrap #0 (4 demos)", "zero-shot"]
    # labeled 4, bootstrap #0's 16 runs and its 4, zero-shot 4: the next bootstrap hits the cap
    assert result.stopped_by == "max_calls"
    state = result.states[sentiment]
    assert (state.layout, state.decode) == ("chat", "calibrated") and result.score == 100.0
    assert result.label_counts == {"sentiment": {"negative": 2, "positive": 2}}
