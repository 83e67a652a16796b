"""``reasoning=True`` on a model that reasons natively: ``reasoning_effort`` is sent instead of a
``reasoning`` field, and the provider's own reasoning goes into the span (and demos)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Literal

import pydantic

import lmprog
from lmprog import lm_function
from lmprog.function import use_states
from lmprog.lm import _litellm
from lmprog.optimize import optimize
from lmprog.testing import ScriptedLM


@lm_function(reasoning=True)
def classify(ticket: str) -> Literal["billing", "bug"]:
    """Classify a support ticket."""


@lm_function(reasoning=True, reasoning_effort="high")
def classify_hard(ticket: str) -> Literal["billing", "bug"]:
    """Classify a support ticket."""


class Person(pydantic.BaseModel):
    name: str
    age: int


@lm_function(reasoning=True)
def extract(text: str) -> Person:
    """Extract the person."""


def native(responses: Any, **kwargs: Any) -> ScriptedLM:
    return ScriptedLM(responses, native_reasoning=True, **kwargs)


def test_no_reasoning_field_is_asked_for_and_the_effort_is_sent() -> None:
    lm = native([{"reasoning": "a charge is billing", "output": "billing"}])
    with lmprog.context(lm=lm):
        assert classify("charged twice") == "billing"
    (call,) = lm.calls
    assert "reasoning" not in call.messages[0]["content"]
    assert call.params["reasoning_effort"] == "medium"
    with lmprog.context(lm=lm):  # what fn.messages shows is what was sent
        assert call.messages == classify.messages("charged twice")


def test_the_providers_reasoning_is_kept_in_the_span_not_returned() -> None:
    lm = native([{"reasoning": "Bob is 41 per the text", "name": "Bob", "age": 41}])
    with lmprog.context(lm=lm), lmprog.trace() as t:
        assert extract("Bob, 41") == Person(name="Bob", age=41)
    assert t.spans[0].reasoning == "Bob is 41 per the text"
    assert "reasoning" not in t.spans[0].raw


def test_the_effort_comes_from_the_function_then_the_lm_then_the_default() -> None:
    lm = native(["billing", "billing"])
    with lmprog.context(lm=lm):
        classify_hard("charged twice")
    lm_default = native(["billing"], reasoning_effort="low")
    with lmprog.context(lm=lm_default):
        classify("charged twice")
    assert lm.calls[0].params["reasoning_effort"] == "high"
    assert lm_default.calls[0].params["reasoning_effort"] == "low"


def test_a_model_without_native_reasoning_still_gets_the_text_field() -> None:
    lm = ScriptedLM(["reasoning: a charge.\noutput: billing"])
    with lmprog.context(lm=lm), lmprog.trace() as t:
        assert classify("charged twice") == "billing"
    assert "reasoning" in lm.calls[0].messages[0]["content"]
    assert "reasoning_effort" not in lm.calls[0].params
    assert t.spans[0].reasoning == "a charge."


def test_functions_without_reasoning_send_no_effort() -> None:
    @lm_function
    def plain(ticket: str) -> Literal["billing", "bug"]:
        """Classify a support ticket."""

    lm = native(["billing"])
    with lmprog.context(lm=lm):
        plain("charged twice")
    assert "reasoning_effort" not in lm.calls[0].params


def test_a_cache_hit_keeps_the_reasoning() -> None:
    lm = native([{"reasoning": "a charge", "output": "billing"}], cache=True)
    with lmprog.context(lm=lm), lmprog.trace() as t:
        classify("charged twice")
        classify("charged twice")
    assert len(lm.calls) == 1
    assert [s.reasoning for s in t.spans] == ["a charge", "a charge"]
    assert t.spans[1].cache_hit


def test_streaming_a_native_reasoning_call_keeps_the_reasoning() -> None:
    lm = native([{"reasoning": "Bob is 41", "name": "Bob", "age": 41}])
    with lmprog.context(lm=lm), lmprog.trace() as t:
        events = list(extract.stream("Bob, 41"))
    assert events[-1] == lmprog.FinalOutput(Person(name="Bob", age=41))
    assert t.spans[0].reasoning == "Bob is 41"


def test_bootstrapped_demos_carry_the_native_reasoning_and_render_without_it() -> None:
    def answer(messages: list[dict[str, str]]) -> dict[str, str]:
        label = "billing" if "charged" in messages[-1]["content"] else "bug"
        return {"reasoning": f"it is about {label}", "output": label}

    def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
        return bool(prediction == example["label"])

    rows = [{"ticket": "card charged twice", "label": "billing"}]
    with lmprog.context(lm=native(answer), load_prompts=False):
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
        state = result.states[classify]
        assert list(state.demos) == [
            {"ticket": "card charged twice", "output": "billing", "reasoning": "it is about billing"}
        ]
        with use_states({classify: state}):
            messages = classify.messages("app crashes")
    assert [m["content"] for m in messages[1:3]] == ["ticket: card charged twice", "billing"]


def test_litellm_reasoning_content_and_thinking_blocks_are_read() -> None:
    assert _litellm._reasoning_of(SimpleNamespace(reasoning_content="step 1")) == "step 1"
    blocks = [{"type": "thinking", "thinking": "first"}, {"type": "thinking", "thinking": "second"}]
    message = SimpleNamespace(reasoning_content=None, thinking_blocks=blocks)
    assert _litellm._reasoning_of(message) == "first\nsecond"
    assert _litellm._reasoning_of(SimpleNamespace(content="x")) is None


def test_litellm_tells_which_models_reason_natively() -> None:
    assert lmprog.LM("openai/o3-mini").native_reasoning()
    assert not lmprog.LM("openai/gpt-4o-mini").native_reasoning()
    assert not lmprog.LM("local").native_reasoning()
