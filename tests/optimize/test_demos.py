"""Demos from labeled examples and traces: parameter defaults, fitting the signature, and the
warning an optimizer gives when it finds no demo for a function."""

from __future__ import annotations

import logging
from typing import Any, Literal

import pytest

import lmprog
from lmprog import lm_function
from lmprog.optimize import optimize
from lmprog.optimize.demos import labeled_demo
from lmprog.testing import ScriptedLM


@lm_function
def triage(ticket: str, lang: str = "en") -> str:
    """Name the team that handles the ticket."""


ROWS = [{"ticket": "card charged twice", "label": "billing"}, {"ticket": "app crashes", "label": "bug"}]


def only_first_right(messages: list[dict[str, str]]) -> str:
    """Right for the first ticket only, so bootstrapping passes one run of two."""
    return "billing" if "charged" in messages[-1]["content"] else "feature"


def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    return bool(prediction == example["label"])


def run(optimizer: str, rows: list[dict[str, Any]], **options: Any) -> lmprog.OptimizationResult:
    with lmprog.context(lm=ScriptedLM(only_first_right), load_prompts=False):
        return optimize(
            triage, rows, metric, optimizer=optimizer, save=False, apply=False, progress=False, **options
        )


def test_labeled_demos_take_the_default_of_a_parameter_the_rows_lack() -> None:
    demos = run("labeled", ROWS).states[triage].demos
    # the default is recorded, as a call renders it (calls bind defaults: "lang: en")
    assert sorted(demos, key=lambda d: d["ticket"]) == [
        {"ticket": "app crashes", "lang": "en", "output": "bug"},
        {"ticket": "card charged twice", "lang": "en", "output": "billing"},
    ]
    assert "lang: en" in triage.messages("x")[-1]["content"]


def test_bootstrap_tops_up_with_labeled_rows_that_lack_a_defaulted_parameter() -> None:
    result = run("bootstrap", ROWS, max_rounds=1)
    demos = result.states[triage].demos
    assert result.details["passed"] == 1
    # one bootstrapped demo (the passing run) and one labeled demo (the other row)
    assert {d["ticket"]: d["output"] for d in demos} == {
        "card charged twice": "billing",
        "app crashes": "bug",
    }
    assert all(d["lang"] == "en" for d in demos)
    assert result.warnings == []


def test_a_row_that_gives_the_defaulted_parameter_keeps_its_value() -> None:
    demo = labeled_demo(triage, {"ticket": "t", "lang": "fr", "label": "bug"})
    assert demo == {"ticket": "t", "lang": "fr", "output": "bug"}


@lm_function
def route(ticket: str) -> Literal["billing", "bug"]:
    """Route the ticket."""


def test_labeled_demos_must_fit_the_signature_and_are_written_canonically() -> None:
    assert labeled_demo(route, {"ticket": "t", "label": "Billing"}) == {"ticket": "t", "output": "billing"}
    assert labeled_demo(route, {"ticket": "t", "label": "refund"}) is None  # not an option
    assert labeled_demo(route, {"label": "bug"}) is None  # the input is missing


@pytest.mark.parametrize("optimizer", ["labeled", "bootstrap", "random_search"])
def test_an_optimizer_that_finds_no_demo_says_so_in_the_result_and_the_log(
    optimizer: str, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [{"ticket": f"t{i}", "label": "billing", "note": "two labels: which one?"} for i in range(4)]
    with lmprog.context(lm=ScriptedLM(lambda m: "bug"), load_prompts=False):  # never passes
        with caplog.at_level(logging.WARNING, logger="lmprog.optimize"):
            result = optimize(
                route, rows, metric, optimizer=optimizer, save=False, apply=False, progress=False
            )
    assert result.states[route].demos == ()
    assert len(result.warnings) == 1
    warning = result.warnings[0]
    assert warning.startswith(f"{optimizer}: found no demo for route: ")
    assert "output (or exactly one field besides its inputs)" in warning
    if optimizer != "labeled":
        assert "training run(s) passed the metric" in warning
    assert warning in caplog.text
    assert f"warning: {warning}" in result.summary()


def test_no_warning_when_every_function_got_demos() -> None:
    assert run("labeled", ROWS).warnings == []
