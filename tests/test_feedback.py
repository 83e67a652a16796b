"""A metric may return ``Feedback(score, text, for_function=...)``: the score is checked like a plain
one, the feedback is kept per example (pickled with it), and a failed example gets its error as
feedback."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import lmprog
from lmprog import Feedback, evaluate, lm_function
from lmprog.errors import UsageError
from lmprog.testing import ScriptedLM


@lm_function
def double(n: int) -> int:
    """Double the number."""


def feedback_metric(example: Any, prediction: Any) -> Feedback:
    right = prediction == example["answer"]
    return Feedback(
        right,
        None if right else f"expected {example['answer']}, got {prediction}",
        for_function={"double": "multiply by two"},
    )


def test_feedback_is_kept_per_example_and_plain_scores_keep_working() -> None:
    data = [{"n": 1, "answer": 2}, {"n": 2, "answer": 4}]
    with lmprog.context(lm=ScriptedLM(["2", "5"]), cache=False):
        res = evaluate(double, data, feedback_metric, threads=1, progress=False)
    assert res.values == [1.0, 0.0]
    assert res.results[0].feedback == Feedback(True, None, {"double": "multiply by two"})
    assert res.results[1].feedback_text == "expected 4, got 5"
    assert res.results[1].feedback is not None and res.results[1].feedback.about("x", "double") == (
        "multiply by two"
    )
    again = pickle.loads(pickle.dumps(res.results[1]))
    assert again.feedback == res.results[1].feedback
    with lmprog.context(lm=ScriptedLM(["2"]), cache=False):
        plain = evaluate(double, data[:1], lambda e, p: p == e["answer"], threads=1, progress=False)
    assert plain.values == [1.0] and plain.results[0].feedback is None


def test_the_score_range_check_applies_to_feedback() -> None:
    with lmprog.context(lm=ScriptedLM(["2"]), cache=False):
        res = evaluate(
            double, [{"n": 1, "answer": 2}], lambda e, p: Feedback(5, "too much"), threads=1, progress=False
        )
    assert res.results[0].error is not None and "Feedback with score 5" in res.results[0].error


def test_failures_become_feedback_text() -> None:
    # a reply that never parses as an int, then a program that raises
    with lmprog.context(lm=ScriptedLM(["many", "lots", "plenty"]), cache=False):
        res = evaluate(double, [{"n": 1, "answer": 2}], feedback_metric, threads=1, progress=False)
    fb = res.results[0].feedback
    assert fb is not None and fb.score == 0.0 and fb.text == res.results[0].error
    assert "OutputParseError" in (fb.text or "")

    def broken(n: int) -> int:
        raise RuntimeError("no database")

    res = evaluate(broken, [{"n": 1, "answer": 2}], feedback_metric, threads=1, progress=False)
    assert res.results[0].feedback_text == "RuntimeError: no database"


def test_bad_feedback_is_refused_with_a_clear_error() -> None:
    with pytest.raises(UsageError, match="for_function"):
        Feedback(1.0, "ok", for_function={"double": 3})  # type: ignore[dict-item]
    with pytest.raises(UsageError, match="text"):
        Feedback(1.0, 3)  # type: ignore[arg-type]


@lmprog.traced
def twice_doubled(n: int) -> int:
    return double(double(n))


def test_the_metric_feedback_is_put_on_the_spans_of_the_run(tmp_path: Any) -> None:
    from lmprog.trace import load_jsonl

    data = [{"n": 1, "answer": 4}, {"n": 2, "answer": 8}]
    with lmprog.context(lm=ScriptedLM(["2", "4", "4", "9"]), cache=False):
        res = evaluate(twice_doubled, data, feedback_metric, threads=1, progress=False)
    right, wrong = (r.trace for r in res.results)
    assert right is not None and wrong is not None
    (root,) = wrong.roots
    assert (root.name, root.score, root.feedback) == ("twice_doubled", 0.0, "expected 8, got 9")
    assert [(s.score, s.feedback) for s in wrong.lm_spans()] == [(None, "multiply by two")] * 2
    assert (right.roots[0].score, right.roots[0].feedback) == (1.0, None)
    wrong.to_jsonl(tmp_path / "t.jsonl")  # saved traces keep it
    saved = {s.name: s for s in load_jsonl(tmp_path / "t.jsonl").roots}
    assert saved["twice_doubled"].feedback == "expected 8, got 9" and saved["twice_doubled"].score == 0.0


def test_a_failed_run_has_its_error_as_the_root_span_feedback() -> None:
    with lmprog.context(lm=ScriptedLM(["many", "lots", "plenty"]), cache=False):
        res = evaluate(double, [{"n": 1, "answer": 2}], feedback_metric, threads=1, progress=False)
    tr = res.results[0].trace
    assert tr is not None
    (root,) = tr.roots
    assert root.score == 0.0 and root.feedback == res.results[0].error and root.feedback
