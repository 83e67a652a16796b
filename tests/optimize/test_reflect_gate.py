"""The reflective optimizer's automatic gate: a scripted reflection model whose edits overfit a
one-example minibatch (accepted there, then worse on validation) until it sees more runs. The gate
must notice the false accepts and grow the minibatch / switch to the paired test, within the
budget, and a run killed mid-way must resume to the same prompts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

import lmprog
from lmprog import Budget, lm_function, promptfile
from lmprog.errors import UsageError
from lmprog.optimize import OptimizationResult, optimize
from lmprog.optimize.reflect_config import ReflectConfig
from lmprog.optimize.reflect_gate import Gate, Plan, choose_gate
from lmprog.optimize.reflect_result import ReflectDetails
from lmprog.optimize.reflect_store import IterationRecord
from lmprog.testing import ScriptedLM

SEED_TEXT = "Say whether the item is good."
GOOD = "Judge every item by its whole description, the way the examples show."

WORDS = ("apple", "brick", "cloud", "delta", "ember", "frost", "grape", "harbor")
TRAIN = [{"item": f"train {w}", "answer": "yes" if i % 2 else "no"} for i, w in enumerate(WORDS)]
VAL = [{"item": f"val {w}", "answer": "yes" if i % 2 else "no"} for i, w in enumerate(WORDS)]
# the docstring's hits: train 6 and 7, val 0-3
SEED_RIGHT = {TRAIN[6]["item"], TRAIN[7]["item"], *(row["item"] for row in VAL[:4])}
OVERFIT_RIGHT = {TRAIN[0]["item"], TRAIN[1]["item"]}  # an overfitted edit fixes these, breaks the rest
ANSWERS = {row["item"]: row["answer"] for row in TRAIN + VAL}


@lm_function(max_retries=0)
def judge(item: str) -> Literal["yes", "no"]:
    """Say whether the item is good."""


def metric(example: Any, prediction: Any) -> bool:
    return bool(prediction == example["answer"])


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


class Model:
    """The reflection model overfits what it sees when it sees one run, and writes the good rule
    when it sees two or more; task answers follow the instruction (see the sets above)."""

    def __init__(self, kill_after: int | None = None) -> None:
        self.calls = 0
        self.kill_after = kill_after

    def __call__(self, messages: list[dict[str, str]]) -> str:
        self.calls += 1
        if self.kill_after is not None and self.calls > self.kill_after:
            raise Killed
        system, user = messages[0]["content"], messages[-1]["content"]
        if system.startswith("Improve the instruction"):
            if "## Run 2" in user:
                return GOOD
            return f"Say yes for the items like the one shown, attempt {user.count('- ')}."
        item = user.rsplit("item: ", 1)[-1].split("\n", 1)[0]
        right = (
            True
            if system.startswith("Judge every item")
            else item in OVERFIT_RIGHT
            if system.startswith("Say yes for the items")
            else item in SEED_RIGHT
        )
        wrong = "no" if ANSWERS[item] == "yes" else "yes"
        return ANSWERS[item] if right else wrong


def run(
    model: Model | None = None, folder: Path | None = None, budget: Budget | None = None, **options: Any
) -> OptimizationResult:
    lm = ScriptedLM(model or Model(), cache=folder is not None)
    options.setdefault("storage", ":memory:")
    options.setdefault("minibatch_size", 1)
    options.setdefault("merge", False)
    extra = {"cache_dir": folder / "cache"} if folder is not None else {"cache": False}
    with lmprog.context(lm=lm, load_prompts=False, **extra):
        return optimize(
            judge,
            TRAIN,
            metric,
            valset=VAL,
            optimizer="reflect",
            budget=budget,
            save=False,
            apply=False,
            progress=False,
            threads=1,
            **options,
        )


def test_false_accepts_raise_the_gate_and_the_raised_gate_rejects_the_overfitted_edits() -> None:
    result = run(num_iterations=12, seed=3)
    details = ReflectDetails.of(result)
    (first, raised) = details.gate_changes
    assert first == (0, "1 improve") and raised[1] == "2 paired"
    before = [it for it in details.iterations if it.iteration < raised[0]]
    after = [it for it in details.iterations if it.iteration >= raised[0]]
    # the cheap gate let an overfitted edit through; it lost on validation, and the gate went up
    assert before[-1].accepted and before[-1].false_accept
    assert all(it.gate == "improve" and len(it.minibatch) == 1 for it in before)
    assert all(it.gate == "paired" and len(it.minibatch) == 2 for it in after)
    assert not any(it.false_accept for it in after)
    assert details.false_accepts == 1 and any(it.accepted for it in after)
    assert result.states[judge].instruction == GOOD and result.score == 100.0


@pytest.mark.parametrize("seed", range(6))
def test_the_adapting_gate_stops_false_accepts_that_a_fixed_gate_keeps_making(seed: int) -> None:
    auto = run(num_iterations=12, seed=seed)
    fixed = run(num_iterations=12, seed=seed, gate="improve")
    a, f = ReflectDetails.of(auto), ReflectDetails.of(fixed)
    assert a.false_accepts == 1 and [g for _, g in a.gate_changes] == ["1 improve", "2 paired"]
    assert auto.score == 100.0
    # the fixed cheap gate accepts only overfitted edits and never finds the good rule
    assert f.false_accepts >= 1 and f.false_accept_rate == 1.0
    assert set(f.gates.values()) == {"1 improve"} and fixed.score == fixed.baseline_score


def test_the_gate_is_recorded_in_the_report_and_the_details() -> None:
    from lmprog.report import render_report

    result = run(num_iterations=12, seed=3)
    details = ReflectDetails.of(result)
    data = details.to_dict()
    assert data["gate_changes"] == [list(c) for c in details.gate_changes]
    assert set(data["gates"].values()) == {"1 improve", "2 paired"}
    page = render_report(result)
    assert "<th>gate</th>" in page and "<td>2 paired</td>" in page
    assert f"gate raised at iteration {details.gate_changes[1][0]} to 2 paired" in page


def accepted(i: int, lost: bool, size: int = 1) -> IterationRecord:
    return IterationRecord(
        i,
        "reflect",
        0,
        "f",
        minibatch=tuple(range(size)),
        accepted=True,
        val_score=40.0 if lost else 60.0,
        parent_val_score=50.0,
        gate="improve",
    )


def test_the_gate_rule() -> None:
    cfg = ReflectConfig(minibatch_size=3)
    plan = Plan(train=50, val=10, per_example=1, start_calls=10, max_calls=None)
    assert choose_gate(cfg, [], plan) == Gate(3, "improve")
    good = [accepted(i, lost=i == 3) for i in range(4)]  # 1 of 4 lost: 25% is not above 25%
    assert choose_gate(cfg, good, plan) == Gate(3, "improve")
    one = choose_gate(cfg, [accepted(0, lost=True)], plan)
    assert (one.size, one.test, one.level) == (6, "paired", 1) and "1 of 1" in (one.reason or "")
    # the count starts over at each level; the size stops at max_minibatch_size (default 4 x 3)
    two = choose_gate(cfg, [accepted(0, True), accepted(1, True, 6)], plan)
    three = choose_gate(cfg, [accepted(0, True), accepted(1, True, 6), accepted(2, True, 12)], plan)
    assert (two.size, two.level, three.size, three.level) == (12, 2, 12, 3)
    assert (
        choose_gate(ReflectConfig(minibatch_size=3, max_minibatch_size=5), [accepted(0, True)], plan).size
        == 5
    )
    small = Plan(train=4, val=10, per_example=1, start_calls=10, max_calls=None)
    assert choose_gate(cfg, [accepted(0, True)], small).size == 4  # the training set
    # the budget: an iteration at size s costs 1 + 2 s + 10 here; it may take half of what is left
    # (records so far: 10 + (1 + 2 + 10) = 23 calls)
    for max_calls, size in ((200, 6), (23 + 2 * 21, 5), (23 + 2 * 19, 4), (60, 3)):
        capped = Plan(train=50, val=10, per_example=1, start_calls=10, max_calls=max_calls)
        assert choose_gate(cfg, [accepted(0, True)], capped).size == size, max_calls
    # fixed gates never move
    for gate in ("improve", "paired"):
        fixed = ReflectConfig(minibatch_size=3, gate=gate)  # type: ignore[arg-type]
        assert choose_gate(fixed, [accepted(0, True)], plan) == Gate(3, gate)


@pytest.mark.parametrize("cap", [0, 9, 20, 33, 47])
def test_the_budget_is_never_exceeded_while_the_gate_adapts(cap: int) -> None:
    result = run(budget=Budget(max_calls=cap), num_iterations=12, seed=3, max_minibatch_size=8)
    assert result.usage.requests <= cap
    assert result.stopped_by == "max_calls"
    details = ReflectDetails.of(result)
    assert result.usage.requests <= details.estimated_calls


def test_a_killed_run_with_an_adapting_gate_resumes_to_the_same_prompts(tmp_path: Path) -> None:
    whole = run(
        folder=tmp_path / "whole", storage=str(tmp_path / "whole" / "runs.json"), num_iterations=12, seed=3
    )
    (_, (raised, _)) = ReflectDetails.of(whole).gate_changes
    folder = tmp_path / "cut"
    stored: list[int] = []
    for kill_after in (5, 9, 12):  # new requests per run: 26 of the 40 the whole run makes
        with pytest.raises(Killed):
            run(
                Model(kill_after), folder=folder, storage=str(folder / "runs.json"), num_iterations=12, seed=3
            )
        studies = json.loads((folder / "runs.json").read_text())["studies"] if kill_after > 5 else {}
        stored.append(sum(len(st["iterations"]) for st in studies.values()))
    # one kill came before the gate was raised, the next after: the resumed runs re-derived it
    assert stored[1] <= raised < stored[2]
    resumed = run(folder=folder, storage=str(folder / "runs.json"), num_iterations=12, seed=3)
    assert promptfile.render(judge, resumed.states[judge]) == promptfile.render(judge, whole.states[judge])
    studies = json.loads((folder / "runs.json").read_text())["studies"]
    assert studies == json.loads((tmp_path / "whole" / "runs.json").read_text())["studies"]


class CountingModel(Model):
    """Also records how many messages each task call sent (demos are turns before the question)."""

    def __init__(self) -> None:
        super().__init__()
        self.turns: list[int] = []

    def __call__(self, messages: list[dict[str, str]]) -> str:
        if not messages[0]["content"].startswith("Improve the instruction"):
            self.turns.append(len(messages))
        return super().__call__(messages)


def test_reflection_starts_from_and_ends_with_retrieved_demos(tmp_path: Path) -> None:
    model = CountingModel()
    store = tmp_path / "runs.json"
    options: dict[str, Any] = {"num_iterations": 3, "minibatch_size": 4, "seed": 1, "init": "knn"}
    options["variants"] = False  # every request counted here is reflect's (a transcript has 2 messages)
    result = run(model, max_demos=2, storage=str(store), **options)
    assert set(model.turns) == {2 + 2 * 2}  # system, question and two retrieved demos, from the start
    details = ReflectDetails.of(result)
    assert details.accepted >= 1 and result.score == 100.0
    state = result.states[judge]
    assert state.instruction == GOOD  # the edit...
    assert (
        state.pool is not None and state.pool.k == 2 and len(state.pool.demos) == len(TRAIN)
    )  # ...and the pool
    assert "knn:" in promptfile.render(judge, state)
    stored = json.loads(store.read_text())["studies"][details.study]
    assert stored["pools"][next(iter(stored["pools"]))]["k"] == 2
    again = run(CountingModel(), max_demos=2, storage=str(store), **options)  # resumed from the store
    assert again.usage.calls == 0 and again.states == result.states


def test_a_database_storage_holds_the_run_and_resumes_it_after_a_kill(tmp_path: Path) -> None:
    import optuna

    from lmprog.optimize.reflect_study import ReflectStudyStore, is_database

    assert is_database("sqlite:///x.db") and is_database("runs.sqlite") and is_database("postgresql://h/db")
    assert not is_database("runs.json") and not is_database(None)
    whole = run(
        folder=tmp_path / "whole", storage=str(tmp_path / "whole" / "runs.json"), num_iterations=12, seed=3
    )
    folder = tmp_path / "db"
    folder.mkdir()
    url = f"sqlite:///{folder / 'runs.db'}"
    for kill_after in (5, 9, 12):
        with pytest.raises(Killed):
            run(Model(kill_after), folder=folder, storage=url, num_iterations=12, seed=3)
    resumed = run(folder=folder, storage=url, num_iterations=12, seed=3)
    assert promptfile.render(judge, resumed.states[judge]) == promptfile.render(judge, whole.states[judge])
    a, b = ReflectDetails.of(resumed), ReflectDetails.of(whole)
    assert a.iterations == b.iterations and a.candidates == b.candidates and a.study == b.study
    (summary,) = optuna.get_all_study_summaries(url)
    assert summary.study_name == a.study
    # a study written by another optimizer is refused, not read
    other = optuna.create_study(study_name="mipro-run", storage=url)
    other.set_user_attr("lmprog_store_format", 2)
    with pytest.raises(UsageError, match="written by another optimizer"):
        ReflectStudyStore(other)


def test_a_candidate_whose_iteration_was_not_stored_is_not_read(tmp_path: Path) -> None:
    import optuna

    from lmprog.optimize.reflect_store import CandidateRecord, candidate_key
    from lmprog.optimize.reflect_study import open_reflect_store

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = open_reflect_store(None, url, "k")
    store.put_demos({"f": []})
    store.put_candidate(CandidateRecord(0, {"f": "A"}, (), -1, None, (0.5,)))
    store.put_iteration(IterationRecord(0, "reflect", 0, "f", note="no gain on the minibatch"))
    orphan = CandidateRecord(1, {"f": "B"}, (0,), 1, "f", (1.0,))
    optuna.load_study(study_name="k", storage=url).set_user_attr(*candidate_key(1, orphan.to_json()))
    again = open_reflect_store(None, url, "k")
    assert [c.index for c in again.candidates()] == [0] and len(again.iterations()) == 1
    assert again.demos() == {"f": []}


class Copying(Model):
    """Copies the answer of a demo asking the very same question (what a retrieved copy of the
    row itself would give away)."""

    def __call__(self, messages: list[dict[str, str]]) -> str:
        question = messages[-1]["content"]
        for ask, said in zip(messages[1:-1:2], messages[2:-1:2], strict=False):
            if ask["content"] == question:
                return said["content"]
        return super().__call__(messages)


def test_a_minibatch_row_does_not_retrieve_itself_from_the_pool() -> None:
    result = run(Copying(), num_iterations=4, minibatch_size=2, seed=1, init="knn", max_demos=2)
    details = ReflectDetails.of(result)
    first = details.iterations[0]  # train 1 and 7: the seed gets 7 right, and must not copy 1
    assert first.minibatch == (1, 7) and first.parent_minibatch == 50.0 and first.accepted
    assert result.states[judge].pool is not None and len(result.states[judge].pool.demos) == len(TRAIN)
