"""The variants step's rescue of a collapsed result: the same states with retrieved demos."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

import lmprog
from lmprog import Budget, lm_function, optimize, settings
from lmprog.lm import Messages
from lmprog.testing import ScriptedLM


@lm_function
def size(length: float, width: float) -> Literal["small", "large"]:
    """Name the flower's size."""


@lm_function
def mood(review: str) -> Literal["good", "bad"]:
    """Classify the review."""


def flower(i: int) -> dict[str, Any]:
    big = i % 2 == 1
    return {
        "length": (6.0 if big else 1.0) + i / 100,
        "width": (3.0 if big else 0.5) + i / 200,
        "output": "large" if big else "small",
    }


TRAIN = [flower(i) for i in range(12)]
VAL = [flower(i) for i in range(12, 24)]
REVIEWS = [
    {"review": f"{'lovely' if i % 2 else 'dreadful'} film number {i}", "output": "good" if i % 2 else "bad"}
    for i in range(24)
]


def metric(example: Any, prediction: Any) -> bool:
    return bool(example["output"] == prediction)


def copy_last_demo(messages: Messages) -> str:
    """A small model that ignores its input: it answers the label of the demo shown last (the
    first label when there is none). With fixed demos that is one label for every input; with
    retrieved demos, the nearest training row's."""
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    return answers[-1].strip() if answers else "small"


@pytest.fixture(autouse=True)
def prompt_dir(tmp_path: Path) -> Iterator[Path]:
    with settings.context(prompt_dir=tmp_path / "prompts", cache=False, load_prompts=False):
        yield tmp_path / "prompts"


def run(program: Any, data: list[dict[str, Any]], val: list[dict[str, Any]], **kwargs: Any) -> Any:
    kwargs.setdefault("save", False)
    kwargs.setdefault("optimizer", "labeled")
    with lmprog.context(lm=ScriptedLM(copy_last_demo)):
        return optimize(program, data, metric, valset=val, apply=False, progress=False, **kwargs)


def test_a_collapsed_result_on_numbers_is_rescued_by_retrieved_demos(prompt_dir: Path) -> None:
    result = run(size, TRAIN, VAL, save=True, k=4)
    base, rescue = result.details["variants"][:2]
    assert base["collapsed"] and list(base["label_counts"]["size"].values()) == [12]  # the last demo's
    assert rescue["demos"] == "retrieved" and not rescue["collapsed"] and rescue["score"] == 100.0
    assert rescue["requests"] == len(VAL)
    state = result.states[size]
    assert state.pool is not None and state.pool.k == 4 and not state.demos and result.score == 100.0
    assert result.label_counts == {"size": {"large": 6, "small": 6}}
    # the later variants are made of the retrieved demos too
    later = [c for c in result.candidates if c.label.startswith("layout=")][1:]
    assert later and all(c.label.endswith("demos=retrieved") for c in later)
    assert all(v.get("demos") == "retrieved" for v in result.details["variants"][1:])
    # the deployed program retrieves from the stored pool: nothing else needed
    [path] = result.files
    doc = yaml.safe_load(path.read_text())
    assert doc["knn"]["k"] == 4 and len(doc["knn"]["pool"]) == len(TRAIN) and doc["demos"] == []
    with settings.context(load_prompts=True), lmprog.context(lm=ScriptedLM(copy_last_demo)):
        assert [size(v["length"], v["width"]) for v in VAL[:4]] == [v["output"] for v in VAL[:4]]


def test_on_text_the_pool_is_ranked_by_bm25() -> None:
    result = run(mood, REVIEWS[:12], REVIEWS[12:])
    assert result.details["variants"][0]["collapsed"]
    assert result.states[mood].pool is not None and result.score == 100.0


def test_a_result_that_does_not_collapse_or_already_retrieves_is_left_alone() -> None:
    knn = run(size, TRAIN, VAL, optimizer="knn")
    assert not any(v.get("demos") == "retrieved" for v in knn.details["variants"])

    def reads_input(messages: Messages) -> str:
        return "large" if float(messages[-1]["content"].split("length: ")[1].split()[0]) > 3 else "small"

    with lmprog.context(lm=ScriptedLM(reads_input)):
        fine = optimize(
            size, TRAIN, metric, valset=VAL, optimizer="labeled", save=False, apply=False, progress=False
        )
    assert not fine.details["variants"][0]["collapsed"]
    assert not any(v.get("demos") == "retrieved" for v in fine.details["variants"])


def test_training_rows_of_one_label_give_no_rescue() -> None:
    # a pool of one label would pull every answer to it
    larges = [row for row in TRAIN if row["output"] == "large"]
    result = run(size, larges, VAL)
    assert result.details["variants"][0]["collapsed"]
    assert not any(v.get("demos") == "retrieved" for v in result.details["variants"])


def test_training_rows_without_a_label_validation_expects_give_no_rescue() -> None:
    # regression (the embedded model, 4 tickets): a pool without "billing", the label of 3 of 4
    # validation rows, answered 0 of 4 right and replaced a collapsed result that scored 75
    val = [*VAL, {"length": 30.0, "width": 15.0, "output": "huge"}]

    @lm_function
    def sized(length: float, width: float) -> Literal["small", "large", "huge"]:
        """Name the flower's size."""

    result = run(sized, TRAIN, val)
    assert result.details["variants"][0]["collapsed"]
    assert not any(v.get("demos") == "retrieved" for v in result.details["variants"])


def test_a_rescue_that_does_not_fit_the_budget_is_skipped_and_recorded() -> None:
    # the evaluation of the labeled result takes 12 of 15; the rescue needs 12 more
    result = run(size, TRAIN, VAL, budget=Budget(max_calls=15))
    base, rescue = result.details["variants"][:2]
    # regression: with no variant evaluated the base was reported as not collapsed
    assert base["collapsed"] and all("skipped" in v for v in result.details["variants"][1:])
    assert rescue["demos"] == "retrieved" and rescue["skipped"] == "budget: about 12 requests needed, 3 left"
    assert result.usage.requests <= 15 and result.states[size].pool is None


SCRIPT = """
import json, sys
sys.modules["bm25s"] = None  # as if lmprog[knn] were not installed
sys.path.insert(0, sys.argv[1])
from optimize.test_rescue import REVIEWS, TRAIN, VAL, mood, run, size
from lmprog import settings
with settings.context(cache=False, load_prompts=False, prompt_dir=sys.argv[2]):
    text = run(mood, REVIEWS[:12], REVIEWS[12:])
    numbers = run(size, TRAIN, VAL)
print(json.dumps([text.details["variants"], numbers.details["variants"][1]]))
"""


def test_without_bm25s_text_inputs_are_not_rescued_but_numbers_are(tmp_path: Path) -> None:
    tests = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, tests, str(tmp_path / "prompts")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text_variants, numbers_rescue = json.loads(done.stdout.strip().splitlines()[-1])
    assert text_variants[0]["collapsed"] and not any(v.get("demos") == "retrieved" for v in text_variants)
    assert numbers_rescue["demos"] == "retrieved" and numbers_rescue["score"] == 100.0


def test_with_logprobs_scoring_and_calibration_come_first_and_the_rescue_after_them() -> None:
    def biased(messages: Messages, text: str) -> float:
        return 0.0 if text.strip() == "small" else -3.0  # the same whatever the input

    lm = ScriptedLM(copy_last_demo, constraint="grammar", logprobs=biased)
    with lmprog.context(lm=lm):
        result = optimize(
            size, TRAIN, metric, valset=VAL, optimizer="labeled", save=False, apply=False, progress=False
        )
    tried = [(v["layout"], v["decode"], v.get("demos")) for v in result.details["variants"]]
    assert tried[:4] == [
        ("chat", "sample", None),  # the optimizer's result: collapsed
        ("chat", "score", None),  # collapsed (the bias)
        ("chat", "calibrated", None),  # collapsed (no input moves the scores)
        ("chat", "sample", "retrieved"),  # then the rescue
    ]
    assert result.states[size].pool is not None and result.score == 100.0
