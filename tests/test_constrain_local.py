"""Constrained decoding on the embedded model, end to end: every reply of SmolLM2-135M parses at
the first request, for each output kind, zero-shot (the model alone writes unparsable text for
most of these prompts). Runs with the ``local`` marker; needs the embedded runtime."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import lmprog
from lmprog import constrain, lm_function
from lmprog.usage import track

pytestmark = pytest.mark.local


class Verdict(BaseModel):
    reasoning: str
    answer: Literal["yes", "no"]


@dataclasses.dataclass
class Contact:
    name: str
    age: int


@lm_function
def topic(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify a support ticket by its topic."""


@lm_function
def count_items(text: str) -> int:
    """How many items does the text list?"""


@lm_function
def entails(premise: str, hypothesis: str) -> Verdict:
    """Does the premise entail the hypothesis?"""


@lm_function
def keywords(text: str) -> list[str]:
    """List the keywords of the text."""


@lm_function
def contacts(text: str) -> list[Contact]:
    """Extract the people mentioned, with their ages."""


@lm_function
def urgent(ticket: str) -> bool:
    """Is the ticket urgent?"""


CASES: list[tuple[Any, tuple[Any, ...], Any]] = [
    (topic, ("I was charged twice for my subscription this month.",), str),
    (count_items, ("Bring apples, pears, bread and milk.",), int),
    (entails, ("No dog is sleeping on the porch.", "A dog is sleeping on the porch."), Verdict),
    (keywords, ("Solar panels lower electricity bills in sunny regions.",), list),
    (contacts, ("Alice is 31 and her brother Bob is 28.",), list),
    (urgent, ("The whole site is down and customers cannot pay!",), bool),
]


@pytest.mark.parametrize(("fn", "args", "kind"), CASES, ids=[case[0].name for case in CASES])
def test_the_embedded_model_replies_in_the_format_at_the_first_request(
    fn: Any, args: Any, kind: type
) -> None:
    lm = lmprog.LM("local", cache=False)
    assert lm.constraint_kind() == "grammar"
    with lmprog.context(lm=lm), track() as used:
        value = fn(*args)
    assert isinstance(value, kind)
    assert used.total.requests == 1  # no retry: the grammar left no other format to write


def test_without_the_constraint_the_same_request_carries_no_grammar() -> None:
    """The off switch reaches the embedded model: the grammar is what made the difference."""
    assert constrain.grammar(topic.signature) is not None
    lm = lmprog.LM("local", cache=False)
    with lmprog.context(lm=lm, constrain=False), track() as used:
        try:
            topic("I was charged twice for my subscription this month.")
        except lmprog.OutputParseError:
            pass  # unconstrained, the 135M model often writes a sentence instead of a label
    assert 1 <= used.total.requests <= 2  # a format failure costs at most 2 requests
