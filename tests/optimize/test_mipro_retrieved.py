"""Retrieved demos as a demo set MIPRO's search can pick: the pool is stored in the prompt file
exactly as ``optimizer="knn"`` stores it, and the saved program retrieves from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest

import lmprog
from lmprog import Budget, lm_function, promptfile
from lmprog.function import use_states
from lmprog.optimize import optimize
from lmprog.testing import ScriptedLM

TOPICS = {
    "sport": ["striker", "goalkeeper", "referee", "stadium", "penalty", "tennis"],
    "finance": ["shares", "bank", "inflation", "bonds", "dividend", "currency"],
    "cooking": ["sourdough", "pasta", "oven", "recipe", "sauce", "spices"],
}


@lm_function
def topic(text: str) -> Literal["sport", "finance", "cooking"]:
    """Name the topic of the headline."""


# every headline has its own keyword, shared only with one headline of the other split: only
# the nearest training example tells the label; a fixed demo set shows the keyword rarely
ROWS = [
    {"text": f"news about the {word} today, part {part}", "label": label}
    for part in range(2)
    for label, words in TOPICS.items()
    for word in words
]
TRAIN, VAL = ROWS[:18], ROWS[18:]


def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    return prediction == example["label"]


def nearest_label(messages: list[dict[str, str]]) -> str:
    """The label of the demo right before the question when it shares the question's keyword
    (retrieved demos put the nearest one there), else "sport"."""
    system, question = messages[0]["content"], messages[-1]["content"]
    if system.startswith("Describe this data set"):
        return "Headlines."
    if len(messages) > 3:
        demo_question, demo_answer = messages[-3]["content"], messages[-2]["content"]
        keyword = question.split("the ")[-1].split(" ")[0]
        if keyword in demo_question:
            return demo_answer.strip().splitlines()[-1]
    return "sport"


def run(tmp_path: Path, **kwargs: Any) -> lmprog.OptimizationResult:
    with lmprog.context(lm=ScriptedLM(nearest_label, cache=True), load_prompts=False, prompt_dir=tmp_path):
        return optimize(
            topic,
            TRAIN,
            metric,
            valset=VAL,
            optimizer="mipro",
            storage=str(tmp_path / "study.db"),
            progress=False,
            num_instructions=1,
            num_demo_sets=2,
            num_trials=4,
            minibatch_size=6,
            threads=1,
            **kwargs,
        )


def test_the_search_picks_retrieved_demos_and_the_saved_file_retrieves(tmp_path: Path) -> None:
    # 60 calls for mipro, 18 set aside for the variants step (sampling in the transcript layout)
    result = run(tmp_path, retrieved_demos=2, budget=Budget(max_calls=78))
    assert result.usage.requests <= 78 and result.details["variants_budget"]["optimizer_max_calls"] == 60
    state = result.states[topic]
    assert state.pool is not None and state.pool.k == 2 and state.demos == ()
    assert len(state.pool.demos) == len(TRAIN) and state.pool.fields == ("text",)
    assert result.score == 100.0 and result.baseline_score == pytest.approx(100 / 3, abs=0.1)
    assert "2 retrieved demos of a pool of 18" in result.summary()
    # stored as knn stores it, and the deployed program retrieves from the file alone
    lm = ScriptedLM(nearest_label)
    with lmprog.context(lm=lm, load_prompts=False, prompt_dir=tmp_path):
        assert result.files == [promptfile.prompt_path(topic)]
        assert "knn:\n  k: 2\n  fields:\n  - text\n  pool:\n" in result.files[0].read_text()
        loaded = promptfile.load_state(topic)
        assert loaded is not None and loaded.pool == state.pool
        with use_states({topic: loaded}):
            assert topic("news about the dividend today, part 1") == "finance"
    assert "dividend today, part 0" in lm.calls[-1].messages[-3]["content"]  # the nearest, last


def test_without_retrieved_demos_the_search_cannot_pick_them(tmp_path: Path) -> None:
    # variants=False: the variants step would rescue the collapsed result with retrieved demos
    result = run(tmp_path, retrieved_demos=0, save=False, variants=False)
    assert result.states[topic].pool is None
    assert all(c.states[topic].pool is None for c in result.candidates)
    assert result.score is not None and result.score < 100.0
