"""``@lm_function(reasoning=True)``: the model writes ``reasoning:`` before its answer; the call
returns the declared type, the lm span and bootstrapped demos keep the reasoning."""

from __future__ import annotations

import random
from typing import Any, Literal

import pydantic
import pytest
from gbnf_engine import GBNF

import lmprog
from lmprog import constrain, lm_function
from lmprog.errors import OutputParseError, UsageError
from lmprog.format import parse_output
from lmprog.function import State, use_states
from lmprog.optimize import optimize
from lmprog.source import signature_hash
from lmprog.testing import ScriptedLM


@lm_function(reasoning=True)
def classify(ticket: str) -> Literal["billing", "bug"]:
    """Classify a support ticket."""


class Person(pydantic.BaseModel):
    name: str
    age: int


@lm_function(reasoning=True)
def extract(text: str) -> Person:
    """Extract the person."""


def test_the_request_asks_for_reasoning_before_the_output() -> None:
    system = classify.messages("x")[0]["content"]
    assert system.endswith("Reply with these lines:\nreasoning: <text>\noutput: <one of: billing, bug>")


def test_the_call_returns_the_declared_type_and_the_span_keeps_the_reasoning() -> None:
    lm = ScriptedLM(["reasoning: a double charge is about money.\noutput: billing"])
    with lmprog.context(lm=lm), lmprog.trace() as t:
        assert classify("charged twice") == "billing"
    (sp,) = t.roots
    assert sp.reasoning == "a double charge is about money."
    assert sp.output == "billing"
    assert sp.to_dict()["reasoning"] == "a double charge is about money."


def test_a_record_return_is_built_without_the_reasoning() -> None:
    lm = ScriptedLM(["reasoning: the text names Bo, aged 3.\nname: Bo\nage: 3"])
    with lmprog.context(lm=lm), lmprog.trace() as t:
        assert extract("Bo is 3") == Person(name="Bo", age=3)
    assert t.roots[0].reasoning == "the text names Bo, aged 3."


def test_a_reply_without_reasoning_is_a_format_failure_retried_once() -> None:
    lm = ScriptedLM(["output: billing", "reasoning: money.\noutput: billing"])
    with lmprog.context(lm=lm):
        assert classify("charged twice") == "billing"
    assert len(lm.calls) == 2
    assert "missing line(s): reasoning:" in lm.calls[1].messages[-1]["content"]
    lm = ScriptedLM(["output: billing", "output: billing"])
    with lmprog.context(lm=lm), pytest.raises(OutputParseError):
        classify("charged twice")
    assert len(lm.calls) == 2


def test_other_functions_are_unchanged() -> None:
    @lm_function
    def plain(ticket: str) -> Literal["billing", "bug"]:
        """Classify a support ticket."""

    assert plain.wire_signature is plain.signature
    assert "reasoning" not in plain.messages("x")[0]["content"]
    assert plain.max_tokens is not None and classify.max_tokens is None  # thinking needs room


def test_the_grammar_forces_reasoning_then_the_answer() -> None:
    grammar = GBNF(constrain.grammar(classify.wire_signature) or "")
    assert grammar.matches("reasoning: money.\noutput: billing")
    assert not grammar.matches("output: billing")
    assert not grammar.matches("billing")
    rng = random.Random(7)
    for _ in range(20):
        reply = grammar.sample(rng)
        assert reply.startswith("reasoning: ")
        assert parse_output(classify.wire_signature, reply)["output"] in ("billing", "bug")
    lm = ScriptedLM(["reasoning: money.\noutput: billing"], constraint="grammar")
    with lmprog.context(lm=lm):
        assert classify("charged twice") == "billing"
    assert lm.calls[0].constraint == constrain.grammar(classify.wire_signature)


def test_the_json_schema_requires_reasoning_first() -> None:
    schema = constrain.json_schema(extract.wire_signature)
    assert list(schema["properties"]) == ["reasoning", "name", "age"]
    assert schema["required"] == ["reasoning", "name", "age"]
    lm = ScriptedLM(['{"reasoning": "named Bo.", "name": "Bo", "age": 3}'], constraint="json_schema")
    with lmprog.context(lm=lm), lmprog.trace() as t:
        assert extract("Bo is 3") == Person(name="Bo", age=3)
    assert t.roots[0].reasoning == "named Bo."


def test_demos_render_with_and_without_reasoning() -> None:
    demos = [
        {"ticket": "app crashes", "reasoning": "a crash is a defect.", "output": "bug"},
        {"ticket": "charged twice", "output": "billing"},  # a labeled demo: no reasoning
    ]
    with use_states({classify: State(demos=demos)}):
        messages = classify.messages("x")
    assert messages[2]["content"] == "reasoning: a crash is a defect.\noutput: bug"
    assert messages[4]["content"] == "output: billing"


def only_first_right(messages: list[dict[str, str]]) -> str:
    label = "billing" if "charged" in messages[-1]["content"] else "bug"
    return f"reasoning: it mentions {label}.\noutput: {label}"


def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    return bool(prediction == example["label"])


def test_bootstrapped_demos_carry_the_reasoning() -> None:
    rows = [{"ticket": "card charged twice", "label": "billing"}]
    with lmprog.context(lm=ScriptedLM(only_first_right), load_prompts=False):
        result = optimize(
            classify,
            rows,
            metric,
            optimizer="bootstrap",
            save=False,
            apply=False,
            progress=False,
            max_rounds=1,
        )
    assert list(result.states[classify].demos) == [
        {"ticket": "card charged twice", "output": "billing", "reasoning": "it mentions billing."}
    ]


def test_the_flag_is_part_of_the_signature_hash() -> None:
    def make(reasoning: bool) -> Any:
        def classify(ticket: str) -> Literal["billing", "bug"]:
            """Classify a support ticket."""

        return lm_function(reasoning=reasoning)(classify)

    assert signature_hash(make(True)) != signature_hash(make(False))


def test_a_return_type_with_its_own_reasoning_field_is_refused() -> None:
    class Thought(pydantic.BaseModel):
        reasoning: str
        answer: str

    def think(question: str) -> Thought:
        """Answer."""

    with pytest.raises(UsageError, match="reasoning"):
        lm_function(reasoning=True)(think)


class Interval(pydantic.BaseModel):
    start: int
    end: int

    @pydantic.model_validator(mode="after")
    def ordered(self) -> Interval:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self


@lm_function(reasoning=True)
def locate(text: str) -> Interval:
    """Locate the span."""


def test_the_return_types_validators_still_refuse_and_retry() -> None:
    lm = ScriptedLM(["reasoning: guess.\nstart: 5\nend: 2", "reasoning: fixed.\nstart: 2\nend: 5"])
    with lmprog.context(lm=lm), lmprog.trace() as t:
        assert locate("x") == Interval(start=2, end=5)
    assert "end must not be before start" in lm.calls[1].messages[-1]["content"]
    assert t.roots[0].reasoning == "fixed."
