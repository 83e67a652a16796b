from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import lmprog
from lmprog import Budget, lm_function, traced
from lmprog.optimize import optimize
from lmprog.optimize.propose import check_instruction, clean_instruction, data_statistics
from lmprog.testing import ScriptedLM
from lmprog.usage import track

LABELS = {"billing": "money", "bug": "broken", "feature": "wish"}
# the code constant the proposer must see in the program listing
HINT_PREFIX = "Ticket from the web form"


@lm_function
def classify(ticket: str) -> str:
    """Classify the ticket."""


@traced
def triage(ticket: str) -> str:
    return classify(f"{HINT_PREFIX}: {ticket}")


DATA = [
    {"ticket": f"{word} problem number {i}", "label": label}
    for i in range(6)
    for label, word in LABELS.items()
]


def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    return prediction == example["label"]


class Model:
    """A deterministic fake: task accuracy depends on the instruction, so search has signal.

    With the instruction "GOOD ..." it maps the keyword to the label; with the docstring it
    answers "billing" always. The proposer writes numbered instructions, every third one good.
    """

    def __init__(self, proposals: list[str] | None = None) -> None:
        self.proposer_prompts: list[str] = []
        self.summary_prompts: list[str] = []
        self.proposals = proposals
        self.k = 0

    def __call__(self, messages: list[dict[str, str]]) -> str:
        system, user = messages[0]["content"], messages[-1]["content"]
        if system.startswith("Describe this data set"):
            self.summary_prompts.append(user)
            return "Short support tickets labelled billing, bug or feature."
        if system.startswith("Write a better instruction"):
            self.proposer_prompts.append(user)
            self.k += 1
            if self.proposals is not None:
                return self.proposals[(self.k - 1) % len(self.proposals)]
            return (
                f"GOOD: map the keyword to its label ({self.k})."
                if self.k % 3 == 0
                else f"Think about the ticket ({self.k})."
            )
        ticket = user.rsplit("ticket: ", 1)[1]
        if system.startswith("GOOD"):
            for label, word in LABELS.items():
                if word in ticket:
                    return label
        return "billing"


def run(model: Model, tmp_path: Path, metric: Any = metric, **kwargs: Any) -> lmprog.OptimizationResult:
    lm = ScriptedLM(model, cache=True)
    opts: dict[str, Any] = dict(
        optimizer="mipro",
        save=False,
        apply=False,
        storage=str(tmp_path / "study.db"),
        progress=False,
        num_trials=8,
        minibatch_size=6,
        num_instructions=5,
        num_demo_sets=1,
        full_eval_every=4,
        threads=2,
    )
    opts.update(kwargs)
    with lmprog.context(lm=lm, load_prompts=False, cache_dir=tmp_path / "cache"):
        return optimize(triage, DATA[:9], metric, valset=DATA[9:], **opts)


def test_proposer_prompt_is_grounded_in_source_and_data(tmp_path: Path) -> None:
    model = Model()
    run(model, tmp_path)
    assert model.summary_prompts, "the proposer summarized the data"
    prompt = model.proposer_prompts[0]
    assert "def triage(ticket: str)" in prompt  # the entry point's source
    assert "HINT_PREFIX" in prompt  # ... including the call site of the lm_function
    assert "Classify the ticket." in prompt  # the function's docstring
    assert "Short support tickets labelled billing, bug or feature." in prompt  # the data summary
    assert re.search(r"label: (billing|bug|feature) \(\d+\)", prompt)  # computed statistics
    assert "tip:" in prompt


def test_search_finds_the_good_instruction_and_beats_the_baseline(tmp_path: Path) -> None:
    result = run(Model(), tmp_path)
    assert result.baseline_score == pytest.approx(100 / 3, abs=0.1)
    assert result.score == 100.0
    assert result.states[classify].instruction is not None
    assert result.states[classify].instruction.startswith("GOOD")
    assert result.details.trials == 8
    history = result.details.trial_history
    assert [h.number for h in history] == list(range(8)) and {h.round for h in history} == {0, 1}
    assert result.usage.requests > 0


def test_later_rounds_see_earlier_scores(tmp_path: Path) -> None:
    model = Model()
    run(model, tmp_path, rounds=2)
    first, later = model.proposer_prompts[0], model.proposer_prompts[-1]
    assert "history:\n(none yet)" not in first  # the baseline score of the docstring is known
    assert "score 33.3: Classify the ticket." in first
    assert re.search(r"score \d+\.\d: Think about the ticket", later)


def test_guards_reject_and_replace_bad_proposals(tmp_path: Path) -> None:
    bad = [
        "Be brief.",  # (an empty reply is a failed request, retried: it never reaches the guards)
        "Reply in JSON with a field label.",
        "history: none. program: def triage",
        "x" * 900,
        "GOOD: map the keyword to its label.",
    ]
    result = run(Model(proposals=bad), tmp_path, num_instructions=3, rounds=1)
    reasons = [why for _, why in result.details.rejected_proposals]
    assert any("too short" in r for r in reasons)
    assert any("output format" in r for r in reasons)
    assert any("leaks" in r for r in reasons)
    assert any("longer than" in r for r in reasons)
    (instructions,) = result.details.instructions.values()
    assert instructions[0] == "Classify the ticket."  # the original is always a candidate
    assert "GOOD: map the keyword to its label." in instructions
    assert all(check_instruction(i, classify) is None for i in instructions[1:])


def test_guard_helpers() -> None:
    assert clean_instruction('Instruction: "Label the ticket by topic."') == "Label the ticket by topic."
    assert check_instruction("Label the ticket by its main topic.", classify) is None
    assert "format" in (check_instruction("Answer with <label> tags around the topic.", classify) or "")
    assert "same as the original" in (check_instruction("Classify the ticket.", classify) or "")
    echo = "Classify tickets. Start by giving the model a fitting expert role for this task."
    assert "leaks proposer text" in (check_instruction(echo, classify) or "")
    stats = data_statistics(DATA)
    assert "18 rows" in stats and "label: billing (6), bug (6), feature (6)" in stats


def test_same_seed_same_result_and_seed_zero_is_a_seed(tmp_path: Path) -> None:
    a = run(Model(), tmp_path / "a", seed=0)
    b = run(Model(), tmp_path / "b", seed=0)
    c = run(Model(), tmp_path / "c", seed=1)
    assert a.details.instructions == b.details.instructions
    assert [x.score for x in a.candidates] == [x.score for x in b.candidates]
    assert a.states[classify] == b.states[classify]
    assert a.details.study != c.details.study


def test_a_cap_that_cuts_the_run_short_keeps_the_best_so_far(tmp_path: Path) -> None:
    # a cap the plan does not know of (as a kill would cut it): what was finished is kept
    with track(limit=Budget(max_calls=25).check):
        result = run(Model(), tmp_path)
    assert result.stopped_by == "max_calls"
    assert result.usage.requests <= 25
    assert result.baseline_score is not None


def test_max_trials(tmp_path: Path) -> None:
    result = run(Model(), tmp_path, budget=Budget(max_trials=3))
    assert result.stopped_by == "max_trials"
    assert result.details.trials == 3


def test_resume_after_an_interrupted_study_loses_no_trial_and_repeats_no_call(tmp_path: Path) -> None:
    # first run is "killed" by a call cap in the middle of the search
    with track(limit=Budget(max_calls=60).check):
        first = run(Model(), tmp_path)
    assert first.stopped_by == "max_calls"
    done_before = first.details.trials
    assert done_before >= 1
    # the same command again: continues the same study from storage, cache answers repeated calls
    model = Model()
    second = run(model, tmp_path)
    assert second.details.study == first.details.study
    assert second.details.trials == 8
    assert second.details.instructions == first.details.instructions or done_before < 4
    assert model.summary_prompts == []  # the data summary was persisted, not asked again
    assert second.score == 100.0


def test_cost_aware_reports_a_pareto_front(tmp_path: Path) -> None:
    result = run(Model(), tmp_path, cost_aware=True)
    front = result.details.pareto
    assert front and all(p.prompt_tokens > 0 for p in front)
    scores = [p.score for p in front]
    assert scores == sorted(scores, reverse=True)


def always_zero(example: Any, prediction: Any, trace: Any = None) -> float:
    return 0.0


class Stubborn(Model):
    """Another model: it ignores the instruction and always answers "billing"."""

    def __call__(self, messages: list[dict[str, str]]) -> str:
        answer = super().__call__(messages)
        return answer if messages[0]["content"].startswith(("Describe", "Write a better")) else "billing"


def test_a_changed_metric_or_model_never_reuses_the_stored_study(tmp_path: Path) -> None:
    first = run(Model(), tmp_path)
    assert first.score == 100.0
    zero = run(Model(), tmp_path, metric=always_zero)
    assert zero.details.study != first.details.study
    assert zero.score == 0.0 and zero.baseline_score == 0.0  # measured with the new metric
    # another model (same name, other answers), without the response cache of the first
    lm = ScriptedLM(Stubborn(), cache=False)
    opts: dict[str, Any] = dict(num_trials=8, minibatch_size=6, num_demo_sets=1, threads=2)
    with lmprog.context(lm=lm, load_prompts=False):
        other = optimize(
            triage,
            DATA[:9],
            metric,
            valset=DATA[9:],
            optimizer="mipro",
            save=False,
            apply=False,
            storage=str(tmp_path / "study.db"),
            progress=False,
            **opts,
        )
    assert other.details.study not in (first.details.study, zero.details.study)
    assert other.usage.requests > 0 and lm.calls
    assert other.score == pytest.approx(100 / 3, abs=0.1)  # what the stored winner scores on it


def test_mipro_says_when_it_found_no_demo_for_a_function(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def never(example: Any, prediction: Any, trace: Any = None) -> bool:
        return False  # no run passes: no bootstrapped demo

    data = [{**row, "note": "a second label field"} for row in DATA]  # no labeled demo either
    lm = ScriptedLM(Model(), cache=True)
    with lmprog.context(lm=lm, load_prompts=False, cache_dir=tmp_path / "cache"):
        with caplog.at_level("WARNING", logger="lmprog.optimize"):
            result = optimize(
                triage,
                data[:9],
                never,
                valset=data[9:],
                optimizer="mipro",
                save=False,
                apply=False,
                storage=str(tmp_path / "study.db"),
                progress=False,
                num_trials=2,
                num_instructions=2,
                num_demo_sets=1,
            )
    assert result.states[classify].demos == ()
    assert result.warnings == [
        "mipro: found no demo for classify: no training run that passed the metric made a call to it "
        "that fits; no training example with its inputs has its output(s) output (or exactly one field "
        "besides its inputs)"
    ]
    assert result.warnings[0] in caplog.text
