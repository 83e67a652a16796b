"""The one parse-failure type: structured problems (field, path, validation vs format) from type
specs, from the completion reader and from ``parse_output``, with the messages unchanged."""

from __future__ import annotations

import pickle

import pytest
from pydantic import BaseModel, field_validator

import lmprog
import lmprog.format
import lmprog.prompt
import lmprog.signature
from lmprog.errors import OutputParseError
from lmprog.format import parse_output
from lmprog.signature import ParseFailure, Problem, field_spec, signature_from_function
from lmprog.testing import ScriptedLM


class Person(BaseModel):
    name: str
    age: int


class Checked(BaseModel):
    reasoning: str
    value: int

    @field_validator("value")
    @classmethod
    def positive(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be positive")
        return v


def people(text: str) -> list[Person]:
    """Find the people."""
    raise NotImplementedError


def check(text: str) -> Checked:
    """Check."""
    raise NotImplementedError


def test_every_old_import_path_names_the_same_type() -> None:
    assert lmprog.prompt.ParseFailure is lmprog.format.ParseFailure is lmprog.signature.ParseFailure
    assert issubclass(ParseFailure, ValueError)


def test_a_spec_failure_is_located_inside_the_value() -> None:
    sig = signature_from_function(people)
    with pytest.raises(ParseFailure) as info:
        field_spec(sig.outputs[0]).validate([{"name": "a", "age": 1}, {"name": "b", "age": "x"}])
    (problem,) = info.value.problems
    assert (problem.field, problem.path, problem.validation) == (None, "[1].age", False)
    assert info.value.errors == [f"[1].age: {problem.message}"]


def test_reader_problems_name_their_field_and_kind() -> None:
    sig = signature_from_function(check)
    with pytest.raises(ParseFailure) as info:
        parse_output(sig, "reasoning: r\nvalue: many")
    assert info.value.problems == [Problem("expected an integer, got 'many'", field="value")]
    assert info.value.errors == ["value: expected an integer, got 'many'"]
    assert info.value.validation is False

    with pytest.raises(ParseFailure) as info:
        parse_output(sig, "reasoning: r\nvalue: -3")
    assert info.value.errors == ["value: Value error, must be positive"]
    assert [p.validation for p in info.value.problems] == [True]
    assert info.value.validation is True

    with pytest.raises(ParseFailure) as info:  # a missing line is a format problem
        parse_output(sig, "value: 4")
    assert info.value.problems == [Problem("missing line(s): reasoning:")]
    assert info.value.validation is False


def test_failures_built_from_messages_keep_the_old_constructor() -> None:
    failure = ParseFailure(["a", "b"], validation=True)
    assert failure.errors == ["a", "b"] and failure.validation is True
    assert str(failure) == "a; b"
    assert ParseFailure([]).errors == ["the reply did not follow the format"]
    nested = ParseFailure("expected an integer", path=".age").under("[2]").in_field("people")
    assert nested.errors == ["people: [2].age: expected an integer"]


def test_a_failure_survives_pickling_with_its_problems() -> None:
    failure = ParseFailure([Problem("bad", field="x", path="[0]", validation=True), "worse"])
    copy = pickle.loads(pickle.dumps(failure))
    assert copy.problems == failure.problems and copy.errors == ["x: [0]: bad", "worse"]


def test_the_retry_message_and_the_final_error_carry_the_same_messages() -> None:
    lm = ScriptedLM(["reasoning: r\nvalue: many"] * 3)
    checked = lmprog.lm_function(lm=lm, max_retries=2)(check)
    with pytest.raises(OutputParseError) as info:
        checked("x")
    assert info.value.errors == ["value: expected an integer, got 'many'"]
    retry = lm.calls[1].messages[-1]["content"]
    assert "value: expected an integer, got 'many'" in retry
