"""Demo selection that cannot collapse: balanced, interleaved demo sets and the collapse guard."""

from __future__ import annotations

import enum
import itertools
import random
from pathlib import Path
from typing import Annotated, Literal

import pytest

import lmprog
from lmprog import lm_function
from lmprog.optimize import optimize
from lmprog.optimize.balance import balance, is_categorical, is_collapsed, label_field, rank_key
from lmprog.optimize.demos import sample_labeled
from lmprog.testing import ScriptedLM


@lm_function
def sentiment(text: str) -> Literal["positive", "negative"]:
    """Classify the sentiment of the review."""


@lm_function
def is_spam(text: str) -> bool:
    """Whether the message is spam."""


@lm_function
def summarize(text: str) -> str:
    """Summarize the text."""


TRAIN = [{"text": f"great film number {i}", "label": "positive"} for i in range(6)] + [
    {"text": f"awful film number {i}", "label": "negative"} for i in range(2)
]


def test_label_field_is_the_categorical_output() -> None:
    assert label_field(sentiment) == "output"
    assert label_field(is_spam) == "output"
    assert label_field(summarize) is None


def test_sample_labeled_balances_and_interleaves_labels() -> None:
    demos = sample_labeled(sentiment, TRAIN, 4, random.Random(0))
    labels = [d["output"] for d in demos]
    # 6 positive and 2 negative examples: an unbalanced sample would be mostly positive
    assert sorted(labels) == ["negative", "negative", "positive", "positive"]
    assert all(a != b for a, b in itertools.pairwise(labels))  # labels take turns


def test_balance_uses_the_rarer_label_once_it_runs_out_then_fills() -> None:
    demos = [{"text": f"t{i}", "output": "positive"} for i in range(5)] + [
        {"text": "n", "output": "negative"}
    ]
    labels = [d["output"] for d in balance(sentiment, demos, 4)]
    assert labels == ["positive", "negative", "positive", "positive"]
    assert [d["text"] for d in balance(summarize, demos, 2)] == ["t0", "t1"]  # not categorical: first k


def test_sample_labeled_is_seeded() -> None:
    a = sample_labeled(sentiment, TRAIN, 4, random.Random(3))
    b = sample_labeled(sentiment, TRAIN, 4, random.Random(3))
    assert a == b


def test_collapse_check() -> None:
    assert is_collapsed({"f": {"positive": 5}}, {"f": {"positive": 4, "negative": 1}})
    assert not is_collapsed({"f": {"positive": 5}}, {"f": {"positive": 5}})  # the labels are one label too
    assert not is_collapsed({"f": {"positive": 4, "negative": 1}}, {"f": {"positive": 4, "negative": 1}})
    assert not is_collapsed({"f": {"positive": 1}}, {"f": {"positive": 1, "negative": 1}})  # one prediction
    assert rank_key(60.0, False) > rank_key(80.0, True)
    assert rank_key(80.0, False) > rank_key(60.0, False)


def test_near_collapse_is_collapse() -> None:
    """Iris, seed 1 of reflect (benchmark v2): 39 of 40 validation predictions one species, a
    third of the labels each; on test it answered that species 50 of 50 times."""
    third = {"f": {"setosa": 13, "versicolor": 14, "virginica": 13}}
    assert is_collapsed({"f": {"setosa": 39, "virginica": 1}}, third)
    assert is_collapsed({"f": {"no": 36, "yes": 4}}, {"f": {"no": 20, "yes": 20}})  # 90 %, 40 over
    assert not is_collapsed({"f": {"no": 35, "yes": 5}}, {"f": {"no": 20, "yes": 20}})  # 87.5 %
    # a skewed data set answered skewed: 95 % "no" where 85 % of the labels are "no"
    assert not is_collapsed({"f": {"no": 38, "yes": 2}}, {"f": {"no": 34, "yes": 6}})
    # 9 of 9 is a full collapse, 8 of 9 too few predictions to call a near one
    assert is_collapsed({"f": {"no": 9}}, {"f": {"no": 5, "yes": 4}})
    assert not is_collapsed({"f": {"no": 8, "yes": 1}}, {"f": {"no": 5, "yes": 4}})


VAL = [
    {"text": "great plot", "label": "positive"},
    {"text": "great cast", "label": "positive"},
    {"text": "meh plot", "label": "positive"},
    {"text": "meh cast", "label": "positive"},
    {"text": "awful plot", "label": "negative"},
]


def biased_model(messages: list[dict[str, str]]) -> str:
    """Without demos: "positive" for everything (a collapsed classifier, right 4 times of 5 here).
    With demos: reads the review, and calls "meh" negative (right 3 times of 5)."""
    if len(messages) <= 2:
        return "positive"
    text = messages[-1]["content"]
    return "positive" if "great" in text else "negative"


def metric(example, prediction, trace=None) -> bool:  # type: ignore[no-untyped-def]
    return bool(prediction == example["label"])


def test_random_search_never_keeps_a_collapsed_candidate_over_one_that_is_not() -> None:
    lmprog.configure(lm=ScriptedLM(biased_model), load_prompts=False)
    result = optimize(
        sentiment,
        TRAIN,
        metric,
        valset=VAL,
        optimizer="random_search",
        num_candidates=0,
        save=False,
        threads=1,
        progress=False,
    )
    by_label = {c.label: c for c in result.candidates}
    zero, labeled = by_label["zero-shot"], by_label["labeled"]
    assert zero.score == pytest.approx(80.0) and zero.collapsed
    assert zero.label_counts == {"sentiment": {"positive": 5}}
    assert labeled.score == pytest.approx(60.0) and not labeled.collapsed
    # the higher-scoring candidate predicts one label for everything: the other one is chosen
    assert result.score == pytest.approx(60.0)
    assert result.states[sentiment].demos == labeled.states[sentiment].demos
    assert result.label_counts == {"sentiment": {"negative": 3, "positive": 2}}
    assert "predicted labels: sentiment: negative 3, positive 2" in result.summary()


def test_bootstrap_demos_from_a_collapsed_model_are_topped_up_with_the_other_label() -> None:
    # the model answers "positive" to everything: only positive examples pass, so bootstrapping
    # alone would give four positive demos; the set is balanced with labeled negative ones
    lmprog.configure(lm=ScriptedLM(lambda messages: "positive"), load_prompts=False)
    result = optimize(
        sentiment,
        TRAIN,
        metric,
        valset=VAL,
        optimizer="bootstrap",
        max_rounds=1,
        save=False,
        threads=1,
        progress=False,
    )
    labels = [d["output"] for d in result.states[sentiment].demos]
    assert len(labels) == 4 and sorted(labels) == ["negative", "negative", "positive", "positive"]
    assert labels[-1] != labels[-2]
    assert result.label_counts == {"sentiment": {"positive": 5}}  # reported as measured


def test_mipro_never_returns_a_collapsed_configuration_over_one_that_is_not(tmp_path: Path) -> None:
    with lmprog.context(lm=ScriptedLM(biased_model), load_prompts=False, cache_dir=tmp_path / "cache"):
        result = optimize(
            sentiment,
            TRAIN,
            metric,
            valset=VAL,
            optimizer="mipro",
            save=False,
            apply=False,
            storage=str(tmp_path / "study.db"),
            progress=False,
            num_trials=4,
            minibatch_size=5,
            num_instructions=1,
            num_demo_sets=1,
            full_eval_every=2,
            threads=1,
        )
    baseline = next(c for c in result.candidates if c.label == "baseline")
    assert baseline.score == pytest.approx(80.0) and baseline.collapsed
    assert result.baseline_score == pytest.approx(80.0)
    assert result.score == pytest.approx(60.0)  # the best configuration that is not collapsed
    assert result.states[sentiment].demos or result.states[sentiment].pool is not None
    assert result.label_counts == {"sentiment": {"negative": 3, "positive": 2}}


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


def test_enum_and_annotated_outputs_are_categorical() -> None:
    assert is_categorical(Priority) and is_categorical(Annotated[bool, "flag"])
    assert is_categorical(Literal[1, 2]) and not is_categorical(str) and not is_categorical(int)
