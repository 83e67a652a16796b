"""Prompt files record the layout, the label decoding and the calibration prior: round trips,
defaults that leave older files as they were, and hostile values refused with file and field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

import lmprog
from lmprog import lm_function, settings
from lmprog.errors import PromptFileError
from lmprog.function import LMFunction, State
from lmprog.promptfile import load_state, read, render, status, write
from lmprog.testing import ScriptedLM


@pytest.fixture(autouse=True)
def prompt_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "prompts"
    with settings.context(prompt_dir=folder, cache=False):
        yield folder


def make() -> LMFunction:
    @lm_function
    def triage(ticket: str) -> Literal["billing", "bug"]:
        """Triage a ticket."""

    return triage


def make_text() -> LMFunction:
    @lm_function
    def summarize(ticket: str) -> str:
        """Summarize a ticket."""

    return summarize


DEMOS = ({"ticket": "charged twice", "output": "billing"},)


@pytest.mark.parametrize(
    "state",
    [
        State(demos=DEMOS, layout="transcript"),
        State(demos=DEMOS, layout="completion", decode="score"),
        State(demos=DEMOS, decode="calibrated", calibration={"billing": 0.8125, "bug": 0.1875}),
    ],
)
def test_layout_decode_and_calibration_round_trip(state: State) -> None:
    fn = make()
    path = write(fn, state)
    assert load_state(fn) == state
    text = path.read_text()
    assert (f"layout: {state.layout}" in text) == (state.layout != "chat")
    assert (f"decode: {state.decode}" in text) == (state.decode != "sample")
    assert render(fn, state) == text.split("provenance:")[0]


def test_default_states_write_no_new_keys() -> None:
    fn = make()
    text = render(fn, State(demos=DEMOS))
    assert "layout" not in text and "decode" not in text and "calibration" not in text


def test_a_loaded_layout_is_what_calls_use() -> None:
    fn = make()
    write(fn, State(demos=DEMOS, layout="transcript"))
    fresh = make()  # reads the file on first use
    lm = ScriptedLM(["bug"])
    with lmprog.context(lm=lm):
        assert fresh("crash") == "bug"
    assert [m["role"] for m in lm.calls[0].messages] == ["system", "user"]


def edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "layout: transcript",
            "layout: grid",
            r":\d+: layout: must be one of chat, transcript, completion, got 'grid'",
        ),
        ("layout: transcript", "layout: [chat]", r":\d+: layout: must be one of .*got \['chat'\]"),
        ("decode: calibrated", "decode: greedy", r":\d+: decode: must be one of sample, score, calibrated"),
        ("  billing: 0.75", "  billing: 7.5", r":\d+: calibration: 'billing': 7.5 is not a probability"),
        ("  billing: 0.75", "  billing: .nan", r":\d+: calibration: 'billing': nan is not a probability"),
        ("  billing: 0.75", "  billing: yes", r":\d+: calibration: 'billing': True is not a probability"),
        (
            "  billing: 0.75",
            "  refunds: 0.75",
            r":\d+: calibration: its options \['bug', 'refunds'\] are not",
        ),
    ],
)
def test_hostile_values_are_refused_naming_file_line_and_field(old: str, new: str, message: str) -> None:
    fn = make()
    path = write(
        fn,
        State(
            demos=DEMOS, layout="transcript", decode="calibrated", calibration={"billing": 0.75, "bug": 0.25}
        ),
    )
    edit(path, old, new)
    with pytest.raises(PromptFileError, match=str(path).replace(".", r"\.") + message):
        load_state(fn)
    assert status(fn).startswith("corrupt: ")


def test_calibrated_without_a_calibration_is_refused() -> None:
    fn = make()
    path = write(fn, State(decode="calibrated", calibration={"billing": 0.5, "bug": 0.5}))
    text = path.read_text()
    path.write_text(text[: text.index("calibration:")] + text[text.index("demos:") :])
    with pytest.raises(PromptFileError, match="decode: 'calibrated' needs a calibration"):
        read(path)


def test_scoring_a_function_without_label_options_is_refused_on_load() -> None:
    fn = make_text()
    path = write(fn, State())
    edit(path, "demos:", "decode: score\ndemos:")
    with pytest.raises(PromptFileError, match=r"decode: 'score' scores the options .* has none"):
        load_state(fn)
