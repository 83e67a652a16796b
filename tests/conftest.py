"""Shared test setup: every test starts from default settings with a private cache directory,
and unit tests cannot reach the network (loopback stays open for local servers)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmprog import settings


@pytest.fixture(autouse=True)
def _fresh_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    settings.reset()
    settings.configure(cache_dir=tmp_path_factory.mktemp("cache"))
    yield
    settings.reset()


@pytest.fixture
def local_settings(tmp_path: Path) -> Iterator[None]:
    """The embedded model, greedy, without a response cache or prompt files (``local_model``)."""
    with settings.context(lm="local", cache=False, cache_dir=tmp_path, load_prompts=False, temperature=0.0):
        yield


_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else address
    if (
        isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1"))
    ) or self.family == socket.AF_UNIX:
        return _real_connect(self, address)  # type: ignore[arg-type]
    raise OSError(f"network access blocked in tests: {address!r}")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a real PostgreSQL server on 127.0.0.1 (see ``pg_server``), or a skip saying why
    there is none."""
    pytest.importorskip("psycopg", reason='needs the driver: pip install "lmprog[postgres]"')
    from pg_server import Unavailable, postgres_server

    try:
        with postgres_server() as url:
            yield url
    except Unavailable as e:
        pytest.skip(f"no PostgreSQL server: {e}")


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh database on the session's PostgreSQL server."""
    from pg_server import new_database

    return new_database(postgres_server)
