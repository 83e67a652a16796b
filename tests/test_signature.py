"""Signatures read from functions: fields, annotations, docstrings, comments, errors."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Annotated, Any, Literal, NotRequired, Optional, TypedDict, Union

import pytest
import typing_extensions
from pydantic import BaseModel, Field

from lmprog.errors import SignatureError
from lmprog.signature import MISSING, Signature, field_spec, signature_from_function


class Topic(enum.Enum):
    BILLING = "billing"
    BUG = "bug"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Answer(BaseModel):
    reasoning: str = Field(description="think step by step")
    answer: Literal["yes", "no"]
    confidence: float = 0.5


@dataclasses.dataclass
class Point:
    x: int
    """the horizontal position"""
    y: int  # the vertical position
    # the label shown next to the point
    label: str = "p"
    tags: list[str] = dataclasses.field(default_factory=list, metadata={"description": "free tags"})


class Person(typing_extensions.TypedDict):  # pydantic on 3.11 needs typing_extensions' TypedDict
    name: str  # the full name
    age: typing_extensions.NotRequired[int]


class Pet(TypedDict):
    """A plain typing.TypedDict (lmprog does not need pydantic to validate it)."""

    kind: Literal["cat", "dog"]
    """what animal"""
    age: NotRequired[int]


class Team(BaseModel):
    members: list[Person]
    lead: Point | None = None


def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify a support ticket by its topic.

    Args:
        ticket: the customer's message, verbatim.
    """


def test_simple_function_fields() -> None:
    sig = signature_from_function(classify)
    assert isinstance(sig, Signature)
    assert sig.name == "classify" and sig.qualname == "classify"
    assert sig.module == __name__
    assert sig.instruction == "Classify a support ticket by its topic."
    assert sig.input_names == ("ticket",)
    assert sig.inputs[0].annotation is str
    assert sig.inputs[0].description == "the customer's message, verbatim."
    assert not sig.inputs[0].has_default and sig.inputs[0].default is MISSING
    assert sig.output_names == ("output",)
    assert sig.return_annotation == Literal["billing", "bug", "feature"]
    assert not sig.multi_output
    assert sig.file is not None and sig.file.endswith("test_signature.py")
    assert sig.line == classify.__code__.co_firstlineno


def test_name_override_defaults_and_absent_annotations() -> None:
    def summarize(text, max_words: int = 30, style: str | None = None):  # type: ignore[no-untyped-def]
        """Summarize the text."""

    sig = signature_from_function(summarize, name="short_summary")
    assert sig.name == "short_summary"
    assert sig.qualname.endswith("summarize")
    text, max_words, style = sig.inputs
    assert text.annotation is str and not text.has_default
    assert max_words.default == 30 and max_words.has_default
    assert style.annotation == (str | None) and style.default is None and style.has_default
    assert sig.outputs[0].annotation is str and sig.return_annotation is str


def test_google_docstring_with_body_and_returns() -> None:
    def rate(review: str, strict: bool = False) -> int:
        """Rate a product review.

        Read the whole review before rating.

        Args:
            review: the review text,
                possibly long.
            strict (bool): whether to be harsh.

        Returns:
            int: the rating from 1 to 5.
        """

    sig = signature_from_function(rate)
    assert sig.instruction == "Rate a product review.\n\nRead the whole review before rating."
    assert [f.description for f in sig.inputs] == ["the review text, possibly long.", "whether to be harsh."]
    assert sig.outputs[0].description == "the rating from 1 to 5."


def test_numpy_docstring_with_named_returns() -> None:
    def check(claim: str) -> Answer:
        """Check a claim.

        Parameters
        ----------
        claim : str
            the statement to verify

        Returns
        -------
        reasoning : str
            the chain of evidence
        answer : str
            yes when the claim holds
        """

    sig = signature_from_function(check)
    assert sig.instruction == "Check a claim."
    assert sig.inputs[0].description == "the statement to verify"
    # the model's own description wins; the docstring fills the others
    assert [f.description for f in sig.outputs] == ["think step by step", "yes when the claim holds", ""]


def test_rest_docstring() -> None:
    def translate(text: str, language: str) -> str:
        """Translate the text.

        :param text: what to translate
        :param language: the target language
        :returns: the translation only
        """

    sig = signature_from_function(translate)
    assert sig.instruction == "Translate the text."
    assert [f.description for f in sig.inputs] == ["what to translate", "the target language"]
    assert sig.outputs[0].description == "the translation only"


def test_google_returns_lines_describe_multi_output_fields() -> None:
    def locate(description: str) -> Point:
        """Place a point.

        Returns:
            x: the column
            y: the row,
                counted from the top
        """

    sig = signature_from_function(locate)
    descriptions = {f.name: f.description for f in sig.outputs}
    # dataclass metadata and attribute docstrings come after the docstring lines
    assert descriptions == {
        "x": "the column",
        "y": "the row, counted from the top",
        "label": "the label shown next to the point",
        "tags": "free tags",
    }


def test_comments_describe_parameters_and_output() -> None:
    def extract(
        email: str,  # the raw email, headers included
        hint: str = "",
        language: str = "en",  # ISO code of the email's language
    ) -> list[str]:  # the names found
        """Extract person names.

        Args:
            hint: something that helps.
        """

    sig = signature_from_function(extract)
    assert [f.description for f in sig.inputs] == [
        "the raw email, headers included",
        "something that helps.",
        "ISO code of the email's language",
    ]
    assert sig.outputs[0].description == "the names found"


def test_docstring_beats_comment() -> None:
    def f(x: str) -> str:  # out comment
        """Do it.

        Args:
            x: from the docstring
        """

    sig = signature_from_function(f)
    assert sig.inputs[0].description == "from the docstring"
    assert sig.outputs[0].description == "out comment"


def test_no_source_degrades_silently() -> None:
    namespace: dict[str, Any] = {}
    exec("def g(a: str, b: int) -> str:\n    'Say hi.'\n", namespace)  # no source file to read
    sig = signature_from_function(namespace["g"])
    assert sig.input_names == ("a", "b")
    assert [f.description for f in sig.inputs] == ["", ""]
    assert sig.instruction == "Say hi."


def test_methods_skip_self_and_cls() -> None:
    class Agent:
        def answer(self, question: str) -> str:
            """Answer."""

        @classmethod
        def make(cls, spec: str) -> str:
            """Make."""

        @staticmethod
        def plain(self_like: str) -> str:
            """Static."""

    assert signature_from_function(Agent.answer).input_names == ("question",)
    assert signature_from_function(Agent.__dict__["make"]).input_names == ("spec",)
    assert signature_from_function(Agent.make).input_names == ("spec",)  # bound classmethod
    assert signature_from_function(Agent().answer).input_names == ("question",)  # bound method
    assert signature_from_function(Agent.plain).input_names == ("self_like",)
    assert signature_from_function(Agent.plain, skip_self=True).input_names == ()
    assert signature_from_function(Agent.answer, skip_self=False).input_names == ("self", "question")


def test_async_function() -> None:
    async def classify_async(ticket: str) -> Topic:
        """Classify asynchronously.

        Args:
            ticket: the ticket
        """

    sig = signature_from_function(classify_async)
    assert sig.input_names == ("ticket",)
    assert sig.inputs[0].description == "the ticket"
    assert sig.return_annotation is Topic


def test_var_args_rejected_with_location() -> None:
    def bad(*texts: str) -> str:
        """Nope."""

    def bad_kwargs(a: str, **extra: str) -> str:
        """Nope."""

    with pytest.raises(SignatureError, match=r"\*texts is not supported") as info:
        signature_from_function(bad)
    assert info.value.function is not None and info.value.function.endswith("bad")
    assert info.value.file is not None and info.value.file.endswith("test_signature.py")
    assert info.value.line == bad.__code__.co_firstlineno
    with pytest.raises(SignatureError, match=r"\*\*extra is not supported"):
        signature_from_function(bad_kwargs)


class Opaque:
    pass


def _takes(annotation: Any) -> Callable[..., Any]:
    def fn(x: str) -> str:
        """Doc."""

    fn.__annotations__ = {"x": annotation, "return": str}
    return fn


def _returns(annotation: Any) -> Callable[..., Any]:
    def fn(x: str) -> str:
        """Doc."""

    fn.__annotations__ = {"x": str, "return": annotation}
    return fn


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (bytes, r"parameter 'x' has unsupported type bytes; supported: str, int"),
        (object, r"unsupported type object"),
        (Opaque, r"unsupported type Opaque"),
        (Any, r"unsupported type Any: give a concrete type"),
        (Callable[[int], int], r"unsupported type Callable"),
        (list[bytes], r"unsupported type bytes \(in list\[bytes\]\)"),
        (dict[str, list[complex]], r"unsupported type complex \(in dict\[str, list\[complex\]\]\)"),
        (list, r"give the item type, e.g. list\[str\]"),
        (dict[tuple[int, int], str], r"dict keys must be str, int, Literal or Enum"),
        (set[Point], r"set items must be"),
        (tuple[()], r"give the item types"),
        (Literal[1.5], r"Literal options must be"),
        (Literal["Yes", "yes"], r"read the same to a model"),
        (Optional[bytes], r"unsupported type bytes"),  # noqa: UP045 - the spelling under test
    ],
)
def test_unsupported_parameter_annotations(annotation: Any, message: str) -> None:
    fn = _takes(annotation)
    with pytest.raises(SignatureError, match=message) as info:
        signature_from_function(fn)
    error = info.value
    assert error.function is not None and error.function.endswith("fn")
    assert error.file is not None and error.file.endswith("test_signature.py")
    assert error.line == fn.__code__.co_firstlineno
    assert str(error).startswith(f"{error.function} ({error.file}:{error.line}): ")


def test_unsupported_nested_model_field_names_the_field() -> None:
    class Event(BaseModel):
        when: bytes

    with pytest.raises(
        SignatureError, match=r"unsupported type bytes \(field 'when' of Event, in list\[Event\]\)"
    ):
        signature_from_function(_returns(list[Event]))
    with pytest.raises(SignatureError, match=r"the return type has unsupported type bytes \(field 'when'"):
        signature_from_function(_returns(Event))


def test_return_none_and_empty_model_rejected() -> None:
    class Empty(BaseModel):
        pass

    def nothing(x: str) -> None:
        """Doc."""

    with pytest.raises(SignatureError, match="the return type is None"):
        signature_from_function(nothing)
    with pytest.raises(SignatureError, match="has no fields"):
        signature_from_function(_returns(Empty))


def test_unresolvable_annotation_names_the_parameter() -> None:
    def f(x: NotDefinedAnywhere) -> str:  # type: ignore[name-defined]  # noqa: F821
        """Doc."""

    with pytest.raises(
        SignatureError, match=r"parameter 'x': cannot resolve the annotation 'NotDefinedAnywhere'"
    ):
        signature_from_function(f)


@pytest.mark.parametrize(
    "annotation",
    [
        str,
        int,
        float,
        bool,
        Literal["a", "b"],
        Literal[1, 2, 3],
        Literal[True, False],
        Literal["x", None],
        Topic,
        Priority,
        list[str],
        set[str],
        dict[str, int],
        dict[int, list[float]],
        dict[Topic, str],
        tuple[int, str],
        tuple[str, ...],
        Optional[int],  # noqa: UP045
        Union[int, str],  # noqa: UP007
        int | list[str] | None,
        Annotated[str, "meta"],
        Answer,
        Point,
        Person,
        Pet,
        list[Pet],
        Team,
        list[Team],
        dict[str, list[Point | None]],
    ],
)
def test_supported_annotations(annotation: Any) -> None:
    sig = signature_from_function(_takes(annotation))
    assert sig.inputs[0].annotation == annotation
    assert field_spec(sig.inputs[0]) is not None


def test_annotated_is_unwrapped_for_outputs() -> None:
    sig = signature_from_function(_returns(Annotated[list[int], "ids"]))
    assert not sig.multi_output
    assert field_spec(sig.outputs[0]).noun() == "a JSON list of integers"


def test_multi_output_pydantic() -> None:
    def check(claim: str) -> Answer:
        """Check."""

    sig = signature_from_function(check)
    assert sig.multi_output
    assert sig.output_names == ("reasoning", "answer", "confidence")
    assert [f.annotation for f in sig.outputs] == [str, Literal["yes", "no"], float]
    assert [f.has_default for f in sig.outputs] == [False, False, True]
    assert sig.outputs[2].default == 0.5
    value = sig.build_return({"reasoning": "r", "answer": "yes"})
    assert value == Answer(reasoning="r", answer="yes", confidence=0.5)
    assert sig.split_return(value) == {"reasoning": "r", "answer": "yes", "confidence": 0.5}
    with pytest.raises(ValueError):
        sig.build_return({"reasoning": "r", "answer": "maybe"})


def test_multi_output_dataclass_and_typeddict() -> None:
    sig = signature_from_function(_returns(Point))
    assert sig.output_names == ("x", "y", "label", "tags")
    assert [f.has_default for f in sig.outputs] == [False, False, True, True]
    assert sig.outputs[3].default == []
    point = sig.build_return({"x": 1, "y": 2})
    assert point == Point(1, 2)
    assert sig.split_return(point) == {"x": 1, "y": 2, "label": "p", "tags": []}

    sig = signature_from_function(_returns(Person))
    assert sig.multi_output and sig.output_names == ("name", "age")
    assert sig.outputs[0].description == "the full name"
    assert sig.build_return({"name": "Ada"}) == {"name": "Ada"}
    assert sig.split_return({"name": "Ada", "age": 36}) == {"name": "Ada", "age": 36}

    sig = signature_from_function(_returns(Pet))
    assert sig.output_names == ("kind", "age")
    assert [f.description for f in sig.outputs] == ["what animal", ""]
    assert sig.build_return({"kind": "cat", "age": 2}) == {"kind": "cat", "age": 2}


def test_single_output_build_and_split() -> None:
    sig = signature_from_function(classify)
    assert sig.build_return({"output": "bug"}) == "bug"
    assert sig.split_return("bug") == {"output": "bug"}
    for wrapped in (Optional[Answer], list[Answer]):  # noqa: UP045
        assert not signature_from_function(_returns(wrapped)).multi_output


def test_locally_defined_types_resolve() -> None:
    class Mood(enum.Enum):
        HAPPY = "happy"
        SAD = "sad"

    @dataclasses.dataclass
    class Reading:
        mood: Mood  # how the writer feels
        intensity: int

    def read(diary: list[Reading]) -> Mood:
        """Read the diary."""

    sig = signature_from_function(read)
    assert sig.return_annotation is Mood
    assert sig.inputs[0].annotation == list[Reading]
    assert field_spec(sig.inputs[0]).shape() == '[{"mood": "happy" | "sad", "intensity": integer}, ...]'


def test_closure_types_resolve_outside_their_scope() -> None:
    def factory() -> Callable[..., Any]:
        class Verdict(BaseModel):
            guilty: bool

        def judge(case: str) -> Verdict:
            """Judge the case."""
            Verdict  # referenced so that it is a closure cell

        return judge

    judge = factory()  # Verdict is not visible from here: only the closure cell knows it
    sig = signature_from_function(judge)
    assert sig.multi_output and sig.output_names == ("guilty",)


def test_signature_is_frozen_and_comparable() -> None:
    first, second = signature_from_function(classify), signature_from_function(classify)
    assert first == second
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.name = "other"  # type: ignore[misc]
