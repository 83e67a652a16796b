"""Messages, the wire format and lenient parsing."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Literal, Optional

import pytest
import typing_extensions
from pydantic import BaseModel, Field, field_validator

from lmprog.errors import UsageError
from lmprog.prompt import (
    ParseFailure,
    format_output,
    output_values,
    parse_output,
    render_messages,
    retry_messages,
    to_jsonable,
)
from lmprog.signature import Signature, signature_from_function


class Topic(enum.Enum):
    BILLING = "billing"
    BUG = "bug"
    FEATURE_REQUEST = "feature request"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Answer(BaseModel):
    reasoning: str
    answer: Literal["yes", "no"]


class Graded(BaseModel):
    summary: str = Field(description="one sentence")
    score: int
    tags: list[str] = []
    note: str | None = None


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class Person(typing_extensions.TypedDict):
    name: str
    age: int


def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify a support ticket by its topic.

    Args:
        ticket: the customer's message, verbatim.
    """


def answer(question: str, context: list[str]) -> Answer:
    """Answer the question using only the context."""


def returning(annotation: Any, name: str = "task") -> Signature:
    def fn(text: str) -> str:
        """Do the task."""

    fn.__annotations__ = {"text": str, "return": annotation}
    return signature_from_function(fn, name=name)


CLASSIFY = signature_from_function(classify)
ANSWER = signature_from_function(answer)


# -- rendering snapshots: a change here changes every prompt, so it must be deliberate ------------


def test_render_classify_with_demos_snapshot() -> None:
    messages = render_messages(
        CLASSIFY,
        {"ticket": "The app crashes when I log in."},
        demos=[{"ticket": "I was charged twice this month.", "output": "billing"}],
    )
    assert messages == [
        {
            "role": "system",
            "content": "Classify a support ticket by its topic.\n\n"
            "Inputs:\n- ticket: the customer's message, verbatim.\n\n"
            "Reply with exactly one of: billing, bug, feature.",
        },
        {"role": "user", "content": "ticket: I was charged twice this month."},
        {"role": "assistant", "content": "billing"},
        {"role": "user", "content": "ticket: The app crashes when I log in."},
    ]


def test_render_multi_output_snapshot() -> None:
    messages = render_messages(
        ANSWER,
        {
            "question": "Who wrote Dune?",
            "context": ["Dune is a 1965 novel by Frank Herbert.", "It won awards."],
        },
        demos=[
            {
                "question": "Is water wet?",
                "context": ["Water is a liquid."],
                "reasoning": "Liquids wet things.\nWater is a liquid.",
                "answer": "yes",
            }
        ],
    )
    assert messages == [
        {
            "role": "system",
            "content": "Answer the question using only the context.\n\n"
            "Inputs: question, context.\n\n"
            "Reply with these lines:\nreasoning: <text>\nanswer: <one of: yes, no>",
        },
        {"role": "user", "content": "question: Is water wet?\ncontext:\n[1] Water is a liquid."},
        {"role": "assistant", "content": "reasoning: Liquids wet things.\nWater is a liquid.\nanswer: yes"},
        {
            "role": "user",
            "content": "question: Who wrote Dune?\ncontext:\n"
            "[1] Dune is a 1965 novel by Frank Herbert.\n[2] It won awards.",
        },
    ]


def test_render_output_descriptions_and_instruction_override() -> None:
    def grade(essay: str, rubric: str = "standard") -> Graded:
        """Grade the essay."""

    sig = signature_from_function(grade)
    system = render_messages(sig, {"essay": "E"}, instruction="Be strict.")[0]["content"]
    assert system == (
        "Be strict.\n\nInputs: essay, rubric.\n\n"
        "Outputs:\n- summary: one sentence\n- score\n- tags\n- note\n\n"
        "Reply with these lines:\nsummary: <text>\nscore: <integer>\ntags: <JSON list of strings>\n"
        "note: <text, or none>"
    )
    assert render_messages(sig, {"essay": "E"})[-1]["content"] == "essay: E\nrubric: standard"


def test_render_without_docstring_uses_the_name() -> None:
    def count_words(text: str) -> int:
        pass

    sig = signature_from_function(count_words)
    assert render_messages(sig, {"text": "a b"})[0]["content"] == (
        "Task: count words.\n\nInputs: text.\n\nReply with an integer only."
    )


@pytest.mark.parametrize(
    ("annotation", "sentence"),
    [
        (str, "Reply with the text only."),
        (int, "Reply with an integer only."),
        (float, "Reply with a number only."),
        (bool, "Reply with yes or no only."),
        (Literal[1, 2, 3], "Reply with exactly one of: 1, 2, 3."),
        (Topic, "Reply with exactly one of: billing, bug, feature request."),
        (Level, "Reply with exactly one of: 1, 2."),
        (Optional[int], "Reply with an integer, or none."),  # noqa: UP045
        (int | str, "Reply with an integer or the text."),
        (list[str], "Reply with a JSON list of strings only."),
        (set[int], "Reply with a JSON list of integers only."),
        (tuple[str, int], "Reply with a JSON list like [string, integer] only."),
        (dict[str, float], 'Reply with a JSON object like {"<string>": number, ...} only.'),
        (list[Point], 'Reply with a JSON list like [{"x": integer, "y": integer}, ...] only.'),
        (list[Literal["a", "b"]], 'Reply with a JSON list like ["a" | "b", ...] only.'),
        (
            Optional[list[Person]],  # noqa: UP045
            'Reply with a JSON list like [{"name": string, "age": integer}, ...], or none.',
        ),
    ],
)
def test_reply_sentence_per_kind(annotation: Any, sentence: str) -> None:
    system = render_messages(returning(annotation), {"text": "t"})[0]["content"]
    assert system.endswith("\n\n" + sentence)


def test_input_values_rendering() -> None:
    def fn(
        text: str,
        lines: list[str],
        numbers: list[int],
        flag: bool,
        level: Level,
        point: Point,
        maybe: str | None,
    ) -> str:
        """Do."""

    sig = signature_from_function(fn)
    user = render_messages(
        sig,
        {
            "text": "first line\nsecond line",
            "lines": ["a", "b\nb2"],
            "numbers": [1, 2],
            "flag": True,
            "level": Level.HIGH,
            "point": Point(1, 2),
            "maybe": None,
        },
    )[-1]["content"]
    assert user == (
        "text:\nfirst line\nsecond line\nlines:\n[1] a\n[2] b\nb2\nnumbers: [1, 2]\nflag: yes\nlevel: 2\n"
        'point: {"x": 1, "y": 2}\nmaybe: none'
    )


def test_missing_input_and_bad_demo_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="missing input 'ticket'"):
        render_messages(CLASSIFY, {})
    with pytest.raises(UsageError, match=r"demo 1 has no value for output\(s\) output"):
        render_messages(CLASSIFY, {"ticket": "t"}, demos=[{"ticket": "x", "label": "bug"}])


def test_multi_output_demo_may_hold_the_return_value() -> None:
    demo = {"question": "q", "context": [], "output": Answer(reasoning="r", answer="no")}
    messages = render_messages(ANSWER, {"question": "q2", "context": ["c"]}, demos=[demo])
    assert messages[1]["content"] == "question: q\ncontext: []"
    assert messages[2]["content"] == "reasoning: r\nanswer: no"


def test_demo_inputs_missing_are_left_out() -> None:
    messages = render_messages(
        ANSWER, {"question": "q", "context": []}, demos=[{"reasoning": "r", "answer": "yes"}]
    )
    assert messages[1]["content"] == "(no inputs)"


# -- retry -----------------------------------------------------------------------------------------


def test_retry_messages_append_completion_errors_and_format() -> None:
    messages = render_messages(CLASSIFY, {"ticket": "t"})
    retried = retry_messages(
        messages, "maybe", ["expected exactly one of: billing, bug, feature, got 'maybe'"]
    )
    assert retried[: len(messages)] == messages
    assert retried[-2] == {"role": "assistant", "content": "maybe"}
    assert retried[-1] == {
        "role": "user",
        "content": "Your reply could not be used:\n"
        "- expected exactly one of: billing, bug, feature, got 'maybe'\n\n"
        "Reply with exactly one of: billing, bug, feature.",
    }
    multi = retry_messages(render_messages(ANSWER, {"question": "q", "context": []}), "x", ["missing"])
    assert multi[-1]["content"].endswith(
        "Reply with these lines:\nreasoning: <text>\nanswer: <one of: yes, no>"
    )
    assert retry_messages([{"role": "user", "content": "hi"}], "x", [])[-1]["content"] == (
        "Your reply could not be used:\n- the reply did not follow the format\n\n"
        "Reply again in the required format."
    )


# -- parsing: single outputs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("billing", "billing"),
        ("  Billing.\n", "billing"),
        ("BUG!", "bug"),
        ("output: feature", "feature"),
        ("**Output:** bug", "bug"),
        ("```\nfeature\n```", "feature"),
        ('"billing"', "billing"),
        ("I think this is a feature request.", "feature"),
        ('{"output": "bug"}', "bug"),
        ("bug\nticket: My card was charged twice\nbilling", "bug"),  # a made-up next example is cut off
    ],
)
def test_parse_literal_leniency(text: str, expected: str) -> None:
    assert parse_output(CLASSIFY, text) == expected


@pytest.mark.parametrize("text", ["", "unknown", "bug or billing?", "bugs", "not billing, it is a bug"])
def test_parse_literal_refuses_to_guess(text: str) -> None:
    with pytest.raises(ParseFailure) as info:
        parse_output(CLASSIFY, text)
    assert info.value.errors[0].startswith("expected exactly one of: billing, bug, feature, got ")


@pytest.mark.parametrize(
    ("annotation", "text", "expected"),
    [
        (str, "  Paris \n", "Paris"),
        (str, "Output: Paris", "Paris"),
        (str, '"Paris"', "Paris"),
        (str, "'Paris'", "Paris"),
        (str, '"a" and "b"', '"a" and "b"'),
        (str, "```python\nprint(1)\n```", "print(1)"),
        (str, "line one\nline two", "line one\nline two"),
        (int, "42", 42),
        (int, "The answer is 42.", 42),
        (int, "1234\n\nThe answer is 1234.", 1234),
        (int, "-7", -7),
        (int, "1,000", 1000),
        (int, "**12**", 12),
        (int, "3.0", 3),
        (float, "2.5", 2.5),
        (float, "about 1e3 meters", 1000.0),
        (float, "7", 7.0),
        (bool, "Yes.", True),
        (bool, "false", False),
        (bool, "No, it does not.", False),
        (bool, "That's true", True),
        (Literal[1, 2, 3], "2", 2),
        (Literal[1, 2, 3], "Level 3", 3),
        (Literal[True, False], "yes", True),
        (Topic, "Feature Request", Topic.FEATURE_REQUEST),
        (Topic, "feature_request", Topic.FEATURE_REQUEST),
        (Topic, "BILLING", Topic.BILLING),
        (Level, "high", Level.HIGH),
        (Level, "1", Level.LOW),
        (Optional[int], "none", None),  # noqa: UP045
        (Optional[int], "None.", None),  # noqa: UP045
        (Optional[int], "", None),  # noqa: UP045
        (Optional[int], "5", 5),  # noqa: UP045
        (Optional[str], "null", None),  # noqa: UP045
        (Optional[str], '"null"', "null"),  # noqa: UP045
        (int | str, "42", 42),
        (int | str, "forty-two", "forty-two"),
        (int | str, "I have 3 cats", "I have 3 cats"),
        (list[str], '["a", "b"]', ["a", "b"]),
        (list[str], 'Sure! Here they are: ["a", "b"]. Done.', ["a", "b"]),
        (list[str], '```json\n["a",\n "b",]\n```', ["a", "b"]),
        (list[str], "['a', 'b']", ["a", "b"]),
        (list[str], """['it\\'s', "say \\"hi\\""]""", ["it's", 'say "hi"']),
        (list[str], "- apples\n- pears", ["apples", "pears"]),
        (list[str], "1. apples\n2) pears\n[3] plums", ["apples", "pears", "plums"]),
        (list[int], "[1, 2, 3]", [1, 2, 3]),
        (list[int], '["1", 2.0]', [1, 2]),
        (list[int], "see [x] then [4, 5]", [4, 5]),
        (set[str], '["a", "b", "a"]', {"a", "b"}),
        (tuple[int, str], '[1, "x"]', (1, "x")),
        (tuple[str, ...], '["x", "y"]', ("x", "y")),
        (dict[str, int], "{'a': 1, 'b': 2,}", {"a": 1, "b": 2}),
        (dict[Level, str], '{"1": "low"}', {Level.LOW: "low"}),
        (list[Point], 'Points: [{"x": 1, "y": 2}]', [Point(1, 2)]),
        (list[Person], '[{"name": "Ada", "age": "36"}]', [{"name": "Ada", "age": 36}]),
        (list[Answer], '[{"reasoning": "r", "answer": "no"}]', [Answer(reasoning="r", answer="no")]),
        (Optional[list[bool]], "[true, false, True]", [True, False, True]),  # noqa: UP045
    ],
)
def test_parse_single_leniency(annotation: Any, text: str, expected: Any) -> None:
    value = parse_output(returning(annotation), text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("annotation", "text", "message"),
    [
        (int, "3 or 4", "expected an integer only, got several numbers in '3 or 4'"),
        (int, "1 1 1 1 1 1 1 1 2", "expected an integer only, got several numbers"),
        (int, "2.5", "expected an integer, got 2.5"),
        (int, "many", "expected an integer, got 'many'"),
        (int, "1e999", "expected an integer, got '1e999'"),
        (float, "nan", "expected a number, got 'nan'"),
        (bool, "maybe", "expected yes or no, got 'maybe'"),
        (bool, "yes and no", "expected yes or no, got 'yes and no'"),
        (list[int], '[1, "two"]', "[1]: expected an integer, got 'two'"),
        (list[int], "no list here", "expected a JSON list of integers, got 'no list here'"),
        (tuple[int, str], "[1]", "expected a JSON list of 2 items like [integer, string]"),
        (list[Point], '[{"x": 1}]', "[0]: missing key 'y'"),
        (
            list[Answer],
            '[{"reasoning": "r", "answer": "maybe"}]',
            "[0].answer: Input should be 'yes' or 'no'",
        ),
        (dict[str, int], "[1]", 'expected a JSON object like {"<string>": integer, ...}'),
    ],
)
def test_parse_single_errors_are_short(annotation: Any, text: str, message: str) -> None:
    with pytest.raises(ParseFailure) as info:
        parse_output(returning(annotation), text)
    assert info.value.errors == [message] or info.value.errors[0].startswith(message)
    assert isinstance(info.value, ValueError)


def test_parse_rejects_non_text() -> None:
    with pytest.raises(ParseFailure, match="expected text, got NoneType"):
        parse_output(CLASSIFY, None)  # type: ignore[arg-type]


# -- parsing: several outputs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reasoning: It is.\nanswer: yes", Answer(reasoning="It is.", answer="yes")),
        ("Reasoning: a\nb\n\nAnswer: No.", Answer(reasoning="a\nb", answer="no")),
        ("**Reasoning:** r\n**Answer:** yes", Answer(reasoning="r", answer="yes")),
        ("**reasoning**: r\n- **answer: yes**", Answer(reasoning="r", answer="yes")),
        ("## Reasoning: r\n## Answer: yes", Answer(reasoning="r", answer="yes")),
        ("Sure!\nreasoning: r\nanswer: yes", Answer(reasoning="r", answer="yes")),
        (
            "answer: no\nreasoning: order does not matter",
            Answer(reasoning="order does not matter", answer="no"),
        ),
        ("Because it rains.\nanswer: yes", Answer(reasoning="Because it rains.", answer="yes")),
        ('{"reasoning": "r", "answer": "yes"}', Answer(reasoning="r", answer="yes")),
        ('```json\n{"Reasoning": "r", "ANSWER": "No"}\n```', Answer(reasoning="r", answer="no")),
        ('Here: {"reasoning": "r", "answer": "yes"}', Answer(reasoning="r", answer="yes")),
        (
            "reasoning: r1\nanswer: yes\nquestion: Another one?\nreasoning: r2\nanswer: no",
            Answer(reasoning="r1", answer="yes"),
        ),
        ("reasoning: r\nanswer: yes\nreasoning: again\nanswer: no", Answer(reasoning="r", answer="yes")),
        (
            "reasoning: answer: is not a header here\nanswer: yes",
            Answer(reasoning="answer: is not a header here", answer="yes"),
        ),
    ],
)
def test_parse_multi_leniency(text: str, expected: Answer) -> None:
    assert parse_output(ANSWER, text) == expected


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        ("reasoning: r", ["missing line(s): answer:"]),
        ("nothing useful", ["missing line(s): reasoning:, answer:"]),
        ("", ["missing line(s): reasoning:, answer:"]),
        ("reasoning: r\nanswer: maybe", ["answer: expected exactly one of: yes, no, got 'maybe'"]),
        ('{"reasoning": "r"}', ["missing key(s): answer"]),
    ],
)
def test_parse_multi_errors(text: str, errors: list[str]) -> None:
    with pytest.raises(ParseFailure) as info:
        parse_output(ANSWER, text)
    assert info.value.errors == errors


def test_parse_multi_defaults_types_and_validators() -> None:
    def grade(essay: str) -> Graded:
        """Grade."""

    sig = signature_from_function(grade)
    assert parse_output(sig, "summary: Fine.\nscore: 8") == Graded(summary="Fine.", score=8)
    assert parse_output(sig, 'summary: s\nscore: "9"\ntags: ["a"]\nnote: none') == Graded(
        summary="s", score=9, tags=["a"], note=None
    )
    with pytest.raises(ParseFailure) as info:
        parse_output(sig, "summary: s\nscore: high\ntags: a")
    assert info.value.errors == [
        "score: expected an integer, got 'high'",
        "tags: expected a JSON list of strings, got 'a'",
    ]

    class Checked(BaseModel):
        value: int

        @field_validator("value")
        @classmethod
        def positive(cls, v: int) -> int:
            if v <= 0:
                raise ValueError("must be positive")
            return v

    sig = returning(Checked)
    assert parse_output(sig, "value: 3") == Checked(value=3)
    with pytest.raises(ParseFailure, match="value: Value error, must be positive"):
        parse_output(sig, "value: -3")


def test_parse_one_field_record_answered_bare() -> None:
    class Only(BaseModel):
        verdict: bool

    sig = returning(Only)
    assert parse_output(sig, "verdict: yes") == Only(verdict=True)
    assert parse_output(sig, "Yes") == Only(verdict=True)


def test_parse_dataclass_and_typeddict_returns() -> None:
    assert parse_output(returning(Point), "x: 1\ny: -2") == Point(1, -2)
    assert parse_output(returning(Point), '{"x": 1, "y": 2}') == Point(1, 2)
    assert parse_output(returning(Person), "name: Ada\nage: 36") == {"name": "Ada", "age": 36}


# -- format_output, output_values, to_jsonable --------------------------------------------------


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ({"output": "billing"}, "billing"),
        ({"output": "two\nlines"}, "two\nlines"),
        ({"output": " padded"}, '" padded"'),
        ({"output": '"quoted"'}, '"\\"quoted\\""'),
        ({"output": "output: x"}, '"output: x"'),
        ({"output": "none"}, '"none"'),
        ({"output": ""}, '""'),
        ({"output": 42}, "42"),
        ({"output": 2.5}, "2.5"),
        ({"output": True}, "yes"),
        ({"output": None}, "none"),
        ({"output": Topic.FEATURE_REQUEST}, "feature request"),
        ({"output": Level.HIGH}, "2"),
        ({"output": ["a", "é"]}, '["a", "é"]'),
        ({"output": {"b", "a"}}, '["a", "b"]'),
        ({"output": (1, "x")}, '[1, "x"]'),
        ({"output": [Point(1, 2)]}, '[{"x": 1, "y": 2}]'),
        ({"output": {Level.LOW: Topic.BUG}}, '{"1": "bug"}'),
        ({"reasoning": "r\nmore", "answer": "yes"}, "reasoning: r\nmore\nanswer: yes"),
        ({"reasoning": "see\nanswer: no", "answer": "yes"}, 'reasoning: "see\\nanswer: no"\nanswer: yes'),
        (
            {"summary": "s", "score": 3, "tags": [], "note": None},
            "summary: s\nscore: 3\ntags: []\nnote: none",
        ),
    ],
)
def test_format_output(values: dict[str, Any], text: str) -> None:
    assert format_output(values) == text


def test_output_values_and_to_jsonable() -> None:
    value = Answer(reasoning="r", answer="yes")
    assert output_values(ANSWER, value) == {"reasoning": "r", "answer": "yes"}
    assert output_values(CLASSIFY, "bug") == {"output": "bug"}
    assert to_jsonable(value) == {"reasoning": "r", "answer": "yes"}
    assert to_jsonable({Level.LOW: {Topic.BUG, Topic.BILLING}, "p": (Point(1, 2),)}) == {
        "1": ["billing", "bug"],
        "p": [{"x": 1, "y": 2}],
    }
    assert to_jsonable(b"raw") == "b'raw'"


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (str, "multi\nline  text"),
        (str, "  spaced  "),
        (str, "```\nfenced\n```"),
        (Optional[str], "None"),  # noqa: UP045
        (Optional[str], None),  # noqa: UP045
        (int, -12),
        (float, 1e-7),
        (bool, False),
        (Topic, Topic.FEATURE_REQUEST),
        (Level, Level.HIGH),
        (Literal[1, 2], 2),
        (Literal[True, False], False),
        (list[str], ["a", "b,c", ""]),
        (set[int], {3, 1}),
        (tuple[int, str], (1, "x")),
        (dict[str, list[int]], {"k": [1]}),
        (list[Point], [Point(0, 0)]),
        (list[Person], [{"name": "Ada", "age": 36}]),
        (Answer, Answer(reasoning="line\nanswer: tricky", answer="no")),
        (Graded, Graded(summary="s", score=1, tags=["x"], note="none")),
        (Point, Point(3, 4)),
        (Person, {"name": "none", "age": 0}),
    ],
)
def test_round_trip_examples(annotation: Any, value: Any) -> None:
    sig = returning(annotation)
    assert parse_output(sig, format_output(output_values(sig, value))) == value


def test_the_reply_format_is_passed_to_retries_not_searched_for() -> None:
    from lmprog.format import reply_format

    assert reply_format(CLASSIFY) == "Reply with exactly one of: billing, bug, feature."
    assert render_messages(CLASSIFY, {"ticket": "t"})[0]["content"].endswith(reply_format(CLASSIFY))
    # the format comes from the signature even when the conversation holds no system message
    retried = retry_messages(
        [{"role": "user", "content": "ticket: t"}], "maybe", ["bad"], reply_format(CLASSIFY)
    )
    assert retried[-1]["content"] == (
        "Your reply could not be used:\n- bad\n\nReply with exactly one of: billing, bug, feature."
    )
    assert reply_format(ANSWER) == "Reply with these lines:\nreasoning: <text>\nanswer: <one of: yes, no>"
