"""A worker's place in a search round's trial quota, shared by every worker on the round's study.

Contract: :func:`take_place` asks for a trial and returns it RUNNING, for the caller to run and
tell, or returns None when the round's ``quota`` of live trials (COMPLETE or RUNNING) is taken.
On PostgreSQL at most ``quota`` trials ever go live, however many workers ask at once.

Why a lock. A trial goes live when a worker's ``study.ask()`` creates it or pops an enqueued
(WAITING) one. Optuna serialises trial creation per study (its insert locks the study's row), so
trials it creates are numbered in the order they go live; but an enqueued trial keeps the number
it got when it was enqueued. If a worker's enqueue is committed while another worker asks (after
that ask found no waiting trial, before its insert), the asked trial is numbered after the
enqueued one and counts itself inside the quota; a worker that pops the enqueued trial later
ranks it before, by number, inside the quota too: one trial too many. So on PostgreSQL a worker
takes its place under a transaction-level advisory lock keyed by the study: it counts the live
trials and asks only while one is free. Every trial goes live under that lock, so the count sees
every trial that went live before. The lock ends with its transaction: a killed worker's lock
ends with its connection.

On SQLite (and any other storage) there is no such lock: the trial is asked, then ranked by
number among the live trials, and dropped past the quota (FAIL, marked ``lmprog_skipped``; see
:func:`~lmprog.optimize.search.rank_among_live`). That covers workers asking at once, not an
enqueue committed in the middle of an ask.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lmprog.optimize.search import OWNER_ATTR, live_count, optuna_state, rank_among_live
from lmprog.optimize.storage_lock import LOCK_WAIT_SECONDS, advisory_lock

if TYPE_CHECKING:
    import optuna
    import sqlalchemy

__all__ = ["take_place"]

#: The first key of lmprog's advisory locks on trial quotas (the study id is the second); the
#: schema lock of :mod:`lmprog.optimize.storage_lock` has another first key, so they never collide.
_LOCK_SPACE = 0x6C6D7071


def take_place(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    quota: int,
    owner: dict[str, Any],
    *,
    wait: float | None = None,
) -> optuna.trial.Trial | None:
    """A new trial of ``study`` recorded as ``owner``'s, or None when ``quota`` trials are live;
    ``wait``: the longest wait for another worker's place-taking, in seconds (None:
    :data:`~lmprog.optimize.storage_lock.LOCK_WAIT_SECONDS`, as for the schema lock)."""
    with _exclusive_asks(study, storage, LOCK_WAIT_SECONDS if wait is None else wait) as exclusive:
        if exclusive and live_count(study) >= quota:
            return None
        trial = study.ask()
        trial.set_user_attr(OWNER_ATTR, owner)
    if not exclusive and rank_among_live(study, trial.number) >= quota:
        trial.set_user_attr("lmprog_skipped", "the round's trial quota was reached")
        study.tell(trial, state=optuna_state("FAIL"))
        return None
    return trial


@contextmanager
def _exclusive_asks(study: optuna.Study, storage: optuna.storages.BaseStorage, wait: float) -> Iterator[bool]:
    """Hold ``study``'s advisory lock (PostgreSQL: True) or nothing (other storages: False)."""
    engine = _postgres_engine(storage)
    if engine is None:
        yield False
        return
    study_id = storage.get_study_id_from_name(study.study_name)
    with engine.connect() as conn, conn.begin():
        advisory_lock(
            conn,
            "SELECT pg_advisory_xact_lock(:space, :study)",
            {"space": _LOCK_SPACE, "study": study_id},
            wait=wait,
            session=False,
            waited=(
                f"study {study.study_name!r}: another worker has been taking a trial for more than "
                f"{wait:g} s (its trial lock on the PostgreSQL server is still held: a frozen "
                "process, or a stalled connection?). Stop that worker and run again: the search "
                "resumes where it stopped"
            ),
        )
        yield True  # the lock is released when the transaction ends, on success or error


def _postgres_engine(storage: optuna.storages.BaseStorage) -> sqlalchemy.engine.Engine | None:
    import optuna

    if isinstance(storage, optuna.storages.RDBStorage) and storage.engine.dialect.name == "postgresql":
        return storage.engine
    return None
