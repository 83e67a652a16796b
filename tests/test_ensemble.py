"""best_of and refine: rollouts kept apart by the cache, the best output by reward, feedback shown
to the model on refinement, budgets respected, one span per rollout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import lmprog
from lmprog import settings
from lmprog.errors import OutputParseError, UsageError
from lmprog.metrics import Feedback
from lmprog.testing import ScriptedLM


@lmprog.lm_function
def guess(word: str) -> str:
    """Guess a rhyme for the word."""


@lmprog.lm_function
def count(text: str) -> int:
    """Count the words in the text."""


def length_reward(inputs: dict[str, Any], prediction: str) -> float:
    return float(len(prediction))


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path


def test_best_of_returns_the_output_with_the_highest_reward(cache_dir: Path) -> None:
    lm = ScriptedLM(["at", "chat", "cat"])
    seen: list[tuple[dict[str, Any], str]] = []

    def reward(inputs: dict[str, Any], prediction: str) -> float:
        seen.append((inputs, prediction))
        return float(len(prediction))

    with settings.context(lm=lm, cache_dir=cache_dir):
        assert lmprog.best_of(3, guess, reward)("hat") == "chat"
    assert seen == [({"word": "hat"}, "at"), ({"word": "hat"}, "chat"), ({"word": "hat"}, "cat")]
    assert len(lm.calls) == 3


def test_rollouts_are_distinct_requests_and_cache_entries_and_a_rerun_hits_them_all(cache_dir: Path) -> None:
    lm = ScriptedLM(["a", "bb", "c"], cache=True)
    with settings.context(lm=lm, cache_dir=cache_dir):
        assert lmprog.best_of(3, guess, length_reward)("hat") == "bb"
        assert lm.usage.requests == 3 and lm.usage.cache_hits == 0
        # same messages each time: only the rollout (and temperature) tell them apart
        assert lm.calls[0].messages == lm.calls[1].messages == lm.calls[2].messages
        assert [c.params["temperature"] for c in lm.calls] == [0.0, 0.7, 0.7]
        assert all("rollout" not in c.params for c in lm.calls)  # never sent to the provider
        again = lmprog.best_of(3, guess, length_reward)("hat")
    assert again == "bb"
    assert len(lm.calls) == 3  # the script is not consumed further: every rollout was a cache hit
    assert lm.usage.cache_hits == 3
    # rollout 0 is the plain call: an ordinary call shares its entry
    with settings.context(lm=lm, cache_dir=cache_dir):
        assert guess("hat") == "a"
    assert len(lm.calls) == 3


def test_rollouts_keep_a_temperature_the_user_set(cache_dir: Path) -> None:
    lm = ScriptedLM(["a", "b"])
    with settings.context(lm=lm, cache_dir=cache_dir, temperature=0.3):
        lmprog.best_of(2, guess, length_reward)("hat")
    assert [c.params["temperature"] for c in lm.calls] == [0.3, 0.3]
    lm2 = ScriptedLM(["a", "b"])
    with settings.context(lm=lm2, cache_dir=cache_dir):
        lmprog.best_of(2, guess, length_reward, temperature=1.2)("cat")
    assert [c.params["temperature"] for c in lm2.calls] == [0.0, 1.2]


def test_each_rollout_is_a_span_under_the_best_of_span(cache_dir: Path) -> None:
    lm = ScriptedLM(["a", "bb"])
    with settings.context(lm=lm, cache_dir=cache_dir), lmprog.trace() as t:
        lmprog.best_of(2, guess, length_reward)(word="hat")
    (root,) = t.roots
    assert (root.name, root.output, root.inputs) == ("best_of", "bb", {"n": 2, "word": "hat"})
    rollouts = [s for s in t.spans if s.parent_id == root.id]
    assert [(s.name, s.inputs["rollout"], s.output) for s in rollouts] == [
        ("rollout 0", 0, "a"),
        ("rollout 1", 1, "bb"),
    ]
    lm_spans = t.lm_spans()
    assert [s.parent_id for s in lm_spans] == [r.id for r in rollouts]


def test_best_of_a_program_keeps_each_lm_call_in_its_rollout(cache_dir: Path) -> None:
    lm = ScriptedLM(["x", "3", "yy", "1"])

    def program(word: str) -> str:
        rhyme = guess(word)
        return rhyme * count(rhyme)

    with settings.context(lm=lm, cache_dir=cache_dir):
        assert lmprog.best_of(2, program, length_reward)("hat") == "xxx"
    assert lm.usage.requests == 4


def test_a_rollout_that_does_not_parse_is_skipped_and_all_failing_raises(cache_dir: Path) -> None:
    lm = ScriptedLM(["many", "many", "4"])  # "many" twice: the one format retry of rollout 0
    with settings.context(lm=lm, cache_dir=cache_dir):
        assert lmprog.best_of(2, count, lambda i, p: p)("a b c d") == 4
    lm = ScriptedLM(["no"] * 4)
    with settings.context(lm=lm, cache_dir=cache_dir), pytest.raises(OutputParseError):
        lmprog.best_of(2, count, lambda i, p: p)("x y")


def test_bad_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="n must be"):
        lmprog.best_of(0, guess, length_reward)

    @lmprog.lm_function
    async def later(x: str) -> str:
        """Echo."""

    with pytest.raises(UsageError, match="async"):
        lmprog.best_of(2, later, lambda i, p: 1.0)
    with pytest.raises(UsageError, match="attempts must be"):
        lmprog.refine(guess, length_reward, attempts=0)
    with pytest.raises(UsageError, match="must be an lm_function"):
        lmprog.refine(lambda word: word, length_reward)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="a reward must return"):
        with settings.context(lm=ScriptedLM(["a"])):
            lmprog.best_of(1, guess, lambda i, p: "good")("hat")  # type: ignore[arg-type,return-value]


def test_refine_stops_at_the_threshold_and_shows_the_feedback(cache_dir: Path) -> None:
    lm = ScriptedLM(["at", "chat", "never asked"])

    def reward(inputs: dict[str, Any], prediction: str) -> Feedback:
        ok = len(prediction) >= 4
        return Feedback(1.0 if ok else 0.2, None if ok else "too short, use four letters or more")

    with settings.context(lm=lm, cache_dir=cache_dir):
        assert lmprog.refine(guess, reward, attempts=3)("hat") == "chat"
    assert len(lm.calls) == 2
    first = "\n".join(m["content"] for m in lm.calls[0].messages)
    second = "\n".join(m["content"] for m in lm.calls[1].messages)
    assert "previous attempt" not in first
    assert "A previous attempt answered:\nat\nIt scored 0.2 (the goal is 1)." in second
    assert "Feedback: too short, use four letters or more" in second
    assert guess.instruction == "Guess a rhyme for the word."  # the hint was for those calls only


def test_refine_respects_the_attempts_and_returns_the_best_seen(cache_dir: Path) -> None:
    lm = ScriptedLM(["ab", "abc", "a", "unused"])
    with settings.context(lm=lm, cache_dir=cache_dir), lmprog.trace() as t:
        assert lmprog.refine(guess, length_reward, attempts=3, threshold=10)("hat") == "abc"
    assert len(lm.calls) == 3
    assert [c.params["temperature"] for c in lm.calls] == [0.0, 0.7, 0.7]
    (root,) = t.roots
    assert root.name == "refine" and root.output == "abc"
    assert [s.name for s in t.spans if s.parent_id == root.id] == ["rollout 0", "rollout 1", "rollout 2"]
    third = "\n".join(m["content"] for m in lm.calls[2].messages)
    assert "A previous attempt answered:\nabc\n" in third  # only the latest attempt is shown


def test_inside_a_block_with_a_rollout_the_rollouts_nest_under_it(cache_dir: Path) -> None:
    lm = ScriptedLM(["a", "bb", "unused"], cache=True)
    with settings.context(lm=lm, cache_dir=cache_dir, rollout=5, temperature=0.5):
        assert lmprog.best_of(2, guess, length_reward)("hat") == "bb"
        assert guess("hat") == "a"  # rollout 0 is the block's own rollout 5
        with settings.context(rollout=5001):
            assert guess("hat") == "bb"  # rollout 1 was keyed 5 * 1000 + 1
    assert lm.usage.requests == 2 and lm.usage.cache_hits == 2
