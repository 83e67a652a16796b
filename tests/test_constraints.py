"""Constraints from ``Annotated`` metadata on return types and parameters: honoured by validation
(a violating completion is retried with the error shown, then a clear error), or refused when the
function is decorated; constrained decoding carries what it can."""

from __future__ import annotations

import dataclasses
from typing import Annotated, TypedDict

import annotated_types as at
import jsonschema
import pytest
from pydantic import AfterValidator, Field, StringConstraints

import lmprog
from lmprog import constrain, lm_function
from lmprog.errors import OutputParseError, SignatureError, UsageError
from lmprog.testing import ScriptedLM

NonNegative = Annotated[int, Field(ge=0)]


@lm_function
def count(text: str) -> NonNegative:
    """Count the words."""


@lm_function
def counts(text: str) -> list[NonNegative]:
    """Count the words of each sentence."""


def test_a_reply_that_breaks_a_return_constraint_is_retried_with_the_error_shown() -> None:
    lm = ScriptedLM(["-3", "4"])
    with lmprog.context(lm=lm):
        assert count("a b c d") == 4
    retry = lm.calls[1].messages[-1]["content"]
    assert "-3" in lm.calls[1].messages[-2]["content"]
    assert "greater than or equal to 0" in retry


def test_after_the_retries_the_error_is_clear() -> None:
    with lmprog.context(lm=ScriptedLM(["-3", "-2", "-1"])), pytest.raises(OutputParseError) as info:
        count("x")
    assert info.value.attempts == 3  # a validator's refusal is retried max_retries times
    assert info.value.errors == ["Input should be greater than or equal to 0"]


def test_nested_constraints_are_checked_and_located() -> None:
    lm = ScriptedLM(["[2, -1]", "[2, 1]"])
    with lmprog.context(lm=lm):
        assert counts("x") == [2, 1]
    assert "[1]: Input should be greater than or equal to 0" in lm.calls[1].messages[-1]["content"]


@dataclasses.dataclass
class Stats:
    words: NonNegative
    title: Annotated[str, StringConstraints(pattern=r"^[A-Z]")]


class Scores(TypedDict):
    score: Annotated[float, at.Interval(ge=0, le=1)]


def test_fields_of_dataclasses_and_typeddicts_are_checked() -> None:
    @lm_function
    def stats(text: str) -> Stats:
        """Describe the text."""

    @lm_function
    def scores(text: str) -> Scores:
        """Score the text."""

    lm = ScriptedLM(["words: -1\ntitle: Hi", "words: 1\ntitle: hi", "words: 1\ntitle: Hi"])
    with lmprog.context(lm=lm):
        assert stats("x") == Stats(1, "Hi")
    assert "words: Input should be greater than or equal to 0" in lm.calls[1].messages[-1]["content"]
    assert "title: String should match pattern" in lm.calls[2].messages[-1]["content"]
    with lmprog.context(lm=ScriptedLM(["score: 1.5", "score: 0.5"])):
        assert scores("x") == {"score": 0.5}


def test_validators_in_annotated_run_on_the_value_read() -> None:
    @lm_function
    def shout(text: str) -> Annotated[str, AfterValidator(str.upper)]:
        """Repeat the text."""

    even = at.Predicate(lambda n: n % 2 == 0)

    @lm_function
    def pick(text: str) -> Annotated[int, even]:
        """Pick an even number."""

    with lmprog.context(lm=ScriptedLM(["hello"])):
        assert shout("x") == "HELLO"
    with lmprog.context(lm=ScriptedLM(["3", "4"])):
        assert pick("x") == 4


def test_the_prompt_and_the_json_schema_carry_the_constraint_the_grammar_stays_looser() -> None:
    system = count.messages("x")[0]["content"]
    assert system.endswith("Reply with an integer (>= 0) only.")
    schema = constrain.json_schema(counts.signature)
    assert schema["properties"]["output"] == {"type": "array", "items": {"type": "integer", "minimum": 0}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"output": [1, -1]}, schema)
    assert constrain.grammar(count.signature) == constrain.grammar(lm_function(_plain_int).signature)


def _plain_int(text: str) -> int:
    """Count the words."""


def test_a_structured_reply_that_breaks_the_constraint_is_retried() -> None:
    lm = ScriptedLM([{"output": -3}, {"output": 3}], constraint="json_schema")
    with lmprog.context(lm=lm):
        assert count("x") == 3
    sent = lm.calls[0].params["response_format"]["json_schema"]["schema"]
    assert sent["properties"]["output"] == {"type": "integer", "minimum": 0}


def test_an_argument_that_breaks_a_parameter_constraint_is_a_usage_error() -> None:
    @lm_function
    def top(items: list[str], k: Annotated[int, Field(gt=0)] = 3) -> list[str]:
        """The first k items."""

    lm = ScriptedLM(['["a"]'])
    with lmprog.context(lm=lm), pytest.raises(UsageError) as info:
        top(["a", "b"], k=0)
    message = str(info.value)
    assert message.startswith(
        "test_an_argument_that_breaks_a_parameter_constraint_is_a_usage_error.<locals>.top ("
    )
    assert "argument k=0 does not fit Annotated[int, Gt(gt=0)]: Input should be greater than 0" in message
    assert lm.calls == []  # nothing was sent
    with lmprog.context(lm=lm):
        assert top(["a"]) == ["a"]  # the default is fine


def test_a_default_that_breaks_its_constraint_is_refused_at_decoration() -> None:
    with pytest.raises(SignatureError, match=r"parameter 'k': the default 0 breaks its constraint"):

        @lm_function
        def top(items: list[str], k: Annotated[int, Field(gt=0)] = 0) -> list[str]:
            """The first k items."""


@pytest.mark.parametrize(
    ("annotation", "why"),
    [
        (Annotated[bool, Field(max_length=2)], "applies to text, lists, sets, tuples and dicts only"),
        (Annotated[str, Field(gt=1)], "applies to numbers only, not to text"),
        (Annotated[list[int], Field(pattern="^a")], "applies to text only"),
        (Annotated[Stats, Field(min_length=1)], "constraints on a record type are not supported"),
        (Annotated[int, at.Timezone(None)], "is not supported"),
    ],
)
def test_a_constraint_that_cannot_apply_is_refused_at_decoration(annotation: object, why: str) -> None:
    def summarize(text: str) -> int:
        """Summarize."""

    summarize.__annotations__["return"] = annotation
    with pytest.raises(SignatureError) as info:
        lm_function(summarize)
    message = str(info.value)
    assert "summarize (" in message and "the return type has unsupported type Annotated[" in message
    assert why in message

    def describe(text: str, size: int) -> str:
        """Describe."""

    describe.__annotations__["size"] = annotation
    with pytest.raises(SignatureError, match="parameter 'size' has unsupported type Annotated"):
        lm_function(describe)


def test_metadata_that_is_not_a_constraint_is_ignored() -> None:
    @lm_function
    def label(text: Annotated[str, "the text"]) -> Annotated[str, Field(description="a label")]:
        """Label the text."""

    with lmprog.context(lm=ScriptedLM(["anything"])):
        assert label("x") == "anything"
