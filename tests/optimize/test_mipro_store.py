"""MIPRO's typed store, settings and details: records round-trip, several writers on one study
keep each other's records, a study of another layout is refused, details read by attribute."""

from __future__ import annotations

import sqlite3
import threading
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest

import lmprog
from lmprog.errors import UsageError
from lmprog.optimize import optimize
from lmprog.optimize.mipro import MIPRO, MiproConfig, MiproDetails, TrialRecord
from lmprog.optimize.mipro_store import BASELINE, STORE_FORMAT, FullEvaluation, MiproStore
from lmprog.optimize.search import open_storage
from lmprog.testing import ScriptedLM

from .test_mipro import DATA, Model, metric, triage


def open_store(db: Path, name: str = "s") -> MiproStore:
    """A store on its own storage and Study object (as a separate worker would have)."""
    storage = open_storage(str(db))
    return MiproStore(optuna.create_study(study_name=name, storage=storage, load_if_exists=True))


def record(key: str, r: int = 0, step: int | None = 4, score: float = 50.0) -> FullEvaluation:
    due = f"r{r}-{'end' if step is None else step}"
    return FullEvaluation(key, r, {"m:f": (1, 0)}, score, 12.5, due, step)


def test_records_round_trip_through_storage(tmp_path: Path) -> None:
    store = open_store(tmp_path / "study.db")
    assert store.demo_sets() is None and store.data_summary() is None and store.instructions(0) is None
    sets = {"m:f": [[], [{"ticket": "broken screen", "output": "bug"}]]}
    store.put_demo_sets(sets)
    store.put_data_summary("Short tickets.")
    store.put_instructions(1, {"m:f": ["Classify.", "Label the topic."]})
    # written out of order: read back in the order of the run (round, then the point asking)
    for rec in (record("c", 1, None), record("b", 0, None), record("a", 0, 2), record("z", BASELINE, 0)):
        store.put_full_evaluation(rec)
    store.mark_due_done("r1-2")

    again = open_store(tmp_path / "study.db")  # a fresh process would see the same
    assert again.demo_sets() == sets
    assert again.data_summary() == "Short tickets."
    assert again.instructions(1) == {"m:f": ["Classify.", "Label the topic."]}
    assert again.instructions(0) is None
    evals = again.full_evaluations()
    assert [e.key for e in evals] == ["z", "a", "b", "c"]
    assert evals[1] == record("a", 0, 2)  # typed: tuples, floats, the step
    assert again.due_done() == {"r-1-0", "r0-2", "r0-end", "r1-end", "r1-2"}


def test_two_writers_on_one_study_keep_each_others_full_evaluations(tmp_path: Path) -> None:
    # two workers, each with its own Study object and connection on one SQLite file, store full
    # evaluations at the same time: none is lost (the earlier layout rewrote one dict whole)
    db = tmp_path / "study.db"
    open_store(db)  # create the schema and the study first
    per_worker = 25
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(tag: str) -> None:
        try:
            store = open_store(db)
            start.wait()
            for i in range(per_worker):
                store.put_full_evaluation(record(f"{tag}{i:02d}", 0, i, float(i)))
                store.full_evaluations()  # a read between writes, as the run does
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=work, args=(tag,)) for tag in "ab"]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    keys = sorted(e.key for e in open_store(db).full_evaluations())
    assert keys == sorted(f"{t}{i:02d}" for t in "ab" for i in range(per_worker))


def test_a_study_written_by_an_older_lmprog_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    study = optuna.create_study(study_name="mipro-old", storage=open_storage(str(db)))
    study.set_user_attr("demo_sets", {"m:f": [[]]})
    study.set_user_attr("instructions_r0", {"m:f": ["Classify the ticket."]})
    study.set_user_attr("full_evals", {"k": {"round": -1, "config": {}, "score": 50.0}})
    with pytest.raises(UsageError) as info:
        open_store(db, "mipro-old")
    message = str(info.value)
    assert "'mipro-old'" in message and "older lmprog" in message
    assert "full_evals" in message and "study_name" in message
    # the same through optimize(): refused before any LM call, nothing of the old study misread
    lm = ScriptedLM(Model(), cache=False)
    with lmprog.context(lm=lm, load_prompts=False), pytest.raises(UsageError, match="older lmprog"):
        optimize(
            triage,
            DATA[:9],
            metric,
            valset=DATA[9:],
            optimizer="mipro",
            save=False,
            storage=str(db),
            study_name="mipro-old",
            progress=False,
            num_demo_sets=0,
        )
    assert lm.calls == []


def test_a_study_of_another_store_format_or_a_malformed_record_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    study = optuna.create_study(study_name="later", storage=open_storage(str(db)))
    study.set_user_attr("lmprog_store_format", STORE_FORMAT + 1)
    with pytest.raises(UsageError, match=f"store format {STORE_FORMAT + 1}"):
        open_store(db, "later")
    store = open_store(db)
    store.study.set_user_attr("full_eval:x", {"key": "x", "round": "zero"})
    with pytest.raises(UsageError, match="malformed record 'full_eval:x'"):
        store.full_evaluations()


def test_config_is_frozen_and_the_keyword_arguments_build_it() -> None:
    opt = MIPRO(num_trials=8, rounds=0, num_demo_sets=-2, cost_aware=True)
    assert opt.config == MiproConfig(num_trials=8, rounds=1, num_demo_sets=0, cost_aware=True)
    assert opt.config.trials_in_round(0) == 8
    with pytest.raises(AttributeError):
        opt.config.num_trials = 3  # type: ignore[misc]
    same = MIPRO(config=MiproConfig(num_trials=8, rounds=1, num_demo_sets=0, cost_aware=True))
    assert same.config == opt.config and same.bootstrapper.max_bootstrapped_demos == 3
    with pytest.raises(UsageError, match="either config= or keyword settings"):
        MIPRO(num_trials=4, config=MiproConfig())
    assert MiproConfig(num_trials=5, rounds=2).trials_in_round(0) == 3


def small_run(folder: Path, **settings: Any) -> lmprog.OptimizationResult:
    lm = ScriptedLM(Model(), cache=True)
    with lmprog.context(lm=lm, load_prompts=False, cache_dir=folder / "cache"):
        return optimize(
            triage,
            DATA[:9],
            metric,
            valset=DATA[9:],
            optimizer="mipro",
            save=False,
            apply=False,
            storage=str(folder / "study.db"),
            progress=False,
            **{
                "num_trials": 4,
                "minibatch_size": 6,
                "num_instructions": 3,
                "num_demo_sets": 1,
                "threads": 2,
                **settings,
            },
        )


def test_a_full_evaluation_stored_before_a_kill_is_not_followed_by_another(tmp_path: Path) -> None:
    # a kill right after a full evaluation was stored, before its point of the search was marked
    # done, is simulated by deleting every mark: the resumed run finds the points done from the
    # records themselves and evaluates nothing more (before, it evaluated the next configuration)
    # one round of 8 trials with a full evaluation every 4: fewer evaluations than configurations
    first = small_run(tmp_path, num_trials=8, rounds=1, full_eval_every=4)
    assert len(first.candidates) < 1 + len({t.config_key for t in first.details.trial_history})
    stored = open_store(tmp_path / "study.db", first.details.study).full_evaluations()
    with sqlite3.connect(tmp_path / "study.db") as conn:
        deleted = conn.execute("DELETE FROM study_user_attributes WHERE key LIKE 'full_eval_due:%'")
        assert deleted.rowcount >= len(stored)  # a mark per evaluation (and per point with none)
    again = small_run(tmp_path, num_trials=8, rounds=1, full_eval_every=4)
    assert open_store(tmp_path / "study.db", first.details.study).full_evaluations() == stored
    assert [(c.label, c.score) for c in again.candidates] == [(c.label, c.score) for c in first.candidates]
    assert again.usage.requests == 0


def test_details_are_typed_and_the_old_keys_still_read_with_a_warning(tmp_path: Path) -> None:
    result = small_run(tmp_path)
    details = MiproDetails.of(result)
    assert details is result.details
    assert details.trials == 4 == len(details.trial_history)
    assert all(isinstance(t, TrialRecord) and 0 <= t.score <= 100 for t in details.trial_history)
    assert details.pareto is None and "pareto" not in details
    assert details.study.startswith("mipro-")
    with pytest.warns(DeprecationWarning, match=r"details\.trials"):
        assert details["trials"] == 4
    with pytest.warns(DeprecationWarning):
        history: Any = details["trial_history"]
    assert history == [vars(t) for t in details.trial_history]  # the plain dicts of before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        details["validation"] = {"key": "k"}  # what optimize() adds to every optimizer's details
        assert details["validation"] == {"key": "k"} and "validation" in details
        plain = details.to_dict()
    assert plain["trials"] == 4 and plain["validation"] == {"key": "k"}
    assert set(plain) == set(details)
    with pytest.raises(TypeError, match="typed field"):
        details["trials"] = 5
    other = lmprog.OptimizationResult("labeled", {}, score=None)
    with pytest.raises(UsageError, match="no MIPRO details"):
        MiproDetails.of(other)
