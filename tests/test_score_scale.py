"""One score scale: every score lmprog shows is 0-100 (an example's, the mean, an optimizer's,
the table, the progress bar, the report), while the metric's own value in [0, 1] stays available
as ``ExampleResult.value`` and is what bootstrapping's ``metric_threshold`` is compared with."""

from __future__ import annotations

from typing import Any

import pytest

import lmprog
from lmprog import lm_function, traced
from lmprog.evaluate import evaluate
from lmprog.optimize import optimize
from lmprog.report import render_report
from lmprog.testing import ScriptedLM


def shout(question: str) -> str:
    return question.upper()


def quarter_or_full(example: Any, prediction: Any) -> float:
    """1.0 for "A", 0.25 otherwise."""
    return 1.0 if prediction == "A" else 0.25


ROWS = [{"question": q} for q in ("a", "b", "c", "d")]


def test_an_example_has_a_0_to_100_score_and_the_metric_value() -> None:
    result = evaluate(shout, ROWS, quarter_or_full, progress=False)
    assert [r.value for r in result.results] == [1.0, 0.25, 0.25, 0.25]
    assert [r.score for r in result.results] == [100.0, 25.0, 25.0, 25.0]
    assert result.values == [1.0, 0.25, 0.25, 0.25]
    assert result.scores == [100.0, 25.0, 25.0, 25.0]
    assert result.score == pytest.approx(43.75)  # the mean of the scores, on the same scale
    assert result.score == pytest.approx(sum(result.scores) / len(result.scores))


def test_a_failed_example_scores_0_on_both_scales() -> None:
    def broken(example: Any, prediction: Any) -> float:
        raise ValueError("no")

    (r,) = evaluate(shout, ROWS[:1], broken, progress=False).results
    assert r.error and r.value == 0.0 and r.score == 0.0


def test_the_summary_table_and_the_progress_bar_show_0_to_100(capsys: pytest.CaptureFixture[str]) -> None:
    result = evaluate(shout, ROWS, quarter_or_full, progress=True)
    bar = capsys.readouterr().err
    assert "score 43.8" in bar and "score 0.4" not in bar
    table = result.summary()
    assert "43.8 on 4 example(s)" in table
    rows = [line.split() for line in table.splitlines() if line.strip().startswith(("0 ", "1 "))]
    assert [row[-1] for row in rows] == ["100.0", "25.0"]


@lm_function
def city(text: str) -> str:
    """Name the city in the text."""


@traced
def find(text: str) -> str:
    return city(text)


def test_bootstrap_threshold_is_on_the_metric_scale() -> None:
    # every run gets 0.6 from the metric, a score of 60: a threshold of 0.7 keeps none of them
    # (60 >= 0.7 would keep all), a threshold of 0.5 keeps them
    def sixty(example: Any, prediction: Any) -> float:
        return 0.6

    data = [{"text": f"I live in town {i}.", "output": f"town {i}"} for i in range(4)]
    lm = ScriptedLM(lambda messages: "town")
    passed = {}
    for threshold in (0.7, 0.5):
        with lmprog.context(lm=lm, load_prompts=False):
            result = optimize(
                find,
                data,
                sixty,
                optimizer="bootstrap",
                save=False,
                apply=False,
                max_labeled_demos=0,
                max_rounds=1,
                metric_threshold=threshold,
                progress=False,
            )
        passed[threshold] = result.details["passed"]
    assert passed == {0.7: 0, 0.5: 4}


def test_optimizer_scores_and_the_report_use_the_same_scale(tmp_path: Any) -> None:
    data = [{"text": f"in town {i}", "output": "town"} for i in range(8)]

    def exact(example: Any, prediction: Any) -> bool:
        return prediction == example["output"]

    with lmprog.context(lm=ScriptedLM(lambda messages: "town"), load_prompts=False):
        result = optimize(
            find,
            data[:4],
            exact,
            valset=data[4:],
            optimizer="random_search",
            save=False,
            apply=False,
            progress=False,
            num_candidates=1,
        )
    assert result.score == 100.0 and all(c.score == 100.0 for c in result.candidates)
    with lmprog.context(lm=ScriptedLM(lambda messages: "town"), load_prompts=False):
        evaluated = evaluate(find, data[4:], exact, progress=False)
    assert evaluated.score == result.score and evaluated.scores == [100.0] * 4
    page = render_report(result)
    assert "100.0" in page and "1.00" not in page
