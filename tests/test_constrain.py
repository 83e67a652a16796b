"""Constrained decoding: grammars and JSON schemas derived from the type specs, what each kind of LM
receives, the off switch, cache keys, and retries only where they can help."""

from __future__ import annotations

import dataclasses
import enum
import json
import random
from typing import Annotated, Any, Literal, Optional, TypedDict

import annotated_types as at
import jsonschema
import pytest
from gbnf_engine import GBNF, TooDeep
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, field_validator

import lmprog
from lmprog import constrain, lm_function
from lmprog.errors import OutputParseError
from lmprog.prompt import ParseFailure, format_output, output_values, parse_output, to_jsonable
from lmprog.testing import ScriptedLM


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Movie(TypedDict):
    title: str
    year: int


class Person(BaseModel):
    name: str
    age: int
    tags: list[str] = []


class Node(BaseModel):
    label: str
    child: Optional[Node] = None  # noqa: UP045 - recursive model


class Verdict(BaseModel):
    reasoning: str
    answer: Literal["yes", "no"]
    confidence: float


class Extraction(BaseModel):
    people: list[Person]
    where: Optional[str] = None  # noqa: UP045
    counts: dict[str, int]
    color: Color
    done: bool


class Positive(BaseModel):
    value: int

    @field_validator("value")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive")
        return value


class Bounded(BaseModel):
    score: int = Field(ge=0, le=10)
    note: str


#: Every output kind the parser accepts, as return annotations.
KINDS: dict[str, Any] = {
    "literal": Literal["billing", "bug", "feature request"],
    "literal_int": Literal[1, 2, 3],
    "enum": Color,
    "enum_int": Level,
    "bool": bool,
    "int": int,
    "float": float,
    "list_str": list[str],
    "list_int": list[int],
    "set_literal": set[Literal["a", "b", "c"]],
    "tuple": tuple[str, int],
    "tuple_var": tuple[float, ...],
    "dict": dict[str, int],
    "dict_enum_keys": dict[Color, list[bool]],
    "dict_literal_keys": dict[Literal['say "hi"', "café"], Literal["é", 'a "b"']],
    "optional_int": Optional[int],  # noqa: UP045
    "union": int | list[int],
    "optional_literal": Optional[Literal["x", "y"]],  # noqa: UP045
    "list_dataclass": list[Point],
    "typeddict": Movie,
    "pydantic": Person,
    "recursive": Node,
    "several_fields": Verdict,
    "nested": Extraction,
    "dataclass": Point,
    "constrained_int": Annotated[int, at.Ge(0)],
    "list_constrained": list[Annotated[int, at.Interval(ge=-5, lt=100)]],
    "optional_constrained": Optional[Annotated[float, Field(gt=0)]],  # noqa: UP045
}


def make(annotation: Any, **options: Any) -> Any:
    def task(text: str) -> None:
        """Do the task."""

    task.__annotations__ = {"text": "str", "return": annotation}
    return lm_function(**options)(task)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_output_kind_gets_a_grammar_and_a_json_schema(kind: str) -> None:
    fn = make(KINDS[kind])
    text = constrain.grammar(fn.signature)
    assert text is not None and text.startswith("root ::= ")
    GBNF(text)  # well-formed, every rule defined
    schema = constrain.json_schema(fn.signature)
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("kind", list(KINDS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False))
def test_every_reply_the_grammar_allows_parses(kind: str, rng: random.Random) -> None:
    fn = make(KINDS[kind])
    grammar = GBNF(constrain.grammar(fn.signature) or "")
    try:
        reply = grammar.sample(rng)
    except TooDeep:
        assume(False)
    try:
        parse_output(fn.signature, reply)
    except ParseFailure as failure:
        # the only refusal left is a validator's, never a format error
        assert failure.validation, (reply, failure.errors)


SAMPLED = [
    "literal",
    "literal_int",
    "enum",
    "enum_int",
    "bool",
    "list_int",
    "set_literal",
    "tuple",
    "dict",
    "dict_literal_keys",
    "optional_int",
    "optional_literal",
    "list_dataclass",
    "typeddict",
    "dataclass",
    "constrained_int",
    "list_constrained",
]


@pytest.mark.parametrize("kind", SAMPLED)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(data=st.data())
def test_demos_are_rendered_in_the_form_the_grammar_forces(kind: str, data: st.DataObject) -> None:
    """What the model is forced to write is what demos show it: format_output of any value is in
    the grammar's language, and the structured (JSON schema) form of it validates."""
    annotation = KINDS[kind]
    fn = make(annotation)
    try:
        value = data.draw(st.from_type(annotation))
        rendered = format_output(output_values(fn.signature, value))
        jsonable = to_jsonable(value)
        json.dumps(jsonable, allow_nan=False)
    except (ValueError, OverflowError):
        assume(False)
    assume(all(abs(n) < 1e15 for n in _numbers(jsonable)))
    # several output fields: the grammar keeps each text value on its line (a documented limit)
    assume(
        not fn.signature.multi_output or "\n" not in rendered.replace("\n", "", len(fn.signature.outputs) - 1)
    )
    assert GBNF(constrain.grammar(fn.signature) or "").matches(rendered), rendered
    structured = {name: to_jsonable(v) for name, v in output_values(fn.signature, value).items()}
    jsonschema.validate(structured, constrain.json_schema(fn.signature))


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    return []


@pytest.mark.parametrize("number", [0.009418725439602023, 0.0001234567890123456, 1e-300, -2.5e99, 1e16])
def test_every_float_as_json_writes_it_is_in_the_grammar(number: float) -> None:
    """Regression: 18+ digits after the point (small floats) and 3-digit exponents were refused, so
    a demo showing such a value was outside what the model may write."""
    fn = make(float)
    rendered = format_output(output_values(fn.signature, number))
    assert GBNF(constrain.grammar(fn.signature) or "").matches(rendered), rendered
    assert parse_output(fn.signature, rendered) == number


def test_several_output_fields_are_name_lines_in_field_order() -> None:
    fn = make(Verdict)
    grammar = GBNF(constrain.grammar(fn.signature) or "")
    assert grammar.matches("reasoning: it says so\nanswer: yes\nconfidence: 0.9")
    assert not grammar.matches("answer: yes\nreasoning: it says so\nconfidence: 0.9")
    assert not grammar.matches("reasoning: it says so\nanswer: maybe\nconfidence: 0.9")
    assert format_output({"reasoning": "r", "answer": "no", "confidence": 1.5}) == (
        "reasoning: r\nanswer: no\nconfidence: 1.5"
    )


def test_a_single_literal_output_is_forced_to_its_bare_labels() -> None:
    fn = make(Literal["billing", "bug", 'say "hi"'])
    grammar = GBNF(constrain.grammar(fn.signature) or "")
    assert grammar.matches("billing") and grammar.matches('say "hi"')
    assert not grammar.matches("Billing") and not grammar.matches("billing.")


def test_free_text_needs_no_grammar_but_gets_a_schema() -> None:
    fn = make(str)
    assert constrain.grammar(fn.signature) is None
    assert constrain.constraint_params(fn.signature, "grammar") == {}
    assert constrain.json_schema(fn.signature)["properties"] == {"output": {"type": "string"}}


def test_pydantic_aliases_are_the_keys_of_the_schema_and_grammar() -> None:
    class Aliased(BaseModel):
        full_name: str = Field(alias="fullName")

    fn = make(list[Aliased])
    assert '\\"fullName\\": ' in (constrain.grammar(fn.signature) or "")
    schema = constrain.json_schema(fn.signature)
    assert list(schema["$defs"]["Aliased"]["properties"]) == ["fullName"]


# -- what each kind of LM receives -------------------------------------------------------------
def test_a_grammar_lm_receives_the_grammar_and_the_reply_parses() -> None:
    fn = make(KINDS["literal"])
    lm = ScriptedLM(["feature request"], constraint="grammar")
    with lmprog.context(lm=lm):
        assert fn("x") == "feature request"
    assert lm.calls[0].constraint == constrain.grammar(fn.signature)
    assert "response_format" not in lm.calls[0].params


def test_a_json_schema_lm_receives_response_format_and_its_json_reply_parses() -> None:
    fn = make(Verdict)
    lm = ScriptedLM(
        [{"reasoning": "both say so", "answer": "yes", "confidence": 0.5}], constraint="json_schema"
    )
    with lmprog.context(lm=lm):
        result = fn("x")
    assert result == Verdict(reasoning="both say so", answer="yes", confidence=0.5)
    sent = lm.calls[0].constraint
    assert sent == constrain.response_format(fn.signature)
    assert isinstance(sent, dict) and sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"]["required"] == ["reasoning", "answer", "confidence"]


@pytest.mark.parametrize("annotation", [str, int, list[str], Optional[Literal["a", "b"]]])  # noqa: UP045
def test_a_single_output_structured_reply_is_read_from_the_output_key(annotation: Any) -> None:
    values = {str: "{not the raw text}", int: 42, list[str]: ["a", "b"]}
    value = values.get(annotation)
    fn = make(annotation)
    lm = ScriptedLM([{"output": value}], constraint="json_schema")
    with lmprog.context(lm=lm):
        assert fn("x") == value
    assert lm.calls[0].params["response_format"]["json_schema"]["schema"]["required"] == ["output"]


def test_a_structured_reply_the_provider_wrote_as_text_is_still_read() -> None:
    fn = make(Verdict)
    lm = ScriptedLM(["reasoning: r\nanswer: no\nconfidence: 0.25"], constraint="json_schema")
    with lmprog.context(lm=lm):
        assert fn("x").answer == "no"


def test_an_lm_without_constraints_receives_none() -> None:
    fn = make(KINDS["nested"])
    lm = ScriptedLM([{"people": [], "counts": {}, "color": Color.RED, "done": True}])
    with lmprog.context(lm=lm):
        assert fn("x").color is Color.RED
    assert lm.calls[0].constraint is None


def test_the_off_switch_configure_context_and_per_function() -> None:
    lm = ScriptedLM(["bug"] * 4, constraint="grammar")
    fn = make(KINDS["literal"])
    off = make(KINDS["literal"], constrain=False)
    forced_on = make(KINDS["literal"], constrain=True)
    with lmprog.context(lm=lm):
        fn("x")
        off("x")
        with lmprog.context(constrain=False):
            fn("x")
            forced_on("x")
    assert [call.constraint is not None for call in lm.calls] == [True, False, False, True]


def test_constrain_must_be_a_bool() -> None:
    with pytest.raises(lmprog.UsageError, match="constrain"):
        make(int, constrain="yes")


def test_the_constraint_is_part_of_the_cache_key(tmp_path: Any) -> None:
    fn = make(KINDS["literal"])
    lm = ScriptedLM(["bug", "billing"], constraint="grammar", cache=True)
    with lmprog.context(lm=lm, cache_dir=tmp_path):
        assert fn("same input") == "bug"
        with lmprog.context(constrain=False):
            assert fn("same input") == "billing"  # not the constrained reply from the cache
        assert fn("same input") == "bug"  # a cache hit
    assert len(lm.calls) == 2


def test_the_real_lm_takes_a_grammar_locally_and_asks_litellm_elsewhere() -> None:
    assert lmprog.LM("local").constraint_kind() == "grammar"
    assert lmprog.LM("local/whatever.gguf").constraint_kind() == "grammar"
    assert lmprog.LM("openai/gpt-4o-mini").constraint_kind() == "json_schema"
    assert lmprog.LM("gpt-3.5-turbo").constraint_kind() is None
    assert lmprog.LM("no-such-provider/model").constraint_kind() is None


def test_scripted_lm_refuses_an_unknown_constraint_kind() -> None:
    with pytest.raises(lmprog.UsageError, match="constraint"):
        ScriptedLM([], constraint="regex")  # type: ignore[arg-type]


# -- retries only where they can help ----------------------------------------------------------
def test_a_format_failure_under_a_grammar_is_not_retried() -> None:
    fn = make(int, max_retries=2)
    lm = ScriptedLM(["-", "4", "5"], constraint="grammar")  # e.g. cut short by max_tokens
    with lmprog.context(lm=lm), pytest.raises(OutputParseError) as info:
        fn("x")
    assert info.value.attempts == 1 and len(lm.calls) == 1


@pytest.mark.parametrize("constraint", [None, "json_schema"])
def test_a_format_failure_costs_at_most_two_requests(constraint: Any) -> None:
    fn = make(int, max_retries=5)
    lm = ScriptedLM(["many", "lots", "7"], constraint=constraint)
    with lmprog.context(lm=lm), pytest.raises(OutputParseError) as info:
        fn("x")
    assert info.value.attempts == 2 and len(lm.calls) == 2


def test_one_format_retry_that_succeeds_returns_the_value() -> None:
    fn = make(int)
    lm = ScriptedLM(["many", "7"])
    with lmprog.context(lm=lm):
        assert fn("x") == 7


@pytest.mark.parametrize("constraint", [None, "grammar", "json_schema"])
def test_a_validator_failure_is_retried_up_to_max_retries_with_the_error_shown(constraint: Any) -> None:
    fn = make(Positive, max_retries=2)
    bad = {"value": -1}
    lm = ScriptedLM([bad, bad, {"value": 3}], constraint=constraint)
    with lmprog.context(lm=lm):
        assert fn("x") == Positive(value=3)
    assert len(lm.calls) == 3
    assert "must be positive" in lm.calls[1].messages[-1]["content"]
    assert lm.calls[1].constraint == lm.calls[0].constraint


def test_a_field_constraint_failure_is_a_validation_failure() -> None:
    fn = make(Bounded, max_retries=3)
    lm = ScriptedLM([{"score": 11, "note": "n"}] * 4, constraint="grammar")
    with lmprog.context(lm=lm), pytest.raises(OutputParseError) as info:
        fn("x")
    assert info.value.attempts == 4  # 1 + max_retries: every failure was a validator's


def test_max_retries_zero_allows_no_retry_of_either_kind() -> None:
    fn = make(Positive, max_retries=0)
    lm = ScriptedLM([{"value": -1}, {"value": 1}])
    with lmprog.context(lm=lm), pytest.raises(OutputParseError):
        fn("x")
    assert len(lm.calls) == 1


def test_a_wrong_shape_from_pydantic_is_a_format_failure() -> None:
    fn = make(Person, max_retries=4)
    lm = ScriptedLM(['{"name": "a"}', '{"name": "a", "age": "old"}', '{"name": "a", "age": 3}'])
    with lmprog.context(lm=lm), pytest.raises(OutputParseError):
        fn("x")
    assert len(lm.calls) == 2
