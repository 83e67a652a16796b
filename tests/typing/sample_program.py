# mypy: disable-error-code="empty-body"
"""A user's program, checked by mypy in ``tests/test_typing.py`` (never run by pytest): calls of
lm_functions have their declared types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Literal, assert_type

from pydantic import BaseModel

import lmprog
from lmprog import LMFunction, lm_function, traced
from lmprog.function import AsyncLMFunction


class Answer(BaseModel):
    reasoning: str
    answer: str


@lm_function
def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify a support ticket by its topic."""


@lm_function(max_retries=2)
def answer(question: str, context: list[str]) -> Answer:
    """Answer the question using only the context."""


@lm_function
async def summarize(text: str, words: int = 20) -> str:
    """Summarize the text."""


@traced
def pipeline(question: str) -> str:
    return answer(question=question, context=["Dune was written by Frank Herbert."]).answer


async def main() -> None:
    assert_type(classify("my card was charged twice"), Literal["billing", "bug", "feature"])
    assert_type(answer("Who wrote Dune?", ["..."]), Answer)
    assert_type(answer("Who wrote Dune?", ["..."]).answer, str)
    assert_type(summarize("a long text"), Awaitable[str])
    assert_type(await summarize("a long text", words=5), str)
    assert_type(pipeline("Who wrote Dune?"), str)
    assert isinstance(classify, LMFunction) and isinstance(summarize, AsyncLMFunction)
    assert_type(classify.instruction, str)
    assert_type(lmprog.evaluate(classify, [], lambda ex, pred: 1.0).score, float)
    best = lmprog.best_of(3, classify, lambda inputs, pred: pred == "bug")
    assert_type(best("my card was charged twice"), Literal["billing", "bug", "feature"])
    assert_type(lmprog.best_of(2, pipeline, lambda inputs, pred: len(pred))("Who wrote Dune?"), str)
    refined = lmprog.refine(
        answer, lambda inputs, pred: lmprog.Feedback(float(bool(pred.answer)), "an empty answer"), attempts=2
    )
    assert_type(refined("Who wrote Dune?", context=["..."]), Answer)
    assert_type(classify.stream("my card was charged twice"), Iterator[lmprog.StreamEvent])
    assert_type(summarize.stream("a long text"), AsyncIterator[lmprog.StreamEvent])
    assert_type(classify.astream("my card was charged twice"), AsyncIterator[lmprog.StreamEvent])
