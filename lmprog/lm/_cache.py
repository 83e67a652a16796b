"""The persistent response cache: one SQLite file shared by threads and processes.

Entries map a key (see :func:`cache_key`) to a JSON object. The file lives at
``<cache_dir>/responses.sqlite`` and runs in WAL mode, so readers never block the writer and
several processes can share it. A cache that cannot be opened or read never stops a run: lmprog
logs one warning and treats every lookup as a miss, and it never deletes or rewrites a file it
could not read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lmprog.lm._secrets import is_secret_param

logger = logging.getLogger("lmprog.cache")

CACHE_FILENAME = "responses.sqlite"

_BUSY_TIMEOUT_MS = 30_000
_LOCKED_RETRIES = 8


def without_secrets(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` without credential-like entries, also inside nested mappings."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if is_secret_param(str(name)):
            continue
        out[str(name)] = without_secrets(value) if isinstance(value, Mapping) else value
    return out


def cache_key(model: str, messages: Any, params: Mapping[str, Any]) -> str:
    """The sha256 hex digest of the canonical JSON of model, messages and non-secret params."""
    payload = {"model": model, "messages": messages, "params": without_secrets(params)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable)
    # "surrogatepass": a lone surrogate (JSON "\\ud800" decodes to one) is text a model can write
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class ResponseCache:
    """A key -> JSON object store in one SQLite file, safe for many threads and processes.

    One connection per instance, guarded by a lock (use :func:`get_cache` to share the instance
    within a process). Every failure other than contention is logged once and turns the cache
    off for this instance: ``get`` returns ``None`` and ``set`` does nothing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._broken = False

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    @property
    def usable(self) -> bool:
        """False once the file proved unreadable; the instance then behaves as always empty."""
        return not self._broken

    def get(self, key: str) -> dict[str, Any] | None:
        """The value stored under ``key``, or ``None`` (a miss, or an unreadable cache)."""
        row = self._run("SELECT value FROM responses WHERE key = ?", (key,), fetch=True)
        if row is None:
            return None
        try:
            value = json.loads(row[0])
        except (TypeError, ValueError):
            logger.warning("ignoring a malformed entry in the response cache %s", self.path)
            return None
        return value if isinstance(value, dict) else None

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        """Store ``value`` (a JSON-serializable mapping) under ``key``, replacing any old value."""
        text = json.dumps(dict(value), sort_keys=True, ensure_ascii=False, default=_jsonable)
        if not _encodable(text):  # a lone surrogate: SQLite stores UTF-8, so escape it as JSON does
            text = json.dumps(dict(value), sort_keys=True, ensure_ascii=True, default=_jsonable)
        self._run(
            "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
            (key, text, time.time()),
            fetch=False,
        )

    def __len__(self) -> int:
        row = self._run("SELECT COUNT(*) FROM responses", (), fetch=True)
        return int(row[0]) if row is not None else 0

    def close(self) -> None:
        """Close the connection; the instance stays usable and reopens it when needed."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def _run(self, sql: str, args: tuple[Any, ...], *, fetch: bool) -> tuple[Any, ...] | None:
        with self._lock:
            for attempt in range(_LOCKED_RETRIES + 1):
                if self._broken:
                    return None
                try:
                    conn = self._connection()
                    cursor = conn.execute(sql, args)
                    return cursor.fetchone() if fetch else None
                except sqlite3.OperationalError as e:
                    if not _is_contention(e):
                        self._disable(e)
                        return None
                    if attempt == _LOCKED_RETRIES:
                        logger.warning(
                            "response cache %s stayed locked; skipping it for this call", self.path
                        )
                        return None
                    time.sleep(min(0.05 * 2**attempt, 2.0))
                except (sqlite3.DatabaseError, OSError) as e:
                    self._disable(e)
                    return None
        return None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # A fresh process (fork) never reuses the parent's connection.
        self._conn = None
        self._pid = os.getpid()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS responses "
                "(key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
            )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _disable(self, error: BaseException) -> None:
        self._broken = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        logger.warning(
            "the response cache %s is unreadable (%s); continuing without it (the file is left as is)",
            self.path,
            error,
        )


# One instance per (process, path), most recently used last. Only the _MAX_OPEN most recent keep
# their connection open; older ones close it and reopen by themselves when used again, so that
# programs and test suites that switch cache_dir often do not pile up open files.
_MAX_OPEN = 8
_instances: OrderedDict[tuple[int, Path], ResponseCache] = OrderedDict()
_instances_lock = threading.Lock()


def get_cache(cache_dir: str | os.PathLike[str]) -> ResponseCache:
    """The shared :class:`ResponseCache` of ``<cache_dir>/responses.sqlite`` for this process."""
    path = (Path(cache_dir).expanduser() / CACHE_FILENAME).absolute()
    key = (os.getpid(), path)
    with _instances_lock:
        cache = _instances.get(key)
        if cache is None:
            cache = _instances[key] = ResponseCache(path)
        _instances.move_to_end(key)
        idle = list(_instances.values())[:-_MAX_OPEN]
    for old in idle:
        old.close()
    return cache


def _is_contention(error: sqlite3.OperationalError) -> bool:
    message = str(error).lower()
    return "locked" in message or "busy" in message


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _jsonable(value: Any) -> Any:
    """Fallback for values canonical JSON cannot hold (sets, paths, types, pydantic models)."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, type):
        schema = getattr(value, "model_json_schema", None)
        if callable(schema):
            return {"type": f"{value.__module__}.{value.__qualname__}", "schema": schema()}
        return f"{value.__module__}.{value.__qualname__}"
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)
