"""Workers sharing a round's trial quota: which trial keeps a place when two start at once.

A worker asks for a trial (optuna creates it RUNNING, stamped with its own clock), then counts
the live trials ahead of it; past the quota it drops the trial. Under a SQLite write lock, a
worker may stamp its trial *before* another worker's but insert it *after* that worker already
counted: ordered by start time, both then find themselves inside the quota and the round ends
with one trial too many (17 of 16 in
tests/reliability/test_concurrency.py::test_two_processes_on_one_study_share_its_trial_quota,
about 1 run in 180 under load). Trial numbers follow the order of insertion, so counting by
number gives every worker the same answer.
"""

from __future__ import annotations

import datetime as dt

import optuna

from lmprog.optimize.search import rank_among_live


def _study(tmp_path: object) -> optuna.Study:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/q.db")
    return optuna.create_study(study_name="round", storage=storage)


def _started(study: optuna.Study, at: dt.datetime) -> int:
    """Insert a RUNNING trial stamped ``at`` (as optuna's ask does with the worker's clock)."""
    template = optuna.trial.FrozenTrial(
        number=-1,
        state=optuna.trial.TrialState.RUNNING,
        value=None,
        datetime_start=at,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
    )
    trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
    return study._storage.get_trial_number_from_id(trial_id)


def test_a_trial_stamped_early_but_inserted_late_does_not_take_a_counted_place(tmp_path: object) -> None:
    study = _study(tmp_path)
    quota = 3
    t0 = dt.datetime(2026, 1, 1, 12, 0, 0)
    for i in range(quota - 1):  # the places already taken
        study.tell(_started(study, t0 + dt.timedelta(seconds=i)), 0.5)
    # worker B reads its clock at 12:00:10 and waits for the write lock; meanwhile worker A
    # inserts its trial stamped 12:00:11 and counts: it holds the last place
    a = _started(study, t0 + dt.timedelta(seconds=11))
    assert rank_among_live(study, a) == quota - 1
    # then B's insert goes through with its earlier stamp, and B counts
    b = _started(study, t0 + dt.timedelta(seconds=10))
    assert rank_among_live(study, b) >= quota  # B must drop its trial: A counted first
    assert rank_among_live(study, a) == quota - 1  # and A's place does not change
