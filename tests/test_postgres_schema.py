"""Opening a new PostgreSQL storage from several processes at once (the ``postgres_server``
fixture, one fresh database per test), with the interleaving set by the test, not left to timing.

Optuna's ``RDBStorage`` creates its schema when it opens (``metadata.create_all``): for every enum
type and table it checks whether it exists, then creates it. A process that checked before
another committed the schema, and creates after, fails (``DuplicateObject``: type
"studydirection" already exists). ``open_storage`` serialises the schema creation under an
advisory lock (``lmprog.optimize.storage_lock``).

The test pauses a worker between its check and its create (a SQLAlchemy event, in that worker's
thread only) while another opens the storage. A worker whose ``CREATE TYPE`` merely waits for
another's uncommitted one fails differently, with a unique violation on PostgreSQL's catalog,
which ``open_storage``'s retry already absorbed: that interleaving did not show the bug.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from lmprog.optimize import storage_lock
from lmprog.optimize.search import open_storage

pytestmark = pytest.mark.timeout(300)


class PauseBefore:
    """Holds the thread ``who`` just before it sends ``statement`` (a SQLAlchemy event on every
    engine, so on the one optuna creates inside the storage), until :meth:`release`."""

    def __init__(self, statement: str) -> None:
        self.statement = statement
        self.who: threading.Thread | None = None
        self.reached = threading.Event()
        self.released = threading.Event()

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.current_thread() is self.who and statement.startswith(self.statement):
            self.reached.set()
            if not self.released.wait(timeout=120):
                raise AssertionError(f"never released before {self.statement!r}")

    def release(self) -> None:
        self.released.set()


def opening(url: str, results: dict[str, Any], name: str) -> threading.Thread:
    """A thread opening the storage as a worker process would, its storage or error in ``results``."""

    def run() -> None:
        try:
            results[name] = open_storage(url)
        except Exception as e:  # reported by the test's assertions
            results[name] = e

    return threading.Thread(target=run, name=name)


def done_or_blocked(url: str, thread: threading.Thread) -> None:
    """Return once ``thread`` has ended or a session of the database waits for a lock (states the
    server and the interpreter report; the poll only waits for one to be reached)."""
    import psycopg

    deadline = time.monotonic() + 120
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if not thread.is_alive():
                return
            query = (
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND cardinality(pg_blocking_pids(pid)) > 0"
            )
            row = conn.execute(query).fetchone()
            if row is not None and row[0] > 0:
                return
            time.sleep(0.01)
    raise AssertionError("the second worker neither opened the storage nor waited for a lock")


def test_two_workers_opening_a_new_database_at_once_both_get_a_working_storage(postgres_url: str) -> None:
    """The interleaving of the CI failure: worker B has checked that the type ``studydirection``
    does not exist and is about to create it; worker A opens the storage meanwhile. Without the
    schema lock A creates and commits the whole schema, and B's ``CREATE TYPE`` then fails with
    ``DuplicateObject``; with it, A waits until B is done, then finds the schema in place."""
    import optuna
    import sqlalchemy

    results: dict[str, Any] = {}
    b, a = opening(postgres_url, results, "b"), opening(postgres_url, results, "a")
    pause = PauseBefore("CREATE TYPE studydirection")
    pause.who = b
    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", pause)
    try:
        b.start()
        assert pause.reached.wait(timeout=120), "worker B never came to create the schema"
        a.start()
        done_or_blocked(postgres_url, a)  # A has created the schema, or waits for B's lock
        pause.release()
        b.join(timeout=120)
        a.join(timeout=120)
    finally:
        pause.release()
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", pause)
    assert not a.is_alive() and not b.is_alive()
    failed = {name: r for name, r in results.items() if isinstance(r, BaseException)}
    assert not failed, f"opening the storage failed: {failed!r}"
    for name in ("a", "b"):  # both storages work, on the one schema
        study = optuna.create_study(study_name=name, storage=results[name])
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.get_all_study_summaries(open_storage(postgres_url))) == 2


def test_a_storage_waiting_too_long_for_the_schema_lock_says_why_without_the_password(
    postgres_url: str,
) -> None:
    import psycopg

    from lmprog.errors import LmprogError

    # the server trusts the user: the password is never sent, only shown if it leaks
    with_password = postgres_url.replace("lmprog@", "lmprog:s3cret-word@", 1)
    with psycopg.connect(postgres_url) as frozen:  # a worker frozen while it creates the schema
        frozen.execute("SELECT pg_advisory_lock(%s, %s)", storage_lock.SCHEMA_LOCK_KEYS)
        with pytest.raises(LmprogError, match=r"another process has been opening it") as caught:
            open_storage(with_password, lock_wait=0.1)
    message = str(caught.value)
    assert "s3cret-word" not in message and "s3cret-word" not in repr(caught.value.__cause__)
    assert postgres_url.rsplit("/", 1)[1] in message  # names the database
    # once that worker is gone, the storage opens
    open_storage(with_password)
