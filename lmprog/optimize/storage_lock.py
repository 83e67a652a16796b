"""One process at a time opens (creates the schema of) an optuna storage on a PostgreSQL database.

Contract: inside :func:`schema_lock` for a PostgreSQL URL, no other lmprog process holds the same
database's schema lock; for any other URL (SQLite, in-memory) it does nothing. A wait longer than
:data:`LOCK_WAIT_SECONDS` ends in an :class:`~lmprog.errors.LmprogError` naming the storage
(never its password) and saying what to do.

Why a lock. Optuna's ``RDBStorage`` creates its schema when it opens (``metadata.create_all``):
for each enum type and table it checks whether it exists, then creates it, and check and create
are not one atomic step. Several workers started at once on a new database all find the type
``studydirection`` missing: the first one's ``CREATE TYPE`` goes through, the others wait for its
transaction and then fail with ``DuplicateObject`` (a table created twice fails the same way).
Under the lock, a process that opens the storage after another finds the schema in place, and
skips it.

The lock is a session-level advisory lock on a connection of its own (short-lived, in autocommit,
so it is never idle in a transaction while optuna works on its own connections): taken before the
storage is constructed, released after, and released by the server if the process dies (its
connection closes). Its keys, :data:`SCHEMA_LOCK_KEYS`, are a two-key pair whose first key
(``0x6C6D7073``, "lmps") differs from that of the trial-quota locks of
:mod:`lmprog.optimize.quota` (``0x6C6D7071``, "lmpq", the study id second), so the two can never
collide; advisory locks are per database, as the schema is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from lmprog.errors import LmprogError

if TYPE_CHECKING:
    import sqlalchemy.engine

__all__ = ["LOCK_WAIT_SECONDS", "SCHEMA_LOCK_KEYS", "advisory_lock", "safe_url", "schema_lock"]

logger = logging.getLogger("lmprog.optimize.storage_lock")

#: How long a process waits for another's lock (the schema's, or a round's trial quota in
#: :mod:`lmprog.optimize.quota`: well under a second of work each) before failing.
LOCK_WAIT_SECONDS: float = 600
#: The keys of the schema lock: ("lmps", 1). The quota locks use ("lmpq", study id).
SCHEMA_LOCK_KEYS = (0x6C6D7073, 1)


def safe_url(url: str) -> str:
    """``url`` with its password (if any) masked, for messages and logs."""
    import sqlalchemy.engine
    import sqlalchemy.exc

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):  # unparsed: show none of it, password or not
        return url.split("://", 1)[0] + "://..."


def advisory_lock(
    conn: sqlalchemy.engine.Connection,
    statement: str,
    keys: dict[str, int],
    *,
    wait: float,
    session: bool,
    waited: str,
) -> None:
    """Take a PostgreSQL advisory lock on ``conn`` (``statement`` with its ``keys``), waiting at
    most ``wait`` seconds (``lock_timeout``, set for the session, or for the transaction when
    not ``session``); past it, an :class:`~lmprog.errors.LmprogError` saying ``waited``."""
    import sqlalchemy
    import sqlalchemy.exc

    conn.execute(
        sqlalchemy.text("SELECT set_config('lock_timeout', :wait, :local)"),
        {"wait": f"{max(1, int(wait * 1000))}ms", "local": not session},
    )
    try:
        conn.execute(sqlalchemy.text(statement), keys)
    except sqlalchemy.exc.OperationalError as e:
        if getattr(e.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        raise LmprogError(waited) from e


@contextmanager
def schema_lock(url: str, *, wait: float | None = None) -> Iterator[None]:
    """Hold the schema lock of ``url``'s database (PostgreSQL), or nothing (other storages);
    ``wait``: the longest wait for it in seconds (None: :data:`LOCK_WAIT_SECONDS`)."""
    import sqlalchemy
    import sqlalchemy.exc
    import sqlalchemy.pool

    if sqlalchemy.engine.make_url(url).get_backend_name() != "postgresql":
        yield
        return
    # NullPool: closing the connection ends its session, and with it the lock, whatever happens
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, isolation_level="AUTOCOMMIT")
    wait = LOCK_WAIT_SECONDS if wait is None else wait
    try:
        with engine.connect() as conn:
            keys = {"space": SCHEMA_LOCK_KEYS[0], "key": SCHEMA_LOCK_KEYS[1]}
            advisory_lock(
                conn,
                "SELECT pg_advisory_lock(:space, :key)",
                keys,
                wait=wait,
                session=True,
                waited=(
                    f"storage {safe_url(url)}: another process has been opening it (creating "
                    f"optuna's tables) for more than {wait:g} s, and still holds its schema lock "
                    "on the PostgreSQL server: a frozen process, or a stalled connection? Stop "
                    "that process (or end its session on the server) and run again"
                ),
            )
            try:
                yield
            finally:
                try:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:space, :key)"), keys)
                except sqlalchemy.exc.DBAPIError as e:  # closing the connection releases it too
                    logger.debug("releasing the schema lock of %s failed: %s", safe_url(url), e)
    finally:
        engine.dispose()
