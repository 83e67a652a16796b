"""Demo votes: the retrieved demos' labels mixed into a scored call's option probabilities (the
math, the state and prompt-file checks, and what a call chooses)."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

import lmprog
from lmprog import lm_function, settings
from lmprog.errors import PromptFileError
from lmprog.format import LabelOption, check_vote, demo_labels, probabilities, voted
from lmprog.function import LMFunction, State
from lmprog.lm import Messages
from lmprog.promptfile import DemoPool, load_state, render, status, write
from lmprog.testing import ScriptedLM
from lmprog.trace import trace

OPTIONS = (LabelOption("billing", "billing"), LabelOption("bug", "bug"))


@pytest.fixture(autouse=True)
def prompt_dir(tmp_path: Path) -> Iterator[Path]:
    with settings.context(prompt_dir=tmp_path / "prompts", cache=False, load_prompts=False):
        yield tmp_path / "prompts"


def make() -> LMFunction:
    @lm_function
    def triage(ticket: str) -> Literal["billing", "bug"]:
        """Triage a ticket."""

    return triage


POOL = DemoPool(
    k=2,
    demos=(
        {"ticket": "charged twice for my plan", "output": "billing"},
        {"ticket": "refund for my plan", "output": "billing"},
        {"ticket": "app crashes on start", "output": "bug"},
        {"ticket": "app freezes on start", "output": "bug"},
    ),
    fields=("ticket",),
)


def test_the_mix_is_the_weighted_sum_of_model_and_demo_shares() -> None:
    scores = {"billing": math.log(0.8), "bug": math.log(0.2)}
    out = voted(scores, ["bug", "bug", "billing", "bug"], 0.5)
    assert math.exp(out["billing"]) == pytest.approx(0.5 * 0.8 + 0.5 * 0.25)
    assert math.exp(out["bug"]) == pytest.approx(0.5 * 0.2 + 0.5 * 0.75)
    assert sum(math.exp(v) for v in out.values()) == pytest.approx(1.0)


def test_vote_one_follows_the_demos_and_lets_the_model_break_their_ties() -> None:
    scores = {"billing": -3.0, "bug": -0.1}
    out = voted(scores, ["billing", "billing", "bug"], 1.0)
    assert out["billing"] > out["bug"]
    tied = voted(scores, ["billing", "bug"], 1.0)
    assert tied["bug"] > tied["billing"]


def test_without_demo_labels_the_model_choice_stays() -> None:
    scores = {"billing": -3.0, "bug": -0.1}
    out = voted(scores, [], 0.75)
    assert out == pytest.approx({k: math.log(p) for k, p in probabilities(scores).items()})


class Light(enum.Enum):
    ON = "on"
    OFF = "off"


def test_demo_labels_match_values_and_wire_texts_and_skip_what_is_no_option() -> None:
    demos = [{"output": "bug"}, {"output": " billing "}, {"output": "refund"}, {"ticket": "no output"}]
    assert demo_labels(demos, "output", OPTIONS) == ["bug", "billing"]
    flags = (LabelOption(True, "yes"), LabelOption(False, "no"))
    assert demo_labels([{"o": True}, {"o": "no"}, {"o": 1}], "o", flags) == ["yes", "no"]
    lights = (LabelOption(Light.ON, "on"), LabelOption(Light.OFF, "off"))
    assert demo_labels([{"o": Light.OFF}, {"o": "on"}], "o", lights) == ["off", "on"]


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, True, "0.5", float("nan")])
def test_a_vote_outside_zero_to_one_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"vote must be a number in \(0, 1\]"):
        check_vote(bad)


def test_a_state_votes_only_with_a_pool_and_a_scoring_decode() -> None:
    assert State(pool=POOL, decode="score", vote=0.5).vote == 0.5
    with pytest.raises(ValueError, match="needs a pool"):
        State(decode="score", vote=0.5)
    with pytest.raises(ValueError, match="needs a pool"):
        State(pool=POOL, vote=0.5)


def test_setting_fixed_demos_drops_the_pool_and_its_vote() -> None:
    fn = make()
    fn.state = State(pool=POOL, decode="score", vote=0.5)
    fn.demos = [{"ticket": "x", "output": "bug"}]
    assert fn.state.pool is None and fn.state.vote is None and fn.state.decode == "score"


def test_the_vote_round_trips_through_the_prompt_file() -> None:
    fn = make()
    state = State(pool=POOL, decode="score", vote=0.75)
    path = write(fn, state)
    assert "vote: 0.75" in path.read_text()
    assert load_state(fn) == state
    assert "\nvote:" not in render(fn, State(pool=POOL, decode="score"))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("vote: 0.75", "vote: 2", r":\d+: vote: must be a number in \(0, 1\]"),
        ("vote: 0.75", "vote: yes", r":\d+: vote: must be a number in \(0, 1\]"),
        ("decode: score", "decode: sample", r":\d+: vote: .*needs a knn: pool and decode: score"),
    ],
)
def test_hostile_votes_are_refused_naming_file_line_and_field(old: str, new: str, message: str) -> None:
    fn = make()
    path = write(fn, State(pool=POOL, decode="score", vote=0.75))
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(PromptFileError, match=str(path).replace(".", r"\.") + message):
        load_state(fn)
    assert status(fn).startswith("corrupt: ")


def leaning(messages: Messages, text: str) -> float:
    """The model: "bug" 1 nat likelier whatever the ticket."""
    return -1.0 if text.strip() == "bug" else -2.0


def test_a_voting_call_follows_its_retrieved_demos_where_the_model_leans_elsewhere() -> None:
    fn = make()
    lm = ScriptedLM(lambda m: "bug", constraint="grammar", logprobs=leaning)
    with lmprog.context(lm=lm):
        fn.state = State(pool=POOL, decode="score")
        assert fn("charged twice, refund my plan") == "bug"  # the model alone
        fn.state = State(pool=POOL, decode="score", vote=0.5)
        with trace() as t:
            assert fn("charged twice, refund my plan") == "billing"  # both demos say billing
            assert fn("app crashes") == "bug"
    # the span records the mixed probabilities: 0.5 * p_model + 0.5 * share
    p_bug = 1 / (1 + math.exp(-1))
    assert t.spans[0].scores is not None
    assert math.exp(t.spans[0].scores["billing"]) == pytest.approx(0.5 * (1 - p_bug) + 0.5, abs=1e-3)
