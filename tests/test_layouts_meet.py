"""Where prompt layouts and label scoring meet tools, conversation history, native reasoning and
streaming: what works together, and the clear errors for what cannot."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import pytest

import lmprog
from lmprog import History, lm_function
from lmprog.errors import UsageError
from lmprog.format import render_messages
from lmprog.function import FinalOutput, State, TextChunk, use_states
from lmprog.lm import Messages
from lmprog.optimize import optimize
from lmprog.signature import signature_from_function
from lmprog.testing import ScriptedLM


def lookup(word: str) -> str:
    """The dictionary entry of a word."""
    return f"{word}: a word"


@lm_function(tools=[lookup])
def tagged(text: str) -> Literal["positive", "negative"]:
    """Classify the text's sentiment."""


@lm_function
def chatty(message: str, history: History) -> Literal["positive", "negative"]:
    """Classify the user's last message in the conversation."""


@lm_function(reasoning=True)
def reasoned(text: str) -> Literal["positive", "negative"]:
    """Classify the text's sentiment."""


@lm_function
def plain(text: str) -> Literal["positive", "negative"]:
    """Classify the text's sentiment."""


PAST = [{"role": "user", "content": "Hello."}, {"role": "assistant", "content": "Hi."}]


def scored(messages: Messages, text: str) -> float:
    return -0.1 if text.strip() == "negative" else -2.0


@pytest.mark.parametrize("layout", ["transcript", "completion"])
def test_tools_need_the_chat_layout(layout: str) -> None:
    lm = ScriptedLM(["positive"], takes_prompt=True)
    with lmprog.context(lm=lm, load_prompts=False), use_states({tagged: State(layout=layout)}):  # type: ignore[arg-type]
        with pytest.raises(UsageError, match=f"'{layout}' layout has no chat turns for tools") as e:
            tagged("great")
    assert "tagged" in str(e.value)
    assert lm.calls == []  # refused before any request


@pytest.mark.parametrize("layout", ["transcript", "completion"])
def test_a_history_input_needs_the_chat_layout(layout: str) -> None:
    lm = ScriptedLM(["positive"], takes_prompt=True)
    with lmprog.context(lm=lm, load_prompts=False), use_states({chatty: State(layout=layout)}):  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="History input \\('history'\\)"):
            chatty("great", PAST)
        with pytest.raises(UsageError, match="no chat turns"):
            chatty.messages("great", PAST)
    assert lm.calls == []


def test_render_messages_takes_every_option_in_one_signature() -> None:
    sig = signature_from_function(lookup)
    tools_sig = tagged.signature
    chat = render_messages(tools_sig, {"text": "x"}, tools=[sig], native_tools=False, layout="chat")
    assert "lookup" in chat[0]["content"] and chat[-1]["role"] == "user"
    with pytest.raises(UsageError, match="no chat turns for tools"):
        render_messages(tools_sig, {"text": "x"}, tools=[sig], native_tools=True, layout="transcript")
    laid = render_messages(plain.signature, {"text": "x"}, layout="transcript")
    assert [m["role"] for m in laid] == ["system", "user"]


def test_history_scores_its_labels_in_the_chat_layout() -> None:
    lm = ScriptedLM([], constraint="grammar", logprobs=scored)
    with lmprog.context(lm=lm, load_prompts=False), use_states({chatty: State(decode="score")}):
        with lmprog.trace() as t:
            assert chatty("awful", PAST) == "negative"
    assert len(lm.calls) == 1 and all(c.messages[1:3] == PAST for c in lm.calls)  # one for both options
    assert t.spans[0].scores is not None and t.spans[0].requests == 1


@pytest.mark.parametrize("decode", ["score", "calibrated"])
def test_scoring_with_tools_is_a_usage_error(decode: str) -> None:
    lm = ScriptedLM([], constraint="grammar", logprobs=scored)
    state = State(decode=decode, calibration={"positive": 0.5, "negative": 0.5})  # type: ignore[arg-type]
    with lmprog.context(lm=lm, load_prompts=False), use_states({tagged: state}):
        with pytest.raises(UsageError, match="cannot be combined with tools"):
            tagged("great")
    assert lm.calls == []


def test_scoring_with_native_reasoning_is_a_usage_error() -> None:
    lm = ScriptedLM([], constraint="grammar", logprobs=scored, native_reasoning=True)
    with lmprog.context(lm=lm, load_prompts=False), use_states({reasoned: State(decode="score")}):
        with pytest.raises(UsageError, match="cannot be combined with reasoning=True"):
            reasoned("great")
    assert lm.calls == []


def test_a_scored_call_streams_the_chosen_option_whole() -> None:
    lm = ScriptedLM([], constraint="grammar", logprobs=scored)
    with lmprog.context(lm=lm, load_prompts=False), use_states({plain: State(decode="score")}):
        with lmprog.trace() as t:
            events = list(plain.stream("awful"))
    assert events == [TextChunk("negative", 1), FinalOutput("negative")]
    assert t.spans[0].scores is not None and t.spans[0].requests == 1 and len(lm.calls) == 1


def test_a_scored_call_streams_asynchronously_too() -> None:
    lm = ScriptedLM([], constraint="grammar", logprobs=scored)

    async def collect() -> list[Any]:
        return [event async for event in plain.astream("awful")]

    with (
        lmprog.context(lm=lm, load_prompts=False),
        use_states({plain: State(decode="calibrated", calibration={"positive": 0.01, "negative": 0.99})}),
    ):
        events = asyncio.run(collect())
    # calibration divides out a prior that favours "negative": "positive" wins
    assert events == [TextChunk("positive", 1), FinalOutput("positive")]


def test_the_completion_layout_streams_and_parses() -> None:
    lm = ScriptedLM([" negative"], takes_prompt=True, constraint="grammar")
    with lmprog.context(lm=lm, load_prompts=False), use_states({plain: State(layout="completion")}):
        events = list(plain.stream("awful"))
    assert events[-1] == FinalOutput("negative")
    assert "".join(e.text for e in events if isinstance(e, TextChunk)) == " negative"
    assert lm.calls[0].messages[0]["role"] == "prompt"
    assert lm.calls[0].params["stop"] == ["\n---"]


# -- the variants step ---------------------------------------------------------------------------


def _label(messages: Messages) -> str:
    return "negative" if "awful" in messages[-1]["content"] else "positive"


DATA = [
    {"text": "awful", "history": PAST, "output": "negative"},
    {"text": "great", "history": PAST, "output": "positive"},
    {"text": "awful day", "history": PAST, "output": "negative"},
    {"text": "fine", "history": PAST, "output": "positive"},
]


def _metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    return bool(prediction == example["output"])


def _optimize(program: Any, lm: ScriptedLM) -> lmprog.OptimizationResult:
    with lmprog.context(lm=lm, load_prompts=False, cache=False):
        return optimize(
            program,
            DATA[:2],
            _metric,
            valset=DATA[2:],
            optimizer="labeled",
            variants="all",
            apply=False,
            progress=False,
            save=False,
        )


def _tried(result: lmprog.OptimizationResult) -> list[tuple[str, str]]:
    return [(t["layout"], t["decode"]) for t in result.details["variants"] if "skipped" not in t]


def test_variants_keep_chat_and_sampling_for_a_function_with_tools() -> None:
    def program(text: str, history: Any) -> Any:
        return tagged(text)

    lm = ScriptedLM(_label, constraint="grammar", logprobs=scored, takes_prompt=True)
    result = _optimize(program, lm)
    assert _tried(result) == [("chat", "sample")]  # nothing else a function with tools can use
    assert [(s.layout, s.decode) for s in result.states.values()] == [("chat", "sample")]
    assert lm.calls and all(call.messages[0]["role"] == "system" for call in lm.calls)


def test_variants_apply_layouts_only_to_the_functions_that_can_take_them() -> None:
    def program(text: str, history: Any) -> Any:
        chatty(text, history)
        return plain(text)

    lm = ScriptedLM(_label, constraint="grammar", logprobs=scored, takes_prompt=True)
    result = _optimize(program, lm)
    tried = _tried(result)
    assert ("transcript", "sample") in tried and ("completion", "calibrated") in tried  # for plain
    with_history = [call for call in lm.calls if "Hello." in json.dumps(call.messages)]
    assert with_history and all(call.messages[1:3] == PAST for call in with_history)  # chat turns
    assert result.states[chatty].layout == "chat"
    assert any(call.messages[0]["role"] == "prompt" for call in lm.calls)  # plain's completion layout
