"""Issue 13 item 1: a stored MIPRO study is reused only when nothing that changes a score changed.

Each case changes exactly one thing (the program, a sampling setting, the model, the metric, the
lmprog format version) and checks that the study key moves, while an identical task keeps it."""

from __future__ import annotations

from typing import Any

import pytest

import lmprog
from lmprog import Budget, lm_function, traced
from lmprog.optimize import identity
from lmprog.optimize._base import Task
from lmprog.optimize.bootstrap import BootstrapFewShot
from lmprog.optimize.mipro_config import MiproConfig, study_key
from lmprog.testing import ScriptedLM


@lm_function
def label(text: str) -> str:
    """Label the text."""


@traced
def pipeline(text: str) -> str:
    return label(text)


@traced
def pipeline_stripped(text: str) -> str:
    return label(text.strip())


def exact(example: Any, prediction: Any, trace: Any = None) -> bool:
    return bool(prediction == example["label"])


def lenient(example: Any, prediction: Any, trace: Any = None) -> bool:
    return bool(str(prediction).lower() == str(example["label"]).lower())


ROWS = [lmprog.Example(text=f"t{i}", label="a").with_inputs("text") for i in range(6)]


def key(program: Any = pipeline, metric: Any = exact) -> str:
    task = Task(program, ROWS[:3], ROWS[3:], metric, Budget(), seed=0, functions=[label])
    return study_key(MiproConfig(), task, BootstrapFewShot())


@pytest.fixture(autouse=True)
def scripted() -> Any:
    with lmprog.context(lm=ScriptedLM(["a"]), temperature=0.0, load_prompts=False):
        yield


def test_the_same_task_gets_the_same_study() -> None:
    assert key() == key()


def test_another_program_gets_another_study() -> None:
    assert key(program=pipeline_stripped) != key()


def test_another_metric_gets_another_study() -> None:
    assert key(metric=lenient) != key()


def test_another_sampling_setting_gets_another_study() -> None:
    before = key()
    with lmprog.context(temperature=0.7):
        assert key() != before
    with lmprog.context(max_tokens=17):
        assert key() != before


def test_another_model_gets_another_study() -> None:
    before = key()
    with lmprog.context(lm=ScriptedLM(["a"], model="other-model")):
        assert key() != before


def test_another_lmprog_format_version_gets_another_study(monkeypatch: pytest.MonkeyPatch) -> None:
    before = key()
    monkeypatch.setattr(identity, "FORMAT_VERSION", identity.FORMAT_VERSION + 1)
    assert key() != before
