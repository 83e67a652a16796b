"""Conversation history: a ``History`` parameter is rendered as prior chat turns (after the demos,
before the user message), demos may carry one, optimizers bootstrap chat programs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest

import lmprog
from lmprog import History, Turn, lm_function
from lmprog.errors import SignatureError, UsageError
from lmprog.function import State, use_states
from lmprog.optimize import optimize
from lmprog.promptfile import load_state, write
from lmprog.source import signature_hash
from lmprog.testing import ScriptedLM


@lm_function
def reply(message: str, history: History) -> str:
    """Answer the user's message in the conversation.

    Args:
        message: the user's new message.
        history: the conversation so far.
    """


PAST: list[Turn] = [
    {"role": "user", "content": "My name is Ada."},
    {"role": "assistant", "content": "Nice to meet you, Ada."},
]


def test_history_is_rendered_as_prior_turns_not_as_an_input_line() -> None:
    messages = reply.messages("What is my name?", history=PAST)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1:3] == PAST
    assert messages[3]["content"] == "message: What is my name?"
    assert "history" not in messages[0]["content"]  # not listed among the inputs
    assert "message: the user's new message." in messages[0]["content"]


def test_the_call_sends_the_history_and_records_it_as_an_input() -> None:
    lm = ScriptedLM(["Ada."])
    with lmprog.context(lm=lm), lmprog.trace() as t:
        assert reply("What is my name?", PAST) == "Ada."
    assert lm.calls[0].messages[1:3] == PAST
    assert t.spans[0].inputs["history"] == PAST


def test_demos_carry_their_own_history_after_which_comes_the_calls() -> None:
    demo_past = [{"role": "user", "content": "I like tea."}, {"role": "assistant", "content": "Noted."}]
    demo = {"message": "What do I like?", "history": demo_past, "output": "Tea."}
    with use_states({reply: State(demos=(demo,))}):
        messages = reply.messages("What is my name?", history=PAST)
    contents = [(m["role"], m["content"]) for m in messages]
    assert contents == [
        ("system", messages[0]["content"]),
        ("user", "I like tea."),
        ("assistant", "Noted."),
        ("user", "message: What do I like?"),
        ("assistant", "Tea."),
        ("user", "My name is Ada."),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "message: What is my name?"),
    ]


def test_an_empty_or_absent_history_adds_no_turns() -> None:
    @lm_function
    def chat(message: str, history: History | None = None) -> str:
        """Chat."""

    assert [m["role"] for m in chat.messages("hi")] == ["system", "user"]
    assert [m["role"] for m in chat.messages("hi", history=[])] == ["system", "user"]


def test_turns_may_be_any_objects_with_a_role_and_a_content() -> None:
    class Message(pydantic.BaseModel):
        role: str
        content: str

    turns = [Message(role="user", content="hello"), Message(role="assistant", content="hi!")]
    assert reply.messages("again", history=turns)[1:3] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi!"},
    ]


def test_a_malformed_history_is_refused_naming_the_parameter() -> None:
    with pytest.raises(UsageError, match=r"history=.*History.*role"):
        reply("hi", history=[{"role": "robot", "content": "beep"}])
    with pytest.raises(UsageError, match="history"):
        reply("hi", history="not a list")  # type: ignore[arg-type]


def test_two_history_parameters_are_refused() -> None:
    def two(a: History, b: History) -> str:
        """Two histories."""

    with pytest.raises(SignatureError, match="one history"):
        lm_function(two)


def test_the_signature_hash_covers_the_history_parameter() -> None:
    def with_history(message: str, history: History) -> str:
        """Answer."""

    def with_list(message: str, history: list[str]) -> str:
        """Answer."""

    def without(message: str) -> str:
        """Answer."""

    hashes = {signature_hash(lm_function(f)) for f in (with_history, with_list, without)}
    assert len(hashes) == 3


def test_demos_with_history_survive_a_prompt_file(tmp_path: Path) -> None:
    demo = {"message": "What is my name?", "history": PAST, "output": "Ada."}
    path = write(reply, State(demos=(demo,)), path=tmp_path / "reply.prompt.yaml")
    loaded = load_state(reply, path)
    assert loaded is not None and list(loaded.demos) == [demo]


def test_bootstrap_optimizes_a_chat_program() -> None:
    rows = [
        {"message": "What is my name?", "history": PAST, "answer": "Ada."},
        {
            "message": "What is my name?",
            "history": [
                {"role": "user", "content": "I am Bob."},
                {"role": "assistant", "content": "Hi Bob."},
            ],
            "answer": "Bob.",
        },
    ]

    def answer(messages: list[dict[str, str]]) -> str:
        # the call's two history turns come right before its user message
        return "Ada." if "Ada" in messages[-3]["content"] else "Bob."

    def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
        return bool(prediction == example["answer"])

    lm = ScriptedLM(answer)
    with lmprog.context(lm=lm, load_prompts=False):
        result = optimize(
            reply, rows, metric, optimizer="bootstrap", save=False, apply=False, progress=False, max_rounds=1
        )
    demos = list(result.states[reply].demos)
    assert demos and all(isinstance(d["history"], list) for d in demos)
    assert {d["output"] for d in demos} <= {"Ada.", "Bob."}
    with use_states({reply: result.states[reply]}):
        messages = reply.messages("Who am I?", history=PAST)
    # each demo: its history turns, its user message, its answer; then the call's history and message
    demo_turns = sum(len(d["history"]) + 2 for d in demos)
    assert len(messages) == 1 + demo_turns + len(PAST) + 1
    assert messages[-3:-1] == PAST
