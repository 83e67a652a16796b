"""An optimization never writes prompt files that measured nothing, or less than the committed ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import lmprog
from lmprog import Budget, lm_function, promptfile, traced
from lmprog.errors import EvaluationError
from lmprog.optimize import OptimizationResult, optimize
from lmprog.testing import ScriptedLM

LABELS = {"billing": "money", "bug": "broken", "feature": "wish"}


@lm_function
def classify(ticket: str) -> str:
    """Classify the ticket."""


@traced
def triage(ticket: str) -> str:
    return classify(ticket)


@traced
def shouting(ticket: str) -> str:
    label = classify(ticket)
    return label.upper_case()  # type: ignore[attr-defined,no-any-return]  # a bug: str has no upper_case


DATA = [
    {"ticket": f"{word} problem number {i}", "label": label}
    for i in range(4)
    for label, word in LABELS.items()
]
TRAIN, VAL, OTHER_VAL = DATA[:6], DATA[6:], DATA[3:9]


def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    return bool(prediction == example["label"])


def broken_metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    return example["missing_field"] == prediction  # type: ignore[no-any-return]


def learner(messages: list[dict[str, str]]) -> str:
    """Answers "billing" without demos; with demos it maps the keyword to its label."""
    ticket = messages[-1]["content"]
    if len(messages) <= 2:
        return "billing"
    return next((label for label, word in LABELS.items() if word in ticket), "billing")


def stubborn(messages: list[dict[str, str]]) -> str:
    return "billing"


def run(tmp_path: Path, model: Any = learner, program: Any = triage, **kwargs: Any) -> OptimizationResult:
    opts: dict[str, Any] = dict(
        valset=VAL, optimizer="random_search", apply=False, progress=False, threads=2, num_candidates=1
    )
    opts.update(kwargs)
    metric_fn = opts.pop("metric", metric)
    with lmprog.context(
        lm=ScriptedLM(model), load_prompts=False, cache=False, prompt_dir=tmp_path / "prompts"
    ):
        return optimize(program, TRAIN, metric_fn, **opts)


@pytest.fixture
def committed(tmp_path: Path) -> Path:
    """A committed prompt file from a good run, which scored 100."""
    good = run(tmp_path)
    assert good.score == 100.0 and good.files
    (path,) = good.files
    assert promptfile.read(path)["provenance"]["score"] == 100.0
    return path


def test_the_recorded_score_says_on_which_validation_data_it_was_measured(committed: Path) -> None:
    validation = promptfile.read(committed)["provenance"]["validation"]
    assert validation["examples"] == len(VAL) and len(validation["key"]) == 16


def test_a_metric_that_raises_stops_with_its_first_errors_and_writes_nothing(
    tmp_path: Path, committed: Path
) -> None:
    before = committed.read_bytes()
    with pytest.raises(EvaluationError) as info:
        run(tmp_path, metric=broken_metric)
    message = str(info.value)
    assert "failed in triage" in message and "metric broken_metric failed" in message
    assert "KeyError" in message and "missing_field" in message
    assert "data[0]" in message and "raised in broken_metric (test_saving.py:" in message
    assert committed.read_bytes() == before


def test_a_program_that_raises_stops_with_its_first_errors_and_writes_nothing(
    tmp_path: Path, committed: Path
) -> None:
    before = committed.read_bytes()
    with pytest.raises(EvaluationError) as info:
        run(tmp_path, program=shouting)
    message = str(info.value)
    assert "failed in shouting" in message and "upper_case" in message
    assert "raised in shouting (test_saving.py:" in message
    assert committed.read_bytes() == before


def test_a_budget_that_ends_the_run_before_any_measurement_writes_nothing(
    tmp_path: Path, committed: Path
) -> None:
    before = committed.read_bytes()
    result = run(tmp_path, budget=Budget(max_calls=5))
    assert result.stopped_by == "max_calls" and result.score is None
    assert result.files == [] and result.kept is not None and "not measured" in result.kept
    assert committed.read_bytes() == before


def test_without_committed_files_an_unmeasured_result_is_not_written_either(tmp_path: Path) -> None:
    result = run(tmp_path, budget=Budget(max_calls=5))
    assert result.files == [] and "not measured" in (result.kept or "")
    assert not (tmp_path / "prompts").exists()


def test_a_worse_result_on_the_same_validation_data_keeps_the_committed_file(
    tmp_path: Path, committed: Path
) -> None:
    before = committed.read_bytes()
    # another model: everything scores 33.3 (another seed: other demos than the committed ones,
    # which a result equal to them would rewrite, losing nothing)
    result = run(tmp_path, model=stubborn, seed=1)
    assert result.score == pytest.approx(100 / 3, abs=0.1)
    assert result.files == [] and "does not beat" in (result.kept or "")
    assert committed.read_bytes() == before


def test_on_other_validation_data_the_committed_file_is_measured_again(
    tmp_path: Path, committed: Path
) -> None:
    before = committed.read_bytes()
    result = run(tmp_path, model=stubborn, valset=OTHER_VAL, seed=1)  # other demos, as above
    # the recorded 100 is not comparable (other data, another model): the committed prompts are
    # measured again here, and the result does not beat them
    assert result.details["committed_score"] == pytest.approx(100 / 3, abs=0.1)
    assert result.score == pytest.approx(100 / 3, abs=0.1)
    assert "re-measured" in (result.kept or "")
    assert committed.read_bytes() == before


def test_a_better_result_replaces_a_committed_file(tmp_path: Path) -> None:
    weak = run(tmp_path, num_candidates=0, max_labeled_demos=0)  # zero-shot only: 33.3
    assert weak.score == pytest.approx(100 / 3, abs=0.1) and weak.files
    better = run(tmp_path)
    assert better.score == 100.0 and better.files == weak.files and better.kept is None
    assert promptfile.read(better.files[0])["provenance"]["score"] == 100.0


def test_the_same_result_again_is_written_again(tmp_path: Path, committed: Path) -> None:
    again = run(tmp_path)  # the committed prompts are this result: nothing is lost by writing
    assert again.files == [committed] and again.kept is None
