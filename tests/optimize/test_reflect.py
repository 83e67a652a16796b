"""The reflective optimizer with a scripted model: what the reflection prompt holds, the Pareto
front, merges, the acceptance gate, the budget, and resuming a run cut short."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

import lmprog
from lmprog import Budget, Feedback, lm_function, promptfile, traced
from lmprog.errors import UsageError
from lmprog.optimize import OptimizationResult, optimize
from lmprog.optimize.reflect import Reflect, sign_test
from lmprog.optimize.reflect_front import merge_instructions, merge_pair, pareto_front
from lmprog.optimize.reflect_result import ReflectDetails, best_candidate
from lmprog.optimize.reflect_store import CandidateRecord, IterationRecord, ReflectStore
from lmprog.promptfile import function_id
from lmprog.testing import ScriptedLM

LABELS = {"billing": "money", "bug": "broken", "feature": "wish"}
SOURCE_HINT = "Ticket from the web form"
GOOD_TOPIC = "Map the keyword to the topic: money is billing, broken is bug, wish is feature."
GOOD_URGENCY = "Say urgent when the ticket says now, otherwise say calm."


@lm_function(max_retries=0)
def topic(ticket: str) -> Literal["billing", "bug", "feature"]:
    """Classify the ticket."""


@lm_function
def urgency(ticket: str) -> Literal["urgent", "calm"]:
    """Rate the urgency of the ticket."""


@traced
def triage(ticket: str) -> dict[str, str]:
    text = f"{SOURCE_HINT}: {ticket}"
    return {"topic": topic(text), "urgency": urgency(text)}


DATA = [
    {
        "ticket": f"{word} problem {i}{' now' if i % 2 else ''}",
        "topic": label,
        "urgency": "urgent" if i % 2 else "calm",
    }
    for i in range(6)
    for label, word in LABELS.items()
]


def metric(example: Any, prediction: Any) -> Feedback:
    wrong = [k for k in ("topic", "urgency") if prediction[k] != example[k]]
    texts = {k: f"expected {k} {example[k]}, got {prediction[k]}" for k in wrong}
    return Feedback((2 - len(wrong)) / 2, "; ".join(texts.values()) or None, for_function=texts)


class Model:
    """Task answers depend on the instruction; the seed topic reply for "broken" never parses.
    The reflection model fixes whichever function its prompt names; prompts are recorded."""

    def __init__(self, vague_first: bool = False, topic_ok: bool = False) -> None:
        self.reflections: list[str] = []
        self.vague_first = vague_first
        self.topic_ok = topic_ok

    def __call__(self, messages: list[dict[str, str]]) -> Any:
        system, user = messages[0]["content"], messages[-1]["content"]
        if system.startswith("Improve the instruction"):
            self.reflections.append(user)
            if self.vague_first and len(self.reflections) == 1:
                return "Read the ticket carefully and pick its topic."
            return GOOD_TOPIC if "name: topic" in user else GOOD_URGENCY
        ticket = user.rsplit("ticket: ", 1)[-1].split("\n", 1)[0]
        if system.startswith("Map the keyword") or (self.topic_ok and system.startswith("Classify")):
            return next(label for label, word in LABELS.items() if word in ticket)
        if system.startswith("Classify"):
            return "dunno" if "broken" in ticket else "billing"
        if system.startswith("Say urgent"):
            return "urgent" if "now" in ticket else "calm"
        return "calm"


def run(
    model: Model | None = None, folder: Path | None = None, budget: Budget | None = None, **options: Any
) -> OptimizationResult:
    lm = ScriptedLM(model or Model(), cache=folder is not None)
    options.setdefault("storage", ":memory:")
    extra = {"cache_dir": folder / "cache"} if folder is not None else {"cache": False}
    with lmprog.context(lm=lm, load_prompts=False, **extra):
        return optimize(
            triage,
            DATA[:9],
            metric,
            valset=DATA[9:],
            optimizer="reflect",
            budget=budget,
            save=False,
            apply=False,
            progress=False,
            threads=1,
            **options,
        )


def test_feedback_and_failing_spans_reach_the_reflection_prompt() -> None:
    model = Model()
    result = run(model, num_iterations=2, minibatch_size=6, seed=1)
    first = model.reflections[0]
    assert "name: topic" in first and "current instruction: Classify the ticket." in first
    assert SOURCE_HINT in first  # the program listing from analyze()
    assert "unparsed reply: dunno" in first and "error: " in first  # the failing span
    assert "feedback on topic: expected topic" in first  # per-function feedback
    second = model.reflections[1]
    assert "name: urgency" in second  # round-robin
    assert "feedback: expected urgency" in second or "feedback on urgency" in second
    details = ReflectDetails.of(result)
    assert [it.function for it in details.iterations] == [function_id(topic), function_id(urgency)]
    assert result.score == 100.0 and result.baseline_score is not None and result.baseline_score < 50
    assert [e.function.rsplit(":", 1)[1] for e in details.edits] == ["topic", "urgency"]
    assert "+Map the keyword to the topic:" in details.edits[0].diff
    assert details.best_scores[-1] == 100.0 and details.accepted == 2
    assert details.false_accept_rate == 0.0


def test_the_reflection_lm_is_configurable() -> None:
    reflector = Model()
    task_model = Model()
    result = run(task_model, num_iterations=1, minibatch_size=6, seed=1, reflection_lm=ScriptedLM(reflector))
    assert len(reflector.reflections) == 1 and not task_model.reflections
    assert result.score is not None and result.baseline_score is not None
    assert result.score > result.baseline_score


@pytest.mark.parametrize("select", ["round_robin", "blame"])
def test_the_function_to_edit_is_taken_round_robin_or_by_blame(select: str) -> None:
    # only urgency loses points: round-robin starts with topic anyway, blame goes to urgency
    model = Model(topic_ok=True)
    result = run(model, num_iterations=1, minibatch_size=6, seed=1, select=select)
    (first,) = ReflectDetails.of(result).iterations
    expected = topic if select == "round_robin" else urgency
    assert first.function == function_id(expected)
    assert f"name: {expected.name}" in model.reflections[0]


def test_history_of_earlier_edits_reaches_the_reflection_prompt() -> None:
    model = Model(vague_first=True)
    run(model, num_iterations=3, minibatch_size=9, seed=0, merge=False)
    # the third iteration reflects on topic again: it sees the first, rejected, edit
    assert "(no edits yet)" in model.reflections[0]
    assert (
        "'Read the ticket carefully and pick its topic.': minibatch 0 vs parent 39" in (model.reflections[2])
    )
    assert "rejected (no gain on the minibatch)" in model.reflections[2]


def record(
    index: int,
    values: tuple[float, ...],
    parents: tuple[int, ...] = (),
    instructions: dict[str, str] | None = None,
    function: str | None = None,
) -> CandidateRecord:
    return CandidateRecord(
        index, instructions or {"a": "A0", "b": "B0"}, parents, index - 1, function, values
    )


def test_the_pareto_front_keeps_a_candidate_best_on_any_one_example() -> None:
    cands = [
        record(0, (0.0, 0.0, 0.0, 0.0)),
        record(1, (1.0, 1.0, 1.0, 0.0), (0,)),  # best mean
        record(2, (0.0, 0.0, 0.0, 1.0), (0,)),  # best on the last example only
        record(3, (1.0, 0.0, 1.0, 0.0), (0,)),  # dominated by 1
        record(4, (1.0, 1.0, 1.0, 0.0), (1,)),  # the same as 1: 1 stands for both
    ]
    assert pareto_front(cands) == {1: 3, 2: 1}


def test_candidates_carry_label_counts_and_a_collapsed_one_is_never_the_result() -> None:
    # the seed's topic answers "billing" for every ticket it parses: collapsed on validation
    rows = [{"ticket": ex["ticket"], "topic": ex["topic"]} for ex in DATA]
    with lmprog.context(lm=ScriptedLM(Model()), load_prompts=False, cache=False):
        result = optimize(
            topic,
            rows[:9],
            lambda ex, pred: pred == ex["topic"],
            valset=rows[9:],
            optimizer="reflect",
            num_iterations=2,
            storage=":memory:",
            save=False,
            apply=False,
            progress=False,
            threads=1,
        )
    details = ReflectDetails.of(result)
    seed = details.candidates[0]
    assert seed.label_counts[topic.signature.qualname] == {"billing": 6} and seed.collapsed
    best = next(c for c in details.candidates if c.score == result.score)
    assert not best.collapsed and result.label_counts == best.label_counts
    assert result.label_counts[topic.signature.qualname] == {"billing": 3, "bug": 3, "feature": 3}
    # the rank: a collapsed record never wins over one that is not, whatever its score
    high = CandidateRecord(0, {}, (), -1, None, (1.0, 1.0, 0.0), collapsed=True)
    low = CandidateRecord(1, {}, (0,), 0, None, (1.0, 0.0, 0.0))
    assert best_candidate([high, low]) is low
    assert best_candidate([high]) is high  # all collapse: the best of them
    assert CandidateRecord.from_json(json.loads(json.dumps(high.to_json()))) == high


def test_merge_combines_two_lineages_that_changed_different_functions() -> None:
    base = record(0, (0.5, 0.5))
    a = record(1, (1.0, 0.0), (0,), {"a": "A1", "b": "B0"}, "a")
    b = record(2, (0.0, 1.0), (0,), {"a": "A0", "b": "B2"}, "b")
    same_fn = record(3, (0.0, 1.0), (0,), {"a": "A3", "b": "B0"}, "a")
    assert merge_instructions(a, b, [base, a, b]) == {"a": "A1", "b": "B2"}
    assert merge_instructions(a, same_fn, [base, a, same_fn]) is None
    child = record(4, (1.0, 1.0), (1,), {"a": "A4", "b": "B0"}, "a")
    assert merge_instructions(a, child, [base, a, child]) is None  # one lineage
    assert merge_pair([base, a, b], set()) == (1, 2, {"a": "A1", "b": "B2"})
    assert merge_pair([base, a, b], {(1, 2)}) is None


def test_a_run_merges_two_stored_lineages(tmp_path: Path) -> None:
    ids = [function_id(topic), function_id(urgency)]
    seed = {ids[0]: "Classify the ticket.", ids[1]: "Rate the urgency of the ticket."}
    store = ReflectStore(tmp_path / "runs.json", "lineages")
    store.put_demos({})
    store.put_candidate(CandidateRecord(0, seed, (), -1, None, (0.5,) * 9))
    cands = [
        CandidateRecord(1, {**seed, ids[0]: GOOD_TOPIC}, (0,), 0, ids[0], (1.0,) * 4 + (0.5,) * 5),
        CandidateRecord(2, {**seed, ids[1]: GOOD_URGENCY}, (0,), 1, ids[1], (0.5,) * 4 + (1.0,) * 5),
    ]
    for c in cands:
        store.put_step(
            c,
            IterationRecord(
                c.iteration,
                "reflect",
                0,
                c.function,
                accepted=True,
                candidate=c.index,
                val_score=c.score,
                parent_val_score=50.0,
            ),
        )
    result = run(num_iterations=3, storage=str(tmp_path / "runs.json"), study_name="lineages")
    details = ReflectDetails.of(result)
    merge = details.iterations[2]
    assert merge.kind == "merge" and (merge.parent, merge.other_parent) == (1, 2)
    merged = details.candidates[3]
    assert merged.instructions == {ids[0]: GOOD_TOPIC, ids[1]: GOOD_URGENCY}
    assert merged.parents == (1, 2) and merged.score == 100.0 and result.score == 100.0
    assert details.front == [3]


def test_the_gate_rejects_what_does_not_improve_and_the_paired_test_is_stricter() -> None:
    assert sign_test([0, 0, 0], [1, 1, 1]) == 0.125
    assert sign_test([0, 1], [1, 0]) == 0.75
    result = run(num_iterations=2, minibatch_size=3, gate="paired", gate_alpha=0.05, seed=1)
    details = ReflectDetails.of(result)
    assert details.accepted == 0 and result.score == result.baseline_score
    notes = [it.note or "" for it in details.iterations]
    assert notes[0].startswith("paired sign test p=0.250 > 0.05")


def test_false_accepts_and_the_test_gap_are_reported() -> None:
    result = run(num_iterations=2, minibatch_size=6, seed=1, testset=DATA[:6])
    details = ReflectDetails.of(result)
    assert details.false_accepts == 0 and details.accepted == 2
    assert details.test_score == 100.0 and details.baseline_test_score is not None
    assert details.val_test_gap == 0.0


@pytest.mark.parametrize("cap", [0, 5, 17, 30, 44])
def test_the_budget_is_never_exceeded(cap: int) -> None:
    result = run(budget=Budget(max_calls=cap), num_iterations=4, minibatch_size=3, seed=1)
    assert result.usage.requests <= cap
    assert result.stopped_by == "max_calls"


def test_max_trials_caps_the_iterations() -> None:
    result = run(budget=Budget(max_trials=1), num_iterations=4, seed=1)
    assert len(ReflectDetails.of(result).iterations) == 1 and result.stopped_by == "max_trials"


def prompt_texts(result: OptimizationResult) -> list[str]:
    return [promptfile.render(fn, result.states[fn]) for fn in (topic, urgency)]


def test_a_resumed_run_ends_with_the_prompts_of_an_uninterrupted_one(tmp_path: Path) -> None:
    options: dict[str, Any] = {"num_iterations": 4, "minibatch_size": 3, "seed": 2, "init": "bootstrap"}
    options["variants"] = False  # the layout step after reflect is not resumable: count reflect's calls
    whole = run(folder=tmp_path / "whole", storage=str(tmp_path / "whole" / "runs.json"), **options)
    assert whole.stopped_by is None
    folder = tmp_path / "cut"
    for cut in (7, 12, 9, 20):
        cut_short = run(
            folder=folder, budget=Budget(max_calls=cut), storage=str(folder / "runs.json"), **options
        )
        assert cut_short.stopped_by == "max_calls"
    resumed = run(folder=folder, storage=str(folder / "runs.json"), **options)
    assert resumed.stopped_by is None
    assert prompt_texts(resumed) == prompt_texts(whole)
    assert resumed.usage.calls < whole.usage.calls / 2  # the stored steps were not run again
    strip = json.loads((folder / "runs.json").read_text())["studies"]
    assert strip == json.loads((tmp_path / "whole" / "runs.json").read_text())["studies"]
    assert any(s.demos for s in resumed.states.values())  # started from bootstrapped demos


def test_bad_settings_and_a_foreign_storage_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="gate"):
        Reflect(gate="vote")  # type: ignore[arg-type]
    with lmprog.context(lm=ScriptedLM(Model()), cache=False), pytest.raises(UsageError, match="valid"):
        optimize(triage, DATA[:3], metric, optimizer="reflect", save=False, storage=":memory:")
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({"format": 99, "studies": {}}))
    with pytest.raises(UsageError, match="store format 99"):
        ReflectStore(path, "k")


def test_the_report_shows_iterations_the_candidate_tree_and_the_edits_as_diffs() -> None:
    from lmprog.report import render_report

    result = run(num_iterations=2, minibatch_size=6, seed=1, testset=DATA[:6])
    page = render_report(result)
    assert "<h2>Iterations</h2>" in page and "<h2>Candidate tree</h2>" in page
    assert "<td>topic</td>" in page and "<td>accepted</td>" in page
    assert "2 edit(s) accepted by the minibatch gate, 0 of them" in page
    assert "validation → test gap 0.0" in page
    assert "0: " in page and "1: " in page and "(edit of topic)" in page and "★" in page
    assert "+Map the keyword to the topic:" in page  # the accepted edit's diff
    # the metric's feedback on the minibatch the reflection read, per iteration
    assert "<td>OutputParseError: topic: could not parse the model output" in page  # a failure's text
    assert "<td>expected urgency urgent, got calm | expected urgency urgent, got calm</td>" in page
    assert "&quot;false_accept_rate&quot;: 0.0" in page  # the details as JSON (escaped)


def test_the_estimate_is_an_upper_bound_and_the_study_key_follows_the_settings() -> None:
    from lmprog.optimize import make_task
    from lmprog.optimize.reflect_config import ReflectConfig, estimate_calls, study_key

    result = run(num_iterations=4, minibatch_size=3, seed=1, init="bootstrap", testset=DATA[:6])
    details = ReflectDetails.of(result)
    assert result.usage.requests <= details.estimated_calls
    task = make_task(triage, DATA[:9], metric, DATA[9:], Reflect(), seed=1)
    base = ReflectConfig()
    assert estimate_calls(base, task) < estimate_calls(ReflectConfig(num_iterations=21), task)
    keys = {
        study_key(c, task)
        for c in (
            base,
            ReflectConfig(minibatch_size=4),
            ReflectConfig(gate="paired"),
            ReflectConfig(merge=False),
        )
    }
    assert len(keys) == 4
    assert study_key(ReflectConfig(storage="elsewhere.json", testset=DATA[:2]), task) == study_key(base, task)


def test_a_rambling_reflection_is_cut_once_and_refused_without_a_retry() -> None:
    from lmprog.lm import Completion

    calls: list[int] = []

    def model(messages: list[dict[str, str]]) -> Any:
        if messages[0]["content"].startswith("Improve the instruction"):
            calls.append(1)
            return Completion("Map the keyword " * 100, finish_reason="length")
        return Model()(messages)

    result = run(Model(), num_iterations=1, minibatch_size=6, seed=1, reflection_lm=ScriptedLM(model))
    (first,) = ReflectDetails.of(result).iterations
    assert len(calls) == 1 and first.note is not None and "cut off at max_tokens=320" in first.note
