"""Prompt layouts: how each renders, what each sends (grammar, stop, role), fallback and retries."""

from __future__ import annotations

import logging
from typing import Literal

import pytest
from pydantic import BaseModel

import lmprog
from lmprog import lm_function
from lmprog.errors import UsageError
from lmprog.format import lead_space_grammar, parse_output, render_messages
from lmprog.function import LMFunction, State
from lmprog.lm import PROMPT_ROLE
from lmprog.signature import signature_from_function
from lmprog.testing import ScriptedLM


def classify(ticket: str) -> Literal["billing", "bug"]:
    """Classify a ticket."""


class Verdict(BaseModel):
    reasoning: str
    answer: bool


def judge(claim: str, context: str = "") -> Verdict:
    """Judge the claim."""


DEMOS = (
    {"ticket": "charged twice", "output": "billing"},
    {"ticket": "it crashes\non start", "output": "bug"},
)


def test_chat_is_the_default_layout_and_unchanged() -> None:
    sig = signature_from_function(classify)
    assert render_messages(sig, {"ticket": "x"}, demos=DEMOS) == render_messages(
        sig, {"ticket": "x"}, demos=DEMOS, layout="chat"
    )
    roles = [m["role"] for m in render_messages(sig, {"ticket": "x"}, demos=DEMOS)]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]


def test_transcript_is_one_user_message_of_demo_blocks_ending_on_the_output_cue() -> None:
    sig = signature_from_function(classify)
    messages = render_messages(sig, {"ticket": "refund?"}, demos=DEMOS, layout="transcript")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == render_messages(sig, {"ticket": "x"})[0]["content"]
    assert messages[1]["content"] == (
        "ticket: charged twice\noutput: billing\n---\nticket:\nit crashes\non start\noutput: bug\n---\n"
        "ticket: refund?\noutput:"
    )


def test_completion_is_one_prompt_message_with_the_system_text_first() -> None:
    sig = signature_from_function(classify)
    transcript = render_messages(sig, {"ticket": "refund?"}, demos=DEMOS, layout="transcript")
    [prompt] = render_messages(sig, {"ticket": "refund?"}, demos=DEMOS, layout="completion")
    assert prompt["role"] == PROMPT_ROLE
    assert prompt["content"] == transcript[0]["content"] + "\n---\n" + transcript[1]["content"]


def test_multi_output_blocks_hold_name_lines_and_no_cue() -> None:
    sig = signature_from_function(judge)
    demo = {"claim": "sky is blue", "reasoning": "seen it", "answer": True}
    [_, user] = render_messages(sig, {"claim": "grass is red"}, demos=[demo], layout="transcript")
    assert user["content"] == (
        "claim: sky is blue\ncontext:\nreasoning: seen it\nanswer: yes\n---\nclaim: grass is red\ncontext:"
    )


def test_several_outputs_in_the_completion_layout_start_on_a_new_line() -> None:
    sig = signature_from_function(judge)
    [prompt] = render_messages(sig, {"claim": "grass is red"}, layout="completion")
    assert prompt["content"].endswith("\n---\nclaim: grass is red\ncontext:\n")
    fn = lm_function(judge)
    fn.state = State(layout="completion")
    lm = ScriptedLM(["reasoning: it is green\nanswer: no"], constraint="grammar", takes_prompt=True)
    with lmprog.context(lm=lm):
        assert fn("grass is red") == Verdict(reasoning="it is green", answer=False)
    assert lm.calls[0].params["grammar"].startswith('root ::= "reasoning: "')


def test_a_bad_layout_is_a_usage_error_naming_the_choices() -> None:
    sig = signature_from_function(classify)
    with pytest.raises(UsageError, match="layout must be one of chat, transcript, completion, got 'grid'"):
        render_messages(sig, {"ticket": "x"}, layout="grid")
    with pytest.raises(ValueError, match="layout must be one of"):
        State(layout="grid")  # type: ignore[arg-type]


def test_the_lead_space_grammar_allows_one_space_before_the_root() -> None:
    assert (
        lead_space_grammar('root ::= ("a" | "b")\nx ::= "c"\n') == 'root ::= " "? (("a" | "b"))\nx ::= "c"\n'
    )
    assert parse_output(signature_from_function(classify), " billing") == "billing"


def make(layout: str) -> LMFunction:
    fn = lm_function(classify)
    fn.state = State(demos=DEMOS, layout=layout)  # type: ignore[arg-type]
    return fn


@pytest.mark.parametrize("layout", ["chat", "transcript", "completion"])
def test_every_layout_sends_the_label_grammar_and_parses_the_reply(layout: str) -> None:
    fn = make(layout)
    lm = ScriptedLM([" bug" if layout == "completion" else "bug"], constraint="grammar", takes_prompt=True)
    with lmprog.context(lm=lm):
        assert fn("the app crashes") == "bug"
    [call] = lm.calls
    assert call.messages == fn.messages("the app crashes")
    grammar = call.params["grammar"]
    assert ('"billing"' in grammar) and ('"bug"' in grammar)
    assert grammar.startswith('root ::= " "?') == (layout == "completion")
    assert ("stop" in call.params) == (layout == "completion")


def test_layouts_are_separate_cache_entries(tmp_path: object) -> None:
    lm = ScriptedLM(["bug", "billing"], cache=True, constraint="grammar")
    with lmprog.context(lm=lm):
        assert make("chat")("x") == "bug"
        assert make("transcript")("x") == "billing"  # not the chat layout's cached reply
        assert make("chat")("x") == "bug"
    assert len(lm.calls) == 2


def test_completion_falls_back_to_transcript_on_a_chat_only_lm(caplog: pytest.LogCaptureFixture) -> None:
    fn = make("completion")
    lm = ScriptedLM(["bug", "bug"], model="chat-only")
    with lmprog.context(lm=lm), caplog.at_level(logging.WARNING, logger="lmprog.function"):
        fn("a")
        fn("b")
    assert [m["role"] for m in lm.calls[0].messages] == ["system", "user"]
    warnings = [r.getMessage() for r in caplog.records if "layout 'completion'" in r.getMessage()]
    assert len(warnings) == 1 and "chat-only takes chat messages only" in warnings[0]


def test_a_chat_only_lm_refuses_a_prompt_message_with_a_clear_error() -> None:
    lm = ScriptedLM(["x"])
    with pytest.raises(UsageError, match="takes chat messages only"):
        lm.complete([{"role": PROMPT_ROLE, "content": "hello"}])
    with pytest.raises(UsageError, match=r"a plain-text prompt .* needs the embedded model"):
        lmprog.LM("openai/gpt-4o-mini").complete([{"role": PROMPT_ROLE, "content": "hello"}])


def test_a_failed_completion_reply_is_retried_as_a_transcript_with_the_errors() -> None:
    fn = make("completion")
    lm = ScriptedLM([" maybe", "bug"], takes_prompt=True)  # no grammar: a bad reply can happen
    with lmprog.context(lm=lm):
        assert fn("x") == "bug"
    first, retry = lm.calls
    assert first.messages[0]["role"] == PROMPT_ROLE and first.params["stop"] == ["\n---"]
    assert [m["role"] for m in retry.messages] == ["system", "user", "assistant", "user"]
    assert retry.messages[2]["content"] == " maybe"
    assert "Your reply could not be used" in retry.messages[3]["content"]
    assert "stop" not in retry.params


def test_setting_the_instruction_or_demos_keeps_the_layout_and_decoding() -> None:
    fn = lm_function(classify)
    fn.state = State(
        demos=DEMOS, layout="transcript", decode="calibrated", calibration={"billing": 0.5, "bug": 0.5}
    )
    fn.instruction = "Read it twice."
    fn.demos = DEMOS[:1]
    assert (fn.state.layout, fn.state.decode, fn.state.instruction) == (
        "transcript",
        "calibrated",
        "Read it twice.",
    )


def test_refine_keeps_the_layout_when_it_adds_its_hint() -> None:
    fn = make("transcript")
    lm = ScriptedLM(["billing", "bug"])
    with lmprog.context(lm=lm):
        assert lmprog.refine(fn, lambda inputs, out: float(out == "bug"), attempts=2)("x") == "bug"
    assert [m["role"] for m in lm.calls[1].messages] == ["system", "user"]
    assert "billing" in lm.calls[1].messages[0]["content"]  # the hint about the first attempt
