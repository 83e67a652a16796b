"""Fuzzing at the edges where outside text enters: completions reaching an lm_function (the parser
itself is fuzzed in tests/test_parse_fuzz.py) and prompt files reaching the loader.

A completion gives a valid value of the return type or an OutputParseError (a blank one a
TransientLMError: an empty reply is a failed request), nothing else. A prompt
file gives a State the function can render, or a PromptFileError (UsageError for demos that do
not fit the function), nothing else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import os
from pathlib import Path
from typing import Any, Literal, Optional

import pytest
import typing_extensions
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter

import lmprog
from lmprog import lm_function, promptfile
from lmprog.errors import LmprogError, OutputParseError, PromptFileError, TransientLMError, UsageError
from lmprog.function import LMFunction, State
from lmprog.prompt import render_messages
from lmprog.testing import ScriptedLM

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_N", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Person(typing_extensions.TypedDict):
    name: str
    age: int


class Verdict(BaseModel):
    reasoning: str
    answer: Literal["yes", "no"]
    confidence: float | None = None


ANNOTATIONS: list[Any] = [
    str,
    int,
    float,
    bool,
    Literal["billing", "bug", "feature"],
    Color,
    Optional[int],  # noqa: UP045
    list[str],
    dict[str, int],
    tuple[int, str],
    list[Point],
    Person,
    Verdict,
    Point,
]


def make_function(annotation: Any) -> LMFunction:
    def task(question: str) -> Any:
        """Answer the question."""

    task.__annotations__ = {"question": str, "return": annotation}
    return lm_function(max_retries=1)(task)


FUNCTIONS = [make_function(a) for a in ANNOTATIONS]
IDS = [getattr(a, "__name__", None) or repr(a) for a in ANNOTATIONS]

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)
COMPLETIONS = (
    st.text()
    | st.text(alphabet=st.characters(min_codepoint=0x80))  # unicode only: accents, CJK, emoji, RTL
    | _json_values.map(lambda v: json.dumps(v, ensure_ascii=False))
    | st.tuples(_json_values.map(json.dumps), st.integers(1, 30)).map(lambda t: t[0][: -t[1]] or "{")
    | st.lists(st.sampled_from(["reasoning:", "answer:", "x:", "yes", "{", "[", "```json", "\n", '"'])).map(
        "".join
    )
    | st.sampled_from(["a" * 300_000, "[" * 50_000, '{"answer": ' * 20_000, "\x00" * 1000, "\ud800x"])
)


def _is_valid(annotation: Any, value: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return isinstance(annotation, type) and isinstance(value, annotation)
    if dataclasses.is_dataclass(annotation):
        return isinstance(value, annotation)  # type: ignore[arg-type]
    return TypeAdapter(annotation).validate_python(value, strict=True) == value


@pytest.mark.parametrize("index", range(len(FUNCTIONS)), ids=IDS)
@FUZZ
@given(text=COMPLETIONS)
def test_an_lm_function_returns_a_valid_value_or_raises_output_parse_error(index: int, text: str) -> None:
    fn = FUNCTIONS[index]
    lm = ScriptedLM(lambda messages: text, num_retries=0)
    with lmprog.context(lm=lm, load_prompts=False, cache=False):
        try:
            value = fn(question="q")
        except OutputParseError as e:
            assert e.raw == text and e.attempts == 2 and e.errors
            assert len(str(e)) < 4000, "the error message must stay readable"
        except TransientLMError as e:
            assert not text.strip() and "empty completion" in str(e)
        else:
            assert _is_valid(ANNOTATIONS[index], value), value
    assert len(lm.calls) in (1, 2)


@FUZZ
@given(text=COMPLETIONS)
def test_an_async_lm_function_behaves_the_same(text: str) -> None:
    @lm_function(max_retries=0)
    async def judge(question: str) -> Verdict:
        """Judge."""

    with lmprog.context(lm=ScriptedLM(lambda messages: text, num_retries=0), load_prompts=False, cache=False):
        try:
            value = asyncio.run(judge(question="q"))
        except OutputParseError as e:
            assert e.raw == text
        except TransientLMError as e:
            assert not text.strip() and "empty completion" in str(e)
        else:
            assert isinstance(value, Verdict)


# -- prompt files --------------------------------------------------------------------------------
@lm_function
def classify(ticket: str, lang: str = "en") -> Verdict:
    """Classify the ticket."""


def _good_doc() -> dict[str, Any]:
    text = promptfile.render(
        classify,
        State("Read it.\nThen answer.", ({"ticket": "t", "reasoning": "r", "answer": "yes"},)),
        {"score": 1.0},
    )
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


GOOD = _good_doc()
_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@st.composite
def mutated_docs(draw: st.DrawFn) -> str:
    """A real prompt file with some fields removed or replaced by random values, dumped as YAML."""
    doc = dict(GOOD)
    for key in draw(st.lists(st.sampled_from([*GOOD, "extra"]), max_size=3)):
        if draw(st.booleans()):
            doc.pop(key, None)
        else:
            doc[key] = draw(_yaml_values)
    if draw(st.booleans()):
        doc["demos"] = draw(
            st.lists(
                st.dictionaries(
                    st.sampled_from(["ticket", "lang", "reasoning", "answer", "zz"]), _yaml_values, max_size=4
                ),
                max_size=3,
            )
        )
    return yaml.safe_dump(doc, allow_unicode=True)


@st.composite
def cut_files(draw: st.DrawFn) -> str:
    """A real prompt file cut short or with a splice of garbage, as a crash or a bad merge leaves it."""
    text = promptfile.HEADER + yaml.safe_dump(GOOD)
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.sampled_from(["", "<<<<<<< HEAD\n", "\t", ": :", "- [", "&a x\n*b", "\x00"]))


FILES = (
    st.text()
    | _yaml_values.map(lambda v: yaml.safe_dump(v, allow_unicode=True))
    | mutated_docs()
    | cut_files()
    | st.sampled_from(
        [
            "!!python/object/apply:os.system ['true']",
            "a: &a [*a]",
            "[" * 5000,
            "x: " + "[" * 3000 + "]" * 3000,
            'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nd: &d [*c,*c]\ndemos: [*d]',
            "schema: 1\nfunction: x\nsignature_hash: 1\ninstruction: y",
        ]
    )
)


def _load(path: Path, raw: bytes) -> State | None:
    path.write_bytes(raw)
    try:
        state = promptfile.load_state(classify, path)
    except PromptFileError:
        return None
    assert isinstance(state, State)
    assert state.instruction is None or isinstance(state.instruction, str)
    assert all(isinstance(d, dict) for d in state.demos)
    try:
        render_messages(classify.signature, {"ticket": "t"}, instruction=state.instruction, demos=state.demos)
    except UsageError as e:  # demos that do not fit the function: named in the error
        assert "demo" in str(e) and "classify" in str(e)
    return state


@FUZZ
@given(text=FILES)
def test_a_prompt_file_loads_as_a_state_or_raises_prompt_file_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "prompts" / "fuzz.classify.yaml"
    path.parent.mkdir(exist_ok=True)
    try:
        _load(path, text.encode("utf-8", "surrogatepass"))
    except LmprogError as e:
        pytest.fail(f"{type(e).__name__} instead of PromptFileError: {e}")


@FUZZ
@given(raw=st.binary(max_size=300))
def test_a_binary_prompt_file_is_a_prompt_file_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "fuzz.classify.yaml"
    _load(path, promptfile.HEADER.encode() + raw)


def test_the_real_file_survives_the_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "classify.yaml"
    state = _load(path, (promptfile.HEADER + yaml.safe_dump(GOOD)).encode())
    assert state is not None and state.instruction == "Read it.\nThen answer."
