from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import pytest
from pydantic import BaseModel

import lmprog
from lmprog import OutputParseError, lm_function, settings
from lmprog.errors import SignatureError, UsageError
from lmprog.function import LMFunction, State, use_states
from lmprog.testing import ScriptedLM


@lm_function
def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify a support ticket by its topic.

    Args:
        ticket: the customer's message, verbatim.
    """


class Answer(BaseModel):
    reasoning: str
    answer: int


@lm_function(max_retries=1, temperature=0.3, name="solve")
def solve_math(question: str, hint: str = "none") -> Answer:
    """Solve the word problem."""


@lm_function
async def aclassify(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify a support ticket by its topic."""


def test_decorator_returns_an_lm_function_keeping_the_wrapped_metadata() -> None:
    assert isinstance(classify, LMFunction)
    assert classify.__name__ == "classify"
    assert classify.__doc__ and "support ticket" in classify.__doc__
    assert classify.signature.input_names == ("ticket",)
    assert solve_math.name == "solve"
    assert solve_math.max_retries == 1 and solve_math.temperature == 0.3


def test_call_renders_the_signature_and_parses_the_literal() -> None:
    lm = ScriptedLM(["bug"])
    with lmprog.context(lm=lm):
        assert classify("The app crashes") == "bug"
    system, user = lm.calls[0].messages
    assert "Classify a support ticket by its topic." in system["content"]
    assert "the customer's message, verbatim." in system["content"]
    assert "billing, bug, feature" in system["content"]
    assert user == {"role": "user", "content": "ticket: The app crashes"}


def test_keyword_arguments_defaults_and_multi_field_output() -> None:
    lm = ScriptedLM([{"reasoning": "2+2", "answer": 4}])
    with lmprog.context(lm=lm):
        out = solve_math(question="What is 2+2?")
    assert out == Answer(reasoning="2+2", answer=4)
    assert "hint: none" in lm.calls[0].messages[-1]["content"]
    assert lm.calls[0].params["temperature"] == 0.3


def test_bad_arguments_name_the_function() -> None:
    with pytest.raises(UsageError, match="classify"):
        classify("a", "b")


def test_invalid_output_is_retried_with_the_validation_error_shown() -> None:
    lm = ScriptedLM(["I think it is about money", "billing"])
    with lmprog.context(lm=lm):
        assert classify("refund please") == "billing"
    assert len(lm.calls) == 2
    retry = lm.calls[1].messages
    assert retry[-2] == {"role": "assistant", "content": "I think it is about money"}
    assert retry[-1]["role"] == "user"
    assert "billing" in retry[-1]["content"]


def test_a_format_failure_costs_at_most_two_requests_then_raises_with_the_raw_text() -> None:
    # max_retries=2, but a reply in the wrong format is retried once only (2 requests per failure)
    garbage = ["%%%", "{not json", "zzz qqq"]
    lm = ScriptedLM(garbage)
    with lmprog.context(lm=lm), pytest.raises(OutputParseError) as info:
        classify("hello")
    err = info.value
    assert err.raw == "{not json"
    assert err.attempts == 2
    assert err.errors and all(isinstance(e, str) for e in err.errors)
    assert "classify" in str(err)
    assert len(lm.calls) == 2 and lm.remaining == 1


def test_max_retries_zero_fails_on_the_first_bad_output() -> None:
    @lm_function(max_retries=0)
    def count(text: str) -> int:
        """Count the words."""

    lm = ScriptedLM(["many"])
    with lmprog.context(lm=lm), pytest.raises(OutputParseError):
        count("a b c")
    assert len(lm.calls) == 1


def test_async_lm_function() -> None:
    lm = ScriptedLM(["feature"])

    async def main() -> str:
        with lmprog.context(lm=lm):
            return await aclassify("please add dark mode")

    assert asyncio.run(main()) == "feature"
    assert len(lm.calls) == 1


def test_async_retry_path_matches_sync() -> None:
    lm = ScriptedLM(["nope", "nope", "nope"])

    async def main() -> None:
        with lmprog.context(lm=lm):
            await aclassify("x")

    with pytest.raises(OutputParseError):
        asyncio.run(main())
    assert len(lm.calls) == 2  # a format failure is retried once, as in the sync path


def test_explicit_lm_beats_the_configured_one() -> None:
    mine = ScriptedLM(["bug"])

    @lm_function(lm=mine)
    def pick(ticket: str) -> Literal["billing", "bug"]:
        """Pick."""

    other = ScriptedLM([])
    with lmprog.context(lm=other):
        assert pick("x") == "bug"
    assert other.calls == [] and len(mine.calls) == 1


class Mood(Enum):
    HAPPY = "happy"
    SAD = "sad"


@dataclass
class Person:
    name: str
    age: int


def test_enum_dataclass_list_outputs() -> None:
    @lm_function
    def mood(text: str) -> Mood:
        """Mood of the text."""

    @lm_function
    def people(text: str) -> list[Person]:
        """People mentioned."""

    lm = ScriptedLM(["sad", '[{"name": "Ann", "age": 3}]'])
    with lmprog.context(lm=lm):
        assert mood("rain") is Mood.SAD
        assert people("Ann is 3") == [Person("Ann", 3)]


def test_unsupported_annotation_fails_at_decoration_with_location() -> None:
    with pytest.raises(SignatureError) as info:

        @lm_function
        def bad(data: bytes) -> str:
            """Nope."""

    msg = str(info.value)
    assert "bad" in msg and "test_function.py" in msg and "bytes" in msg


class Helper:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @lm_function
    def shout(self, text: str) -> str:
        """Repeat the text loudly."""


def test_lm_function_as_a_method_skips_self() -> None:
    lm = ScriptedLM(["HI"])
    h = Helper(">")
    with lmprog.context(lm=lm):
        assert h.shout("hi") == "HI"
        assert Helper.shout.signature.input_names == ("text",)
    assert lm.calls[0].messages[-1]["content"] == "text: hi"


def test_state_instruction_and_demos_shape_the_messages() -> None:
    @lm_function
    def tag(text: str) -> Literal["a", "b"]:
        """Tag the text."""

    tag.instruction = "Say a for apples, b otherwise."
    tag.demos = [{"text": "apple pie", "output": "a"}]
    msgs = tag.messages("banana")
    assert msgs[0]["content"].startswith("Say a for apples, b otherwise.")
    assert {"role": "user", "content": "text: apple pie"} in msgs
    assert {"role": "assistant", "content": "a"} in msgs
    tag.reset()
    assert tag.instruction == "Tag the text." and tag.demos == []


def test_use_states_is_local_to_the_context_and_thread() -> None:
    @lm_function
    def tag(text: str) -> str:
        """Tag the text."""

    seen: dict[str, str] = {}

    def other_thread() -> None:
        seen["other"] = tag.instruction

    with use_states({tag: State(instruction="Override.")}):
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        seen["here"] = tag.instruction
    assert seen == {"other": "Tag the text.", "here": "Override."}
    assert tag.instruction == "Tag the text."


def test_settings_isolated_between_threads_and_asyncio_tasks() -> None:
    a, b = ScriptedLM(lambda m: "billing"), ScriptedLM(lambda m: "bug")
    results: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def worker(name: str, lm: ScriptedLM) -> None:
        with lmprog.context(lm=lm):
            barrier.wait()
            results[name] = classify("x")

    threads = [threading.Thread(target=worker, args=(n, lm)) for n, lm in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"a": "billing", "b": "bug"}

    async def task(lm: ScriptedLM) -> str:
        with lmprog.context(lm=lm):
            await asyncio.sleep(0.01)
            return await aclassify("y")

    async def main() -> list[str]:
        return list(await asyncio.gather(task(a), task(b)))

    assert asyncio.run(main()) == ["billing", "bug"]
    assert settings.current().lm is None


def test_configure_is_seen_by_plain_threads() -> None:
    lm = ScriptedLM(lambda m: "feature")
    lmprog.configure(lm=lm)
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(classify("z")))
    t.start()
    t.join()
    assert out == ["feature"]


def test_unknown_setting_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown setting"):
        lmprog.configure(lmm="x")
