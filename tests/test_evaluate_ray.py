"""``evaluate`` on a real local ray instance (through ray's joblib backend): the same guarantees as
the other process backends, and a budget smaller than the data held by a ray actor every worker
reserves its requests from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmprog import evaluate, settings
from lmprog.errors import BudgetExceededError
from lmprog.optimize import Budget
from lmprog.testing import ScriptedLM
from lmprog.usage import track

ray = pytest.importorskip("ray", reason='needs the extra: pip install "lmprog[ray]"')

from test_evaluate_cluster import requests_in  # noqa: E402  (after the skip)
from test_evaluate_processes import LoggedAnswer, answer, capital, check_run, city_matches, rows  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", autouse=True)
def ray_instance() -> Iterator[None]:
    tests = str(Path(__file__).parent)
    with pytest.MonkeyPatch.context() as mp:
        # ray's workers import the test modules (lm_functions pickle by reference) and need no token
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p))
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            yield
        finally:
            ray.shutdown()


def test_ray_runs_the_program_in_its_workers_and_brings_everything_back() -> None:
    with settings.context(lm=ScriptedLM(answer), cache=False):
        check_run("ray")


def test_a_budget_smaller_than_the_data_is_never_overrun_by_ray_workers(tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    budget = Budget(max_calls=3)
    data = rows(*(["France", "Italy", "Peru", "Spain"] * 3))
    with settings.context(lm=ScriptedLM(LoggedAnswer(log)), cache=False), track(budget.check):
        with pytest.raises(BudgetExceededError) as info:
            evaluate(capital, data, city_matches, threads=2, backend="ray", progress=False)
    assert (info.value.what, info.value.limit) == ("max_calls", 3)
    # the requests granted never pass the cap (the ones still running may not have logged yet)
    assert 0 < len(requests_in(log)) <= 3
    assert os.getpid() not in requests_in(log)


def test_under_the_budget_ray_counts_every_request_once(tmp_path: Path) -> None:
    with settings.context(lm=ScriptedLM(answer), cache=False), track(Budget(max_calls=4).check) as scope:
        result = evaluate(capital, rows("France", "Italy", "Peru", "Spain"), city_matches, backend="ray")
    assert result.score == 100.0 and result.usage.requests == 4 and scope.total == result.usage
