"""``evaluate`` on process backends (loky, multiprocessing): what the workers need goes to them
(settings with the LM, states), and what they produce comes back (results in input order,
per-example errors, spans joined to the caller's trace, exact usage). Also: every lmprog error,
lm_functions, spans and results pickle."""

from __future__ import annotations

import inspect
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import lmprog
from lmprog import errors, evaluate, lm_function, settings
from lmprog.errors import BudgetExceededError, OutputParseError, UsageError
from lmprog.evaluate import EvaluationResult
from lmprog.function import LMFunction, State, use_states
from lmprog.optimize import Budget
from lmprog.testing import ScriptedLM
from lmprog.trace import Trace, trace, traced
from lmprog.usage import track

CAPITALS = {"France": "Paris", "Italy": "Rome", "Peru": "Lima", "Spain": "Madrid"}


@lm_function
def capital(country: str) -> str:
    """Name the capital city of the country."""


@lm_function(max_retries=1)
def population(country: str) -> int:
    """Estimate the population of the country in millions."""


def answer(messages: list[dict[str, str]]) -> str:
    """The scripted model (module level, so it pickles by reference): the capital, in capitals
    when the instruction says to shout; a population nobody can parse for Atlantis."""
    system, user = messages[0]["content"], messages[-1]["content"]
    country = user.split("country:", 1)[-1].split("\n")[0].strip()
    if system.startswith("Estimate"):
        return "12" if country in CAPITALS else "too many to count"
    city = CAPITALS.get(country, "Unknown")
    return city.upper() if system.startswith("SHOUT") else city


@traced
def pipeline(country: str) -> str:
    if country == "Nowhere":
        raise BudgetExceededError("calls", 3, 3)
    population(country)
    return capital(country)


def where(country: str) -> int:
    return os.getpid()


def city_matches(example: Any, prediction: str) -> bool:
    return bool(prediction.lower() == CAPITALS.get(example["country"], "?").lower())


def any_pid(example: Any, prediction: int) -> bool:
    return isinstance(prediction, int)


def rows(*countries: str) -> list[dict[str, str]]:
    return [{"country": c} for c in countries]


@pytest.fixture(autouse=True)
def scripted(tmp_path: Path) -> Iterator[None]:
    with settings.context(lm=ScriptedLM(answer), cache=False, prompt_dir=tmp_path / "prompts"):
        yield
    capital.reset()


# -- pickling ---------------------------------------------------------------------------------------
SAMPLES: dict[str, Any] = {
    "message": "went wrong",
    "function": "app.classify",
    "file": "app.py",
    "line": 12,
    "raw": "the completion",
    "errors": ["not an int"],
    "attempts": 3,
    "max_tokens": 96,
    "model": "openai/gpt-4o-mini",
    "status_code": 429,
    "retry_after": 1.5,
    "what": "calls",
    "limit": 10,
    "used": 11,
    "result": EvaluationResult([], 1.0, "p", "m", total=3),
    "max_steps": 5,
    "transcript": [{"tool": "search", "arguments": {"query": "x"}, "error": "KeyError: 'x'"}],
}


def every_error_class() -> list[type[BaseException]]:
    found = [
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    ]
    assert len(found) >= 11  # the enumeration finds them (11 when this test was written)
    return sorted(found, key=lambda c: c.__name__)


def make_error(cls: type[BaseException]) -> BaseException:
    """An instance with every parameter of ``cls.__init__`` given a value (a new parameter name
    fails here until SAMPLES has a value for it)."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for name, param in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            if param.kind is param.VAR_POSITIONAL:
                args.append(SAMPLES["message"])
            continue
        assert name in SAMPLES, f"add a sample value for {cls.__name__}({name}=...)"
        if param.kind is param.KEYWORD_ONLY:
            kwargs[name] = SAMPLES[name]
        else:
            args.append(SAMPLES[name])
    return cls(*args, **kwargs)


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda c: c.__name__)
def test_every_lmprog_error_survives_a_pickle_round_trip(cls: type[BaseException]) -> None:
    error = make_error(cls)
    for dumps in (pickle.dumps, cloudpickle.dumps):
        clone = pickle.loads(dumps(error))
        assert type(clone) is cls
        assert str(clone) == str(error) and clone.args == error.args
        attributes = {k: v for k, v in vars(error).items() if k != "result"}
        assert {k: v for k, v in vars(clone).items() if k != "result"} == attributes
        if "result" in vars(error):
            assert repr(clone.result) == repr(error.result)  # type: ignore[attr-defined]


def test_lm_functions_pickle_by_reference_or_by_value() -> None:
    assert pickle.loads(pickle.dumps(capital)) is capital
    assert pickle.loads(cloudpickle.dumps(population)) is population

    @lm_function(max_retries=4, temperature=0.5, name="city", max_tokens=7, constrain=False)
    def local_capital(country: str) -> str:
        """Name the capital city of the country."""

    local_capital.instruction = "Only the city."
    copy = pickle.loads(cloudpickle.dumps(local_capital))
    assert isinstance(copy, LMFunction) and copy is not local_capital
    assert (copy.max_retries, copy.temperature, copy.name, copy.max_tokens) == (4, 0.5, "city", 7)
    assert copy.constrain is False  # regression: the option was lost by a copy sent by value
    assert copy.instruction == "Only the city." and copy.signature_hash == local_capital.signature_hash
    assert copy.messages("Peru") == local_capital.messages("Peru")


def test_spans_and_results_pickle_with_their_lm_function() -> None:
    result = evaluate(pipeline, rows("France", "Atlantis"), city_matches, threads=1, progress=False)
    clone = pickle.loads(pickle.dumps(result))
    assert [r.prediction for r in clone.results] == ["Paris", None]
    assert isinstance(clone.results[1].exception, OutputParseError)
    assert clone.results[1].exception.raw == "too many to count"
    lm_spans = [s for s in clone.results[0].trace.spans if s.kind == "lm"] if clone.results[0].trace else []
    assert [s.obj for s in lm_spans] == [population, capital]
    assert clone.usage == result.usage


# -- process backends ---------------------------------------------------------------------------
def check_run(backend: str, cluster: Any = None) -> None:
    countries = ("France", "Atlantis", "Italy", "Peru", "Spain", "Atlantis")
    capital.instruction = "Name the capital city of the country."
    with track() as scope, trace() as caller_trace:

        @traced
        def outer() -> EvaluationResult:
            return evaluate(
                pipeline,
                rows(*countries),
                city_matches,
                threads=2,
                backend=backend,
                cluster=cluster,
                progress=False,
            )

        result = outer()
    # results in input order, each with its own outcome
    assert [r.example["country"] for r in result.results] == list(countries)
    assert [r.index for r in result.results] == list(range(len(countries)))
    assert [r.prediction for r in result.results] == ["Paris", None, "Rome", "Lima", "Madrid", None]
    assert result.score == pytest.approx(100 * 4 / 6)
    failed = [r for r in result.results if r.error]
    assert [r.index for r in failed] == [1, 5]
    assert all(isinstance(r.exception, OutputParseError) for r in failed)
    assert failed[0].exception.raw == "too many to count" and failed[0].exception.attempts == 2  # type: ignore[union-attr]
    # the spans came back, with their ids from the worker processes, and joined the caller's trace
    worker_spans = [s for r in result.results if r.trace for s in r.trace.spans]
    assert {s.id.split("-")[0] for s in worker_spans}.isdisjoint({f"{os.getpid():x}"})
    outer_span = next(s for s in caller_trace.spans if s.name == "outer")
    pipelines = [s for s in caller_trace.spans if s.name == "pipeline"]
    assert len(pipelines) == len(countries)
    assert all(s.parent_id == outer_span.id for s in pipelines)
    assert {s.id for s in outer_span.children} == {s.id for s in pipelines}
    assert sum(1 for s in caller_trace.spans if s.name == "population") == len(countries)
    # usage: 4 good rows x 2 calls, 2 Atlantis rows x (2 population attempts + 0 capital calls)
    assert result.usage.calls == 4 * 2 + 2 * 2
    assert scope.total == result.usage
    assert sum((s.usage for s in caller_trace.spans), lmprog.Usage()) == result.usage


def test_loky_runs_the_program_in_other_processes_and_brings_everything_back() -> None:
    check_run("loky")


def test_multiprocessing_runs_the_program_in_other_processes_and_brings_everything_back() -> None:
    check_run("multiprocessing")


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_workers_run_under_the_callers_states_and_settings(backend: str) -> None:
    pids = evaluate(where, rows("France", "Italy"), any_pid, threads=2, backend=backend, progress=False)
    assert os.getpid() not in [r.prediction for r in pids.results]

    capital.instruction = "SHOUT the capital city of the country."
    shouted = evaluate(
        capital, rows("France", "Peru"), city_matches, threads=2, backend=backend, progress=False
    )
    assert [r.prediction for r in shouted.results] == ["PARIS", "LIMA"]

    with use_states({capital: State(instruction="Name the capital city.")}):
        plain = evaluate(
            capital, rows("France", "Peru"), city_matches, threads=2, backend=backend, progress=False
        )
    assert [r.prediction for r in plain.results] == ["Paris", "Lima"]


def test_a_budget_error_in_a_worker_ends_the_run_in_the_caller() -> None:
    with pytest.raises(BudgetExceededError) as info:
        evaluate(
            pipeline,
            rows("France", "Nowhere", "Italy"),
            city_matches,
            threads=2,
            backend="loky",
            progress=False,
        )
    assert (info.value.what, info.value.limit, info.value.used) == ("calls", 3, 3)


class _Locked:
    """A script holding a lock: it cannot be sent to another process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, messages: list[dict[str, str]]) -> str:
        return "Paris"


def test_an_lm_that_cannot_reach_the_workers_is_a_clear_error() -> None:
    with settings.context(lm=ScriptedLM(_Locked())), pytest.raises(UsageError) as info:
        evaluate(capital, rows("France"), city_matches, threads=2, backend="loky", progress=False)
    message = str(info.value)
    assert "lm=ScriptedLM('scripted')" in message and "loky" in message and '"threading"' in message
    assert isinstance(Trace(), Trace)


class LoggedAnswer:
    """The scripted model, appending one line per request to a file every process can reach."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, messages: list[dict[str, str]]) -> str:
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()}\n")
        return answer(messages)


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_a_budget_smaller_than_the_data_is_never_overrun_by_worker_processes(
    backend: str, tmp_path: Path
) -> None:
    log = tmp_path / "requests.log"
    cap = 3
    budget = Budget(max_calls=cap)
    data = rows(*(["France", "Italy", "Peru", "Spain"] * 4))
    with settings.context(lm=ScriptedLM(LoggedAnswer(log)), cache=False), track(budget.check) as scope:
        with pytest.raises(BudgetExceededError) as info:
            evaluate(capital, data, city_matches, threads=3, backend=backend, progress=False)
    assert (info.value.what, info.value.limit) == ("max_calls", cap)
    # the workers reserve every request from one ledger: no more than the cap reached the model
    sent = [int(line) for line in log.read_text().split()]
    assert 1 <= len(sent) <= cap
    assert os.getpid() not in sent
    assert scope.total.requests <= cap


def test_under_the_budget_worker_processes_count_every_request_once() -> None:
    budget = Budget(max_calls=8)
    with track(budget.check) as scope:
        result = evaluate(
            capital, rows("France", "Italy", "Peru", "Spain") * 2, city_matches, threads=3, backend="loky"
        )
    assert result.score == 100.0
    assert result.usage.requests == 8 and scope.total == result.usage
