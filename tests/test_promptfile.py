"""Prompt files: round trips, deterministic and atomic writes, staleness, corruption, Dotprompt export."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
import yaml
from pydantic import BaseModel

from lmprog import History, lm_function, settings
from lmprog.errors import PromptFileError
from lmprog.function import LMFunction, State
from lmprog.promptfile import (
    atomic_write_text,
    export_dotprompt,
    function_id,
    load_state,
    prompt_path,
    read,
    render,
    status,
    write,
)
from lmprog.testing import ScriptedLM


class Verdict(BaseModel):
    reasoning: str
    answer: Literal["yes", "no"]


@pytest.fixture(autouse=True)
def prompt_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "prompts"
    with settings.context(prompt_dir=folder, cache=False):
        yield folder


def make_classify() -> LMFunction:
    @lm_function
    def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
        """Classify a support ticket by its topic.

        Args:
            ticket: the customer's message, verbatim.
        """

    return classify


STATE = State(
    instruction="Read the ticket carefully.\nAnswer with the topic only: billing, bug or feature.",
    demos=(
        {"ticket": "I was charged twice — please refund 💸", "output": "billing"},
        {"ticket": "Line one\nline two: crash", "output": "bug"},
    ),
)
PROVENANCE = {
    "optimizer": "mipro",
    "score": 87.5,
    "seed": 3,
    "model": "openai/gpt-4o-mini",
    "date": "2026-01-02",
}


def test_round_trip_keeps_instruction_demos_and_provenance(prompt_dir: Path) -> None:
    fn = make_classify()
    path = write(fn, STATE, PROVENANCE)
    assert path == prompt_path(fn) and path.parent == prompt_dir
    assert path.name == f"{function_id(fn).split(':')[0].rsplit('.', 1)[-1]}.make_classify.classify.yaml"
    doc = read(path)
    assert doc["function"] == function_id(fn)
    assert doc["signature_hash"] == fn.signature_hash
    assert doc["provenance"] == PROVENANCE
    assert load_state(fn) == STATE
    text = path.read_text(encoding="utf-8")
    assert (
        "instruction: |-\n  Read the ticket carefully.\n  Answer with the topic only" in text
    )  # diffable prose
    assert "💸" in text  # unicode written as is


def test_the_function_uses_its_prompt_file(prompt_dir: Path) -> None:
    write(make_classify(), STATE)
    fn = make_classify()  # a fresh function object loads the file on first use
    lm = ScriptedLM([{"output": "bug"}])
    with settings.context(lm=lm):
        assert fn("The app crashes on login") == "bug"
    messages = lm.calls[0].messages
    assert messages[0]["content"].startswith("Read the ticket carefully.")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert fn.instruction == STATE.instruction and fn.demos == list(STATE.demos)


def test_docstring_instruction_round_trips_as_not_optimized() -> None:
    fn = make_classify()
    write(fn, State(demos=STATE.demos))
    assert read(fn.prompt_file)["instruction_optimized"] is False
    assert load_state(make_classify()) == State(instruction=None, demos=STATE.demos)


def test_writing_the_same_state_twice_gives_identical_bytes() -> None:
    fn = make_classify()
    path = write(fn, STATE, PROVENANCE)
    first = path.read_bytes()
    os.utime(path, (1_000_000, 1_000_000))
    # Same state, a later date: the file keeps its old date and is not touched at all.
    assert write(fn, STATE, {**PROVENANCE, "date": "2026-05-06"}) == path
    assert path.read_bytes() == first
    assert path.stat().st_mtime == 1_000_000
    assert render(fn, STATE, PROVENANCE) == first.decode("utf-8")
    # A real change rewrites it.
    write(fn, State(instruction="Other."), PROVENANCE)
    assert read(path)["instruction"] == "Other."


def test_a_stale_file_warns_naming_the_file_and_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    path = write(make_classify(), STATE)
    path.write_text(path.read_text().replace(make_classify().signature_hash, "0123456789abcdef"))
    fn = make_classify()
    assert status(fn) == "stale"
    lm = ScriptedLM([{"output": "billing"}])
    with caplog.at_level(logging.WARNING, logger="lmprog"), settings.context(lm=lm):
        assert fn("refund please") == "billing"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(path) in w and "stale" in w for w in warnings), warnings
    assert lm.calls[0].messages[0]["content"].startswith("Read the ticket carefully.")  # the file was used


def test_a_corrupt_file_raises_with_path_and_line() -> None:
    path = write(make_classify(), STATE)
    lines = path.read_text().splitlines()
    bad_line = next(i for i, line in enumerate(lines) if line.startswith("demos:")) + 2
    lines[bad_line - 1] = "- ticket: [unclosed"
    path.write_text("\n".join(lines) + "\n")
    fn = make_classify()
    with pytest.raises(PromptFileError) as info:
        fn("hello")
    message = str(info.value)
    assert str(path) in message
    assert f":{bad_line}" in message or f":{bad_line + 1}" in message
    assert status(fn).startswith("corrupt: ")


def test_a_file_with_a_wrong_field_names_the_field_line() -> None:
    path = write(make_classify(), STATE)
    text = path.read_text()
    start = text.index("demos:")
    line = text[:start].count("\n") + 1
    path.write_text(text[:start] + "demos: not a list\n")
    with pytest.raises(PromptFileError, match=rf"{path.name}:{line}: demos: must be a list"):
        read(path)


def test_missing_file_means_docstring_state() -> None:
    fn = make_classify()
    assert status(fn) == "missing"
    assert load_state(fn) is None
    assert fn.instruction == fn.signature.instruction


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path: Path) -> None:
    fn = make_classify()
    path = write(fn, STATE)
    before = path.read_bytes()

    def crash(src: str, dst: Path) -> None:
        assert Path(src).read_text(encoding="utf-8") == render(fn, State(instruction="New."))  # fully written
        raise OSError("simulated crash before the rename")

    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_text(path, render(fn, State(instruction="New.")), replace=crash)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left


def test_atomic_write_creates_folders_and_skips_unchanged_files(tmp_path: Path) -> None:
    calls: list[str] = []

    def counting_replace(src: str, dst: Path) -> None:
        calls.append(src)
        os.replace(src, dst)

    target = tmp_path / "a" / "b" / "file.txt"
    atomic_write_text(target, "one\n", replace=counting_replace)
    atomic_write_text(target, "one\n", replace=counting_replace)
    assert target.read_text() == "one\n" and len(calls) == 1


def test_export_dotprompt_single_output(tmp_path: Path) -> None:
    fn = make_classify()
    fn.state = State(
        instruction="Classify the {{ticket}} by topic.",
        demos=({"ticket": "charged twice", "output": "billing"},),
    )
    path = export_dotprompt(fn, tmp_path / "classify.prompt", model="openai/gpt-4o-mini")
    text = path.read_text()
    assert text.startswith("---\n")
    front_text, body = text[4:].split("\n---\n", 1)
    front = yaml.safe_load(front_text)
    assert front["model"] == "openai/gpt-4o-mini"
    assert front["input"]["schema"] == {"ticket": "string, the customer's message, verbatim."}
    assert front["output"]["schema"] == {"type": "string", "enum": ["billing", "bug", "feature"]}
    assert front["metadata"]["lmprog"] == {"function": function_id(fn), "signature_hash": fn.signature_hash}
    assert body.split("\n")[0] == '{{role "system"}}'
    assert "Classify the \\{{ticket}} by topic." in body  # literal braces escaped for Handlebars
    assert '{{role "model"}}\nbilling\n' in body
    assert body.rstrip().endswith('{{role "user"}}\nticket: {{ticket}}')
    # The same messages as lmprog sends, with the input left as a placeholder.
    plain = fn.messages(ticket="{{ticket}}")
    assert plain[0]["content"].replace("{{", "\\{{") in body


def test_export_dotprompt_structured_output_and_default_path() -> None:
    @lm_function(temperature=0.3)
    def judge(claim: str, sources: list[str], strict: bool = True) -> Verdict:
        """Judge the claim against the sources."""

    path = export_dotprompt(judge)
    assert path == judge.prompt_file.with_suffix(".prompt")
    front = yaml.safe_load(path.read_text()[4:].split("\n---\n", 1)[0])
    assert front["config"] == {"temperature": 0.3}
    assert front["input"]["schema"] == {"claim": "string", "sources(array)": "string", "strict?": "boolean"}
    assert front["output"] == {
        "format": "json",
        "schema": {"reasoning": "string", "answer(enum)": ["yes", "no"]},
    }
    assert "sources: {{json sources}}" in path.read_text()


def test_export_dotprompt_puts_a_history_in_the_history_helper_not_the_inputs(tmp_path: Path) -> None:
    @lm_function
    def reply(history: History, message: str) -> str:
        """Answer the user's message, given the conversation so far."""

    reply.state = State(demos=({"history": [], "message": "hi", "output": "hello"},))
    text = export_dotprompt(reply, tmp_path / "reply.prompt").read_text()
    front_text, body = text[4:].split("\n---\n", 1)
    front = yaml.safe_load(front_text)
    # Dotprompt passes a conversation as messages, not as an input field
    assert front["input"]["schema"] == {"message": "string"}
    assert "history" not in body.replace("{{history}}", "")
    # the turns go where lmprog puts them: after the demos, before the input turn
    assert body.rstrip().endswith('{{history}}\n\n{{role "user"}}\nmessage: {{message}}')
    assert body.index('{{role "model"}}\nhello') < body.index("{{history}}")
