"""The benchmark tasks as idiomatic DSPy 3.x programs: class-based signatures, ``dspy.Predict``
and a ``dspy.Module`` for the two-hop pipeline.

Instructions and field descriptions are those of the lmprog twins in ``lmprog_programs.py``.
``dspy.Predict`` (no ChainOfThought) keeps both programs the same shape: one LM call per
prediction, no reasoning field, which the lmprog functions do not have either; GSM8K is the
exception on both sides (``dspy.ChainOfThought`` against ``@lm_function(reasoning=True)``).
"""

from typing import Any, Literal

import dspy
import tasks
from tasks import Splits

HOP_K = 2


def _label_metric(example: Any, prediction: Any, trace: Any = None) -> float:
    return tasks.exact(example.label, getattr(prediction, "label", None))


def build_banking77(splits: Splits) -> tuple[Any, Any]:
    intent = Literal[tuple(splits.labels)]  # type: ignore[valid-type]

    class ClassifyIntent(dspy.Signature):
        """Classify the intent of a banking customer's message."""

        query: str = dspy.InputField(desc="the customer's message.")
        label: intent = dspy.OutputField()  # type: ignore[valid-type]

    return dspy.Predict(ClassifyIntent), _label_metric


class ClassifyQuestion(dspy.Signature):
    """Classify the question by the kind of answer it asks for."""

    question: str = dspy.InputField(desc="a question.")
    label: Literal["abbreviation", "description", "entity", "human", "location", "number"] = dspy.OutputField(
        desc="abbreviation for the meaning of an abbreviation; description for a definition, "
        "reason or manner; entity for a thing (an animal, color, food, product...); human for "
        "a person or group; location for a place; number for a count, date or amount."
    )


def build_trec(splits: Splits) -> tuple[Any, Any]:
    return dspy.Predict(ClassifyQuestion), _label_metric


class Entails(dspy.Signature):
    """Does the premise entail the hypothesis? Mind the negations."""

    premise: str = dspy.InputField(desc="a sentence taken as true.")
    hypothesis: str = dspy.InputField(desc="a sentence that may or may not follow from the premise.")
    label: Literal["yes", "no"] = dspy.OutputField()


def build_scone(splits: Splits) -> tuple[Any, Any]:
    return dspy.Predict(Entails), _label_metric


class ClassifyIris(dspy.Signature):
    """Name the iris species from the flower's measurements (in centimeters)."""

    sepal_length: float = dspy.InputField(desc="sepal length in cm.")
    sepal_width: float = dspy.InputField(desc="sepal width in cm.")
    petal_length: float = dspy.InputField(desc="petal length in cm.")
    petal_width: float = dspy.InputField(desc="petal width in cm.")
    label: Literal["setosa", "versicolor", "virginica"] = dspy.OutputField()


def build_iris(splits: Splits) -> tuple[Any, Any]:
    return dspy.Predict(ClassifyIris), _label_metric


class WriteQuery(dspy.Signature):
    """Write a short search query for the missing fact needed to answer the question."""

    question: str = dspy.InputField(desc="a question that needs two facts.")
    passages: list[str] = dspy.InputField(desc="passages found so far.")
    query: str = dspy.OutputField()


class AnswerQuestion(dspy.Signature):
    """Answer the question with a short phrase (a name, a date, yes or no) from the passages."""

    question: str = dspy.InputField(desc="the question.")
    passages: list[str] = dspy.InputField(desc="passages that may hold the answer.")
    answer: str = dspy.OutputField()


class MultiHop(dspy.Module):
    """Two-hop retrieval: search, write a second query from what was found, search, answer."""

    def __init__(self) -> None:
        super().__init__()
        self.write_query = dspy.Predict(WriteQuery)
        self.answer_question = dspy.Predict(AnswerQuestion)

    def forward(self, question: str) -> dspy.Prediction:
        search = tasks.retriever().search
        found = search(question, HOP_K)
        query = self.write_query(question=question, passages=[p.render() for p in found]).query
        for passage in search(query, HOP_K):
            if passage not in found:
                found.append(passage)
        answer = self.answer_question(question=question, passages=[p.render() for p in found]).answer
        return dspy.Prediction(answer=answer, titles=[p.title for p in found])


def _answer_metric(example: Any, prediction: Any, trace: Any = None) -> float:
    return tasks.exact(example.answer, getattr(prediction, "answer", None))


def build_hotpotqa(splits: Splits) -> tuple[Any, Any]:
    return MultiHop(), _answer_metric


class SolveMath(dspy.Signature):
    """Solve the grade-school math word problem. Answer with the final number only."""

    question: str = dspy.InputField(desc="a math word problem.")
    answer: str = dspy.OutputField()


def _number_metric(example: Any, prediction: Any, trace: Any = None) -> float:
    return tasks.number_match(example.answer, getattr(prediction, "answer", None))


def build_gsm8k(splits: Splits) -> tuple[Any, Any]:
    return dspy.ChainOfThought(SolveMath), _number_metric


BUILDERS = {
    "gsm8k": build_gsm8k,
    "banking77": build_banking77,
    "trec": build_trec,
    "scone": build_scone,
    "iris": build_iris,
    "hotpotqa": build_hotpotqa,
}


def examples(rows: list[dict[str, Any]], inputs: tuple[str, ...]) -> list[dspy.Example]:
    return [dspy.Example(**row).with_inputs(*inputs) for row in rows]
