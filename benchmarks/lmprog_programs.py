"""The benchmark tasks as plain lmprog programs: typed lm_functions, a docstring as the spec.

Each ``build_<task>(splits)`` returns ``(program, metric)``; the DSPy twins in
``dspy_programs.py`` use the same instructions and field descriptions word for word.
(No ``from __future__ import annotations`` here: the Literal label sets are made at run time.)
"""

from dataclasses import dataclass
from typing import Any, Literal

import tasks
from tasks import Splits

from lmprog import lm_function, traced

HOP_K = 2  # passages per hop


def _label_metric(example: Any, prediction: Any, trace: Any = None) -> float:
    return tasks.exact(example["label"], prediction)


def build_banking77(splits: Splits) -> tuple[Any, Any]:
    Intent = Literal[tuple(splits.labels)]  # type: ignore[valid-type]

    @lm_function
    def classify_intent(query: str) -> Intent:  # type: ignore[valid-type]
        """Classify the intent of a banking customer's message.

        Args:
            query: the customer's message.
        """

    return classify_intent, _label_metric


def build_trec(splits: Splits) -> tuple[Any, Any]:
    @lm_function
    def classify_question(
        question: str,
    ) -> Literal["abbreviation", "description", "entity", "human", "location", "number"]:
        """Classify the question by the kind of answer it asks for.

        Args:
            question: a question.

        Returns:
            abbreviation for the meaning of an abbreviation; description for a definition,
            reason or manner; entity for a thing (an animal, color, food, product...); human for
            a person or group; location for a place; number for a count, date or amount.
        """

    return classify_question, _label_metric


def build_scone(splits: Splits) -> tuple[Any, Any]:
    @lm_function
    def entails(premise: str, hypothesis: str) -> Literal["yes", "no"]:
        """Does the premise entail the hypothesis? Mind the negations.

        Args:
            premise: a sentence taken as true.
            hypothesis: a sentence that may or may not follow from the premise.
        """

    return entails, _label_metric


def build_iris(splits: Splits) -> tuple[Any, Any]:
    @lm_function
    def classify_iris(
        sepal_length: float, sepal_width: float, petal_length: float, petal_width: float
    ) -> Literal["setosa", "versicolor", "virginica"]:
        """Name the iris species from the flower's measurements (in centimeters).

        Args:
            sepal_length: sepal length in cm.
            sepal_width: sepal width in cm.
            petal_length: petal length in cm.
            petal_width: petal width in cm.
        """

    return classify_iris, _label_metric


@lm_function
def write_query(question: str, passages: list[str]) -> str:
    """Write a short search query for the missing fact needed to answer the question.

    Args:
        question: a question that needs two facts.
        passages: passages found so far.
    """


@lm_function
def answer_question(question: str, passages: list[str]) -> str:
    """Answer the question with a short phrase (a name, a date, yes or no) from the passages.

    Args:
        question: the question.
        passages: passages that may hold the answer.
    """


@dataclass
class HopAnswer:
    answer: str
    titles: list[str]


@traced
def multihop(question: str) -> HopAnswer:
    """Two-hop retrieval: search, write a second query from what was found, search, answer."""
    search = tasks.retriever().search
    found = search(question, HOP_K)
    query = write_query(question=question, passages=[p.render() for p in found])
    for passage in search(query, HOP_K):
        if passage not in found:
            found.append(passage)
    answer = answer_question(question=question, passages=[p.render() for p in found])
    return HopAnswer(answer, [p.title for p in found])


def _answer_metric(example: Any, prediction: Any, trace: Any = None) -> float:
    return tasks.exact(example["answer"], prediction.answer)


def build_hotpotqa(splits: Splits) -> tuple[Any, Any]:
    return multihop, _answer_metric


@lm_function(reasoning=True)
def solve_math(question: str) -> str:
    """Solve the grade-school math word problem. Answer with the final number only.

    Args:
        question: a math word problem.
    """


def _number_metric(example: Any, prediction: Any, trace: Any = None) -> float:
    return tasks.number_match(example["answer"], prediction)


def build_gsm8k(splits: Splits) -> tuple[Any, Any]:
    return solve_math, _number_metric


BUILDERS = {
    "gsm8k": build_gsm8k,
    "banking77": build_banking77,
    "trec": build_trec,
    "scone": build_scone,
    "iris": build_iris,
    "hotpotqa": build_hotpotqa,
}
