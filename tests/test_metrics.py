from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

import pytest
from pydantic import BaseModel

from lmprog import metrics
from lmprog.data import Example
from lmprog.errors import UsageError
from lmprog.metrics import Metric, contains, exact_match, f1, label_of, normalize_text, prediction_of


class Answer(BaseModel):
    reasoning: str
    answer: str


@dataclass
class Category:
    category: str
    confidence: float


class Color(enum.Enum):
    RED = "red"


class Pair(NamedTuple):
    output: str
    note: str


# -- normalization and scores (SQuAD v1.1 evaluation script behaviour) ------------------------------
@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The  Eiffel Tower!", "eiffel tower"),
        ("an apple, a pear.", "apple pear"),
        ("U.S.A.", "usa"),
        ("Janet’s ducks", "janets ducks"),
        ("Theater", "theater"),
        (18.0, "18"),
        (Color.RED, "red"),
        (None, ""),
    ],
)
def test_normalize_text(raw, normalized):
    assert normalize_text(raw) == normalized


def test_exact_match_squad_examples():
    assert exact_match({"answer": "Denver Broncos"}, "the Denver Broncos.") == 1.0
    assert exact_match({"answer": "Denver Broncos"}, "Denver Broncos won") == 0.0
    assert exact_match({"answer": 18}, "18") == 1.0


def test_f1_squad_examples():
    # gold "Denver Broncos" vs "Broncos": precision 1, recall 1/2 -> 2/3
    assert f1({"answer": "Denver Broncos"}, "Broncos") == pytest.approx(2 / 3)
    # articles and punctuation do not count; repeated tokens count by multiplicity
    assert f1({"answer": "the cat sat"}, "a cat, a cat sat!") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert f1({"answer": "Paris"}, "London") == 0.0
    assert f1({"answer": "the"}, "") == 1.0  # both normalize to nothing
    assert f1({"answer": "Paris"}, "") == 0.0


def test_contains_matches_whole_words():
    assert contains({"answer": "Paris"}, "It is Paris, of course.") == 1.0
    assert contains({"answer": "new york"}, "in New York City") == 1.0
    assert contains({"answer": "Paris"}, "comparison") == 0.0


def test_several_gold_answers_take_the_best():
    ex = {"answer": ["Denver Broncos", "Broncos"]}
    assert exact_match(ex, "broncos") == 1.0
    assert f1(ex, "the Broncos team") == pytest.approx(2 * 0.5 * 1 / 1.5)


# -- label lookup ----------------------------------------------------------------------------------
def test_label_lookup_order():
    assert label_of({"question": "q", "label": "L", "output": "O"}) == "L"
    assert label_of({"output": "O", "answer": "A"}) == "A"
    # the only non-input field of a marked example
    assert label_of(Example(text="t", category="billing").with_inputs("text")) == "billing"
    assert label_of("plain") == "plain"
    assert label_of({"gold": 1, "x": 2}, "gold") == 1
    with pytest.raises(UsageError, match="which field of the example is the label"):
        label_of({"text": "t", "category": "c"})
    with pytest.raises(UsageError, match="no field 'nope'"):
        label_of({"answer": 1}, "nope")


# -- prediction lookup -----------------------------------------------------------------------------
def test_prediction_lookup():
    assert prediction_of("x") == "x"
    assert prediction_of(Answer(reasoning="r", answer="a")) == "a"
    assert prediction_of({"output": "o", "other": 1}) == "o"
    assert prediction_of(Pair(output="o", note="n")) == "o"
    assert prediction_of(Category("billing", 0.9), like="category") == "billing"
    assert prediction_of({"only": 3}) == 3
    with pytest.raises(UsageError, match="cannot tell which field of the prediction"):
        prediction_of(Category("billing", 0.9))
    with pytest.raises(UsageError, match="has no field 'answer'"):
        prediction_of(Category("billing", 0.9), "answer")


def test_metrics_on_structured_predictions():
    ex = Example(question="q", answer="Paris")
    assert exact_match(ex, Answer(reasoning="...", answer="paris")) == 1.0
    # the label's field name is looked up on the prediction first
    ticket = Example(text="refund please", category="billing").with_inputs("text")
    assert exact_match(ticket, Category("Billing", 0.7)) == 1.0
    assert exact_match(ticket, Color.RED) == 0.0


def test_on_picks_fields():
    ex = {"question": "q", "gold": "Paris", "answer": "ignored"}
    m = exact_match.on(label="gold", pred="text")
    assert m(ex, {"text": "Paris", "answer": "London"}) == 1.0
    assert m(ex, "paris") == 1.0  # a plain value has no fields to pick from
    assert f1.on("category")({"category": "x y"}, Category("x", 1.0)) == pytest.approx(2 / 3)
    assert m.__name__ == "exact_match"
    assert "label='gold'" in repr(m)


def test_custom_metric_and_trace_argument():
    longer = Metric(lambda gold, pred: len(str(pred)) >= len(str(gold)), name="at_least_as_long")
    assert longer({"answer": "abc"}, "abcd", None) == 1.0
    assert longer({"answer": "abc"}, "ab") == 0.0
    assert longer.__name__ == "at_least_as_long"


def test_module_exports():
    assert {"exact_match", "f1", "contains"} <= set(dir(metrics))
