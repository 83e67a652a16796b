"""A round's trial quota on a real PostgreSQL server (the ``postgres_server`` fixture), with the
interleaving of the workers set by the test, not left to timing.

Optuna numbers a trial when it creates it; an enqueued (WAITING) trial keeps that number and goes
live later, when a worker's ask pops it. So a worker's enqueue committed while another worker
asks (after that ask found no waiting trial, before its insert) puts a trial numbered *before*
the asked one into the queue: counted by trial number, the asked trial and the enqueued one,
popped later, could both hold the round's last place.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from lmprog.data import Example
from lmprog.optimize._base import Task
from lmprog.optimize.budget import Budget
from lmprog.optimize.mipro_config import MiproConfig
from lmprog.optimize.mipro_trials import RoundSearch
from lmprog.optimize.search import Space, live_count, open_storage

pytestmark = pytest.mark.timeout(600)

QUOTA = 3


def echo(text: str) -> str:
    return text


def worker(url: str) -> RoundSearch:
    """A worker of the run ``job``, with its own storage connection (as a process would have)."""
    rows = [Example(text=str(i)).with_inputs("text") for i in range(4)]
    task = Task(echo, rows, rows, lambda ex, pred: 1.0, Budget(), seed=0, threads=1, progress=False)
    config = MiproConfig(num_trials=QUOTA, rounds=1, minibatch_size=2)
    return RoundSearch(config, task, open_storage(url), "job")


NO_FUNCTIONS = Space(functions=(), ids=(), instructions={}, demo_sets={})


def enqueue_in_flight(url: str, search: RoundSearch) -> Any:
    """Another worker's ``study.enqueue_trial`` under way: a transaction running the statements of
    optuna's ``RDBStorage._create_new_trial`` (lock the study's row, insert the WAITING trial,
    number it by the trials before it), not yet committed. Its connection is returned."""
    import psycopg

    study_id = search.storage.get_study_id_from_name("job-r0")
    conn = psycopg.connect(url)
    conn.execute("SELECT study_id FROM studies WHERE study_id = %s FOR UPDATE", (study_id,))
    row = conn.execute(
        "INSERT INTO trials (study_id, state, datetime_start) VALUES (%s, 'WAITING', NULL)"
        " RETURNING trial_id",
        (study_id,),
    ).fetchone()
    assert row is not None
    conn.execute(
        "INSERT INTO trial_system_attributes (trial_id, key, value_json) VALUES (%s, 'fixed_params', '{}')",
        (row[0],),
    )
    conn.execute(
        "UPDATE trials SET number = (SELECT count(*) FROM trials WHERE study_id = %s AND trial_id < %s)"
        " WHERE trial_id = %s",
        (study_id, row[0], row[0]),
    )
    return conn


def wait_until_blocked_by(url: str, holder: Any) -> None:
    """Return once another session waits for a lock that ``holder``'s transaction holds (a state
    the server reports; the poll only waits for it to be reached)."""
    import psycopg

    pid = holder.info.backend_pid
    deadline = time.monotonic() + 120
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            query = "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))"
            row = conn.execute(query, (pid,)).fetchone()
            if row is not None and row[0] > 0:
                return
            time.sleep(0.01)
    raise AssertionError("no session ever waited for the enqueue's transaction")


def test_an_enqueued_trial_popped_late_does_not_take_a_place_already_counted(postgres_url: str) -> None:
    first, a, b = worker(postgres_url), worker(postgres_url), worker(postgres_url)
    for _ in range(QUOTA - 1):  # the places already taken
        assert first.run_next_trial(0, NO_FUNCTIONS, QUOTA)
    # worker B found a free place (its loop checks the live trials before it asks)...
    assert b.live_count(0) < QUOTA
    # ...and meanwhile another worker's enqueue is being committed, while worker A asks: A finds
    # no waiting trial, and its insert waits for the enqueue's lock on the study
    enqueue = enqueue_in_flight(postgres_url, a)
    ran: dict[str, bool] = {}
    asking = threading.Thread(target=lambda: ran.update(a=a.run_next_trial(0, NO_FUNCTIONS, QUOTA)))
    asking.start()
    wait_until_blocked_by(postgres_url, enqueue)
    enqueue.commit()
    enqueue.close()
    asking.join(timeout=300)
    assert not asking.is_alive()
    # A's trial is numbered after the enqueued one; now B asks and pops the enqueued trial
    ran["b"] = b.run_next_trial(0, NO_FUNCTIONS, QUOTA)
    assert sorted(ran.values()) == [False, True], f"both workers ran a trial for the last place: {ran}"
    assert live_count(a.study(0)) == QUOTA


def test_a_worker_waiting_too_long_for_the_trial_lock_says_why(
    postgres_url: str,
) -> None:
    import psycopg

    from lmprog.errors import LmprogError
    from lmprog.optimize import quota

    a = worker(postgres_url)
    study = a.study(0)
    study_id = a.storage.get_study_id_from_name("job-r0")
    with psycopg.connect(postgres_url) as frozen:  # a worker frozen while it takes a place
        frozen.execute("SELECT pg_advisory_xact_lock(%s, %s)", (quota._LOCK_SPACE, study_id))
        with pytest.raises(LmprogError, match=r"'job-r0': another worker has been taking a trial"):
            quota.take_place(study, a.storage, QUOTA, a.owner, wait=0.1)
    assert live_count(study) == 0  # nothing was asked
