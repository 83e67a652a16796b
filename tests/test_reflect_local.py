"""The reflective optimizer end to end on the embedded model (SmolLM2-135M run by xllamacpp): real
traces, a real reflection call, real minibatch and validation runs, under a call budget. Skipped
when the `local` extra is not installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from local_model import NEEDS_LOCAL, TICKETS

import lmprog
from lmprog import Budget, Feedback, lm_function, traced
from lmprog.optimize.reflect_result import ReflectDetails

pytestmark = NEEDS_LOCAL


@lm_function
def classify(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify a support ticket by its topic."""


@traced
def triage(ticket: str) -> str:
    return classify(ticket)


def metric(example: Any, prediction: Any) -> Feedback:
    if prediction == example["label"]:
        return Feedback(1.0)
    return Feedback(0.0, f"the topic is {example['label']}, not {prediction}")


@pytest.mark.timeout(900)
def test_reflect_on_the_embedded_model_stays_in_budget_and_records_every_iteration(tmp_path: Path) -> None:
    with lmprog.context(lm="local", cache_dir=tmp_path / "cache", prompt_dir=tmp_path / "prompts"):
        result = lmprog.optimize(
            triage,
            TICKETS[:4],
            metric,
            valset=TICKETS[4:8],
            optimizer="reflect",
            budget=Budget(max_calls=40),
            num_iterations=2,
            minibatch_size=2,
            storage=str(tmp_path / "runs.json"),
            threads=1,
            progress=False,
        )
    details = ReflectDetails.of(result)
    assert result.usage.requests <= 40
    assert result.baseline_score is not None and result.score is not None
    assert result.score >= result.baseline_score
    assert details.candidates[0].index == 0 and len(details.candidates[0].values) == 4
    assert len(details.iterations) == 2 or result.stopped_by == "max_calls"
    stored = json.loads((tmp_path / "runs.json").read_text())["studies"]
    assert [len(s["iterations"]) for s in stored.values()] == [len(details.iterations)]
