"""The lmprog pytest plugin (registered through the ``pytest11`` entry point): record and replay the
LM calls of tests.

Mark a test (or a module, with ``pytestmark``) with ``@pytest.mark.lmprog``, or request the
``lmprog_cassette`` fixture, and every LM request it makes, from any LM object and any thread,
goes through its cassette, ``cassettes/<test module>/<test name>.yaml`` next to the test file:

- by default requests are answered from the cassette, offline and deterministically; a request
  the cassette does not hold fails the test with a message naming the test and the call (even when
  the program under test catches the error);
- ``pytest --lmprog-record`` sends the requests to the real LM and (re)writes the cassettes.

``@pytest.mark.lmprog(cassette="name")`` names the cassette file (tests may share one); the ini
option ``lmprog_cassette_dir`` (default ``cassettes``) names the folder. The response cache is
bypassed while a cassette is active.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from lmprog.testing._cassette import Cassette, CassetteMissError

__all__ = ["Cassette", "CassetteMissError", "cassette_path", "lmprog_cassette"]

_CASSETTE = pytest.StashKey[Cassette]()
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-\[\]]+")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lmprog", "lmprog record/replay of LM calls")
    group.addoption(
        "--lmprog-record",
        action="store_true",
        default=False,
        help="run tests marked lmprog against the real LM and (re)write their cassettes",
    )
    parser.addini("lmprog_cassette_dir", "folder of cassettes, next to each test file", default="cassettes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lmprog(cassette=None): replay the test's LM calls from its cassette "
        "(record them with --lmprog-record)",
    )


def cassette_path(item: pytest.Item, name: str | None = None) -> Path:
    """``<test file folder>/<lmprog_cassette_dir>/<test module>/<test name>.yaml``."""
    folder = str(item.config.getini("lmprog_cassette_dir") or "cassettes")
    module = item.path.stem
    if name is None:
        parts = item.nodeid.split("::")[1:]
        name = ".".join(parts) or item.name
    safe = _UNSAFE.sub("_", name).strip("._") or "test"
    if len(safe) > 120:
        safe = safe[:100] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return item.path.parent / folder / module / f"{safe}.yaml"


@pytest.fixture
def lmprog_cassette(request: pytest.FixtureRequest) -> Iterator[Cassette]:
    """Route the test's LM requests through its cassette (replay; record with --lmprog-record)."""
    item = request.node
    marker = item.get_closest_marker("lmprog")
    name = marker.kwargs.get("cassette") if marker is not None else None
    record = bool(request.config.getoption("lmprog_record"))
    test = f"{item.path.name}::{'::'.join(item.nodeid.split('::')[1:]) or item.name}"
    try:
        cassette = Cassette(cassette_path(item, name), test, "record" if record else "replay")
    except CassetteMissError as e:
        pytest.fail(str(e), pytrace=False)
    item.stash[_CASSETTE] = cassette
    with cassette.activate():
        yield cassette
    if record:
        cassette.save()


@pytest.fixture(autouse=True)
def _lmprog_marker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("lmprog") is not None:
        request.getfixturevalue("lmprog_cassette")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """Fail a test whose program swallowed a cassette miss (evaluate() records errors, for one)."""
    result = yield
    cassette = item.stash.get(_CASSETTE, None)
    if cassette is not None and cassette.misses:
        more = f"\n(and {len(cassette.misses) - 1} more missing call(s))" if len(cassette.misses) > 1 else ""
        pytest.fail(cassette.misses[0] + more, pytrace=False)
    return result
