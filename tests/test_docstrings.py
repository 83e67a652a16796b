"""The examples in the public API's docstrings run as written (doctest), so they cannot rot."""

from __future__ import annotations

import doctest
import importlib
from collections.abc import Iterator

import pytest

import lmprog

#: Modules whose docstrings hold runnable examples of public names.
MODULES = [
    "lmprog.settings",
    "lmprog.usage",
    "lmprog.metrics",
    "lmprog.data._examples",
    "lmprog.signature._failure",
    "lmprog.trace._spans",
    "lmprog.trace._traced",
    "lmprog.testing._scripted",
    "lmprog.function._decorator",
    "lmprog.function._function",
    "lmprog.lm._client",
    "lmprog.lm._base",
    "lmprog.optimize.budget",
]


@pytest.fixture(autouse=True)
def no_cache_and_no_prompt_files(tmp_path: object) -> Iterator[None]:
    with lmprog.context(cache=False, load_prompts=False):
        yield


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (see output)"


def test_the_public_names_have_runnable_examples() -> None:
    """The examples this test runs cover the public API's main entry points."""
    covered = set()
    for name in MODULES:
        module = importlib.import_module(name)
        for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
            if test.examples:
                covered.add(test.name.rpartition(".")[2])
    public = {"configure", "context", "split", "trace", "traced", "track", "ScriptedLM", "Budget"}
    assert public | {"lm_function"} <= covered
