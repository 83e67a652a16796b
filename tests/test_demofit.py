"""Demos against the signature: what ``lmprog check`` reports and what loading a prompt file
refuses, naming the file, the line and the demo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from lmprog import lm_function, settings
from lmprog.errors import PromptFileError
from lmprog.function import LMFunction, State
from lmprog.promptfile import status, write
from lmprog.testing import ScriptedLM


@pytest.fixture(autouse=True)
def prompt_dir(tmp_path: Path) -> Iterator[Path]:
    with settings.context(prompt_dir=tmp_path / "prompts", cache=False):
        yield tmp_path / "prompts"


def make_classify() -> LMFunction:
    @lm_function
    def classify(ticket: str, lang: str = "en") -> Literal["billing", "bug", "feature"]:
        """Classify a support ticket by its topic."""

    return classify


GOOD = {"ticket": "I was charged twice", "output": "billing"}


def line_of(path: Path, text: str, after: int = 0) -> int:
    """The 1-based number of the first line after line ``after`` that contains ``text``."""
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if i > after and text in line)


def test_a_renamed_output_key_is_corrupt_and_the_call_names_file_and_line() -> None:
    path = write(make_classify(), State(demos=(GOOD, {"ticket": "crash", "label": "bug"})))
    line = line_of(path, "label: bug")
    fn = make_classify()
    found = status(fn)
    assert found.startswith("corrupt: ")
    assert f"{path}:{line}: demo 2: 'label' is not a field of classify" in found
    assert "demo 2: no value for output 'output'" in found
    with pytest.raises(PromptFileError) as info, settings.context(lm=ScriptedLM(["bug"])):
        fn("The app crashes")
    assert str(info.value).startswith(f"{path}:{line}: demo 2: 'label' is not a field of classify")
    assert "(and 1 more)" in str(info.value)


def test_a_value_that_is_not_one_of_the_literal_options_is_corrupt() -> None:
    path = write(make_classify(), State(demos=({"ticket": "refund me", "output": "refund"}, GOOD)))
    line = line_of(path, "output: refund")
    found = status(make_classify())
    expected = "output: expected exactly one of: billing, bug, feature, got 'refund'"
    assert found == f"corrupt: {path}:{line}: demo 1: {expected}"
    with pytest.raises(PromptFileError, match=rf"{path.name}:{line}: demo 1: output: expected exactly one"):
        make_classify()("hi")


def test_an_unknown_input_key_and_a_missing_input_are_reported() -> None:
    path = write(make_classify(), State(demos=(GOOD, {"tikcet": "crash", "output": "bug"})))
    found = status(make_classify())
    assert f"{path}:{line_of(path, 'tikcet')}: demo 2: 'tikcet' is not a field of classify" in found
    assert "demo 2: no value for input 'ticket'" in found


def test_demos_that_fit_are_ok_and_an_input_with_a_default_may_be_left_out() -> None:
    write(make_classify(), State(demos=(GOOD, {"ticket": "crash", "lang": "de", "output": "Bug"})))
    assert status(make_classify()) == "ok"
    lm = ScriptedLM(["bug"])
    with settings.context(lm=lm):
        assert make_classify()("It crashes") == "bug"
    # the demo without ``lang`` is rendered with its default, as a call is
    assert lm.calls[0].messages[1]["content"] == "ticket: I was charged twice\nlang: en"


class Reply(BaseModel):
    reasoning: str
    count: Annotated[int, Field(ge=0)]


def test_values_are_validated_by_their_type_specs() -> None:
    @lm_function
    def count(items: list[str], limit: int = 3) -> Reply:
        """Count the items."""

    from lmprog.promptfile._demofit import demo_problems, fit_demo

    sig = count.signature
    assert demo_problems(sig, {"items": ["a"], "reasoning": "one", "count": 1}) == []
    messages = [
        p.message for p in demo_problems(sig, {"items": "a", "limit": "x", "reasoning": "r", "count": -1})
    ]
    assert messages[0].startswith("input 'items': expected a JSON list of strings")
    assert messages[1].startswith("input 'limit': expected an integer")
    assert messages[2].startswith("output 'count': ") and "greater than or equal to 0" in messages[2]
    # a multi-output demo may hold the whole return value under "output"
    assert demo_problems(sig, {"items": [], "output": {"reasoning": "r", "count": 0}}) == []
    assert fit_demo(sig, {"items": [], "reasoning": "r", "count": "2"}) == {
        "items": [],
        "reasoning": "r",
        "count": 2,
    }
