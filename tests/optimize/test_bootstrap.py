from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import lmprog
from lmprog import Budget, lm_function, traced
from lmprog.errors import UsageError
from lmprog.function import State
from lmprog.optimize import OptimizationResult, optimize
from lmprog.testing import ScriptedLM


@lm_function
def extract(text: str) -> str:
    """Extract the city from the text."""


@lm_function
def answer(question: str, city: str) -> str:
    """Answer the question about the city."""


@traced
def pipeline(question: str, text: str) -> str:
    return answer(question=question, city=extract(text))


CITIES = ["Oslo", "Lima", "Rome", "Kyiv", "Baku", "Doha", "Riga", "Bern"]
DATA = [
    {"question": f"Where does person {i} live?", "text": f"Person {i} lives in {c}.", "answer": c}
    for i, c in enumerate(CITIES)
]


def fake_model(messages: list[dict[str, str]]) -> str:
    """Extracts the city for even persons, a wrong one for odd persons; answer echoes the city."""
    system, user = messages[0]["content"], messages[-1]["content"]
    if system.startswith("Extract"):
        text = user.split("text: ", 1)[1]
        i = int(text.split()[1])
        return text.split(" in ")[1].rstrip(".") if i % 2 == 0 else "Paris"
    return user.split("city: ", 1)[1]


def metric(example, prediction, trace=None) -> bool:  # type: ignore[no-untyped-def]
    return prediction == example["answer"]


@pytest.fixture
def lm() -> ScriptedLM:
    scripted = ScriptedLM(fake_model)
    lmprog.configure(lm=scripted, load_prompts=False)
    return scripted


def test_bootstrap_gives_demos_to_both_functions_including_the_unlabeled_one(
    lm: ScriptedLM, tmp_path: Path
) -> None:
    result = optimize(
        pipeline,
        DATA,
        metric,
        optimizer="bootstrap",
        save=False,
        threads=2,
        max_bootstrapped_demos=3,
        max_labeled_demos=3,
        max_rounds=1,
        progress=False,
    )
    ex_demos = result.states[extract].demos
    an_demos = result.states[answer].demos
    # only even persons pass the metric: their traces become demos, the failing ones never do
    assert [d["output"] for d in ex_demos] == [d["output"] for d in ex_demos if d["output"] != "Paris"]
    assert len(ex_demos) == 3 and all(d["output"] in CITIES for d in ex_demos)
    assert all(d["text"].endswith(f"{d['output']}.") for d in ex_demos)
    assert len(an_demos) == 3 and all(set(d) == {"question", "city", "output"} for d in an_demos)
    assert all(d["city"] == d["output"] for d in an_demos)
    assert result.details["passed"] >= 3
    # states are applied and show up in the prompt
    msgs = extract.messages("Person 9 lives in Bern.")
    assert {"role": "assistant", "content": ex_demos[0]["output"]} in msgs
    extract.reset()
    answer.reset()


def test_failing_traces_are_excluded() -> None:
    lm = ScriptedLM(lambda m: "Paris")
    with lmprog.context(lm=lm, load_prompts=False):
        result = optimize(
            pipeline,
            DATA,
            metric,
            optimizer="bootstrap",
            save=False,
            apply=False,
            max_labeled_demos=0,
            max_rounds=2,
            progress=False,
        )
    assert result.states[extract].demos == ()
    assert result.states[answer].demos == ()
    assert result.details["passed"] == 0


def test_labeled_demos_fill_functions_whose_fields_match_the_data() -> None:
    @lm_function
    def city_of(text: str) -> str:
        """Extract the city."""

    data = [{"text": d["text"], "label": d["answer"]} for d in DATA]
    with lmprog.context(lm=ScriptedLM(lambda m: "x"), load_prompts=False):
        result = optimize(
            city_of, data, metric, optimizer="labeled", save=False, apply=False, k=2, progress=False
        )
    demos = result.states[city_of].demos
    assert len(demos) == 2 and all(set(d) == {"text", "output"} for d in demos)
    assert all(d["text"].endswith(d["output"] + ".") for d in demos)


def random_search(**options: Any) -> OptimizationResult:
    """random_search on 4 training and 4 validation rows, nothing saved or applied."""
    return optimize(
        pipeline,
        DATA[:4],
        metric,
        valset=DATA[4:],
        optimizer="random_search",
        save=False,
        apply=False,
        progress=False,
        **options,
    )


def test_random_search_keeps_the_best_candidate_on_the_validation_set(lm: ScriptedLM) -> None:
    # variants=False: the candidates of random search alone
    result = random_search(variants=False, num_candidates=2, max_bootstrapped_demos=2, max_labeled_demos=2)
    scores = {c.label: c.score for c in result.candidates}
    # the likeliest first: labeled, the seeded bootstrap, then the zero-shot baseline
    assert list(scores) == ["labeled", "bootstrap #0 (2 demos)", "zero-shot", "bootstrap #1 (2 demos)"]
    assert result.score == max(scores.values())
    assert result.baseline_score == scores["zero-shot"] == 50.0  # even persons right, odd wrong


def test_random_search_under_a_call_cap_scores_a_bootstrapped_set_before_the_baseline(lm: ScriptedLM) -> None:
    # labeled 4 x 2 functions, bootstrap #0 at most 4 runs x 2 + its 8: the smallest useful plan,
    # 24 of 30, so the variants step's reserve (up to 15) leaves it that
    result = random_search(
        budget=Budget(max_calls=30), num_candidates=3, max_bootstrapped_demos=2, max_labeled_demos=2
    )
    assert result.details["variants_budget"]["optimizer_max_calls"] == 30  # no whole step fits in 6
    labels = [c.label for c in result.candidates if c.score is not None]
    assert labels[:2] == ["labeled", "bootstrap #0 (2 demos)"]
    assert result.usage.requests <= 30


def test_budget_max_calls_stops_the_run_and_is_never_exceeded(lm: ScriptedLM) -> None:
    result = optimize(
        pipeline,
        DATA,
        metric,
        valset=DATA,
        optimizer="random_search",
        save=False,
        apply=False,
        budget=Budget(max_calls=20),
        num_candidates=4,
        progress=False,
        threads=4,
    )
    assert result.stopped_by == "max_calls"
    assert result.usage.requests <= 20
    assert len(lm.calls) <= 20


def test_budget_max_trials(lm: ScriptedLM) -> None:
    result = random_search(budget=Budget(max_trials=2), num_candidates=4)
    assert result.stopped_by == "max_trials" and len(result.candidates) == 2


def test_temperature_rounds_draw_new_samples_with_distinct_cache_keys(tmp_path: Path) -> None:
    temps: list[float] = []

    def model(messages: list[dict[str, str]]) -> str:
        return "Paris"

    lm = ScriptedLM(model, cache=True)
    with lmprog.context(lm=lm, load_prompts=False):
        optimize(
            pipeline,
            DATA[:2],
            metric,
            optimizer="bootstrap",
            save=False,
            apply=False,
            max_rounds=3,
            max_labeled_demos=0,
            progress=False,
        )
    temps = [c.params["temperature"] for c in lm.calls]
    assert temps.count(0.0) == 4 and temps.count(0.7) == 8  # rounds 2 and 3 are not served from cache


def test_module_entry_resolution(tmp_path: Path) -> None:
    import types

    mod = types.ModuleType("fake_mod")
    with pytest.raises(UsageError, match="no @traced function"):
        optimize(mod, DATA, metric, save=False)
    mod.pipeline = pipeline  # type: ignore[attr-defined]
    pipeline_mod = pipeline.__module__
    mod.__name__ = pipeline_mod
    from lmprog.optimize import resolve_program

    assert resolve_program(mod) is pipeline
    assert resolve_program(mod, "pipeline") is pipeline
    with pytest.raises(UsageError, match="no function 'nope'"):
        resolve_program(mod, "nope")


def test_state_round_trip_through_result_apply() -> None:
    with lmprog.context(lm=ScriptedLM(fake_model), load_prompts=False):
        result = optimize(
            pipeline, DATA, metric, optimizer="bootstrap", save=False, apply=False, progress=False
        )
    assert extract.state == State()
    with result.applied():
        assert extract.demos
    assert extract.state == State()


def test_budget_ending_bootstrap_keeps_the_demos_found_so_far(lm: ScriptedLM) -> None:
    result = optimize(
        pipeline,
        DATA,
        metric,
        optimizer="bootstrap",
        save=False,
        apply=False,
        threads=1,
        budget=Budget(max_calls=8),
        max_bootstrapped_demos=4,
        max_labeled_demos=4,
        progress=False,
    )
    assert result.stopped_by == "max_calls"
    assert result.details["passed"] >= 1
    passed_cities = [d["output"] for d in result.states[answer].demos]
    assert passed_cities and all(c in CITIES for c in passed_cities)
    assert len(lm.calls) <= 8


def test_random_search_reports_a_cap_that_ends_bootstrapping(tmp_path: Path) -> None:
    # with the response cache on, a candidate cut short by the cap is scored from the cache; the
    # cap must end the search (and be reported), not be swallowed by the bootstrapping
    lm = ScriptedLM(fake_model, cache=True)
    with lmprog.context(lm=lm, load_prompts=False, cache_dir=tmp_path / "cache"):
        result = optimize(
            pipeline,
            DATA,
            metric,
            optimizer="random_search",
            save=False,
            apply=False,
            budget=Budget(max_calls=12),
            progress=False,
        )
    assert result.stopped_by == "max_calls"
    assert len(lm.calls) <= 12
    labels = [c.label for c in result.candidates]
    assert "cut short by max_calls" in labels[-1]  # the search ended at the cut bootstrap


def test_random_search_reports_the_demos_bootstrapped_before_the_cap(tmp_path: Path) -> None:
    lm = ScriptedLM(fake_model, cache=True)
    with lmprog.context(lm=lm, load_prompts=False, cache_dir=tmp_path / "cache"):
        result = optimize(
            pipeline,
            DATA,
            metric,
            optimizer="random_search",
            save=False,
            apply=False,
            budget=Budget(max_calls=12),
            threads=1,
            max_bootstrapped_demos=2,
            progress=False,
        )
    assert result.stopped_by == "max_calls"
    assert len(lm.calls) <= 12
    unscored = result.details["unscored"]  # found before the cap, too late to be scored
    assert "cut short by max_calls" in unscored["label"]
    assert sum(unscored["demos"].values()) > 0
