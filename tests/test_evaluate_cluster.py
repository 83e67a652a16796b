"""``evaluate`` on a real dask cluster (a LocalCluster of worker processes): the guarantees of the
thread backend (input order, per-example errors, traces and usage brought back), a budget smaller
than the data enforced across workers by the shared ledger, and the response cache shared by
every worker on one machine."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmprog import evaluate, settings
from lmprog.errors import BudgetExceededError, UsageError
from lmprog.optimize import Budget
from lmprog.testing import ScriptedLM
from lmprog.usage import track

distributed = pytest.importorskip("distributed", reason='needs the extra: pip install "lmprog[distributed]"')

from test_evaluate_processes import (  # noqa: E402  (after the skip)
    LoggedAnswer,
    answer,
    capital,
    check_run,
    city_matches,
    rows,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=3, threads_per_worker=2, processes=True, dashboard_address=None, silence_logs=40
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


def wait_idle(client: Any) -> None:
    """Until no task runs on the cluster (tasks the caller stopped waiting for may still run)."""
    deadline = time.monotonic() + 60
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.05)


def requests_in(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_dask_runs_the_program_on_the_workers_and_brings_everything_back(client: Any) -> None:
    with settings.context(lm=ScriptedLM(answer), cache=False):
        check_run("dask", cluster=client)


def test_a_scheduler_address_or_the_default_client_reaches_the_cluster(client: Any, tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    with settings.context(lm=ScriptedLM(LoggedAnswer(log)), cache=False):
        by_address = evaluate(
            capital, rows("France", "Peru"), city_matches, backend="dask", cluster=client.scheduler.address
        )
        by_default = evaluate(capital, rows("Italy"), city_matches, backend="dask", progress=False)
    assert [r.prediction for r in by_address.results + by_default.results] == ["Paris", "Lima", "Rome"]
    workers = set(client.run(os.getpid).values())
    assert set(requests_in(log)) <= workers and os.getpid() not in requests_in(log)


def test_the_cluster_argument_needs_a_cluster_backend(client: Any) -> None:
    with pytest.raises(UsageError, match="cluster="):
        evaluate(capital, rows("France"), city_matches, backend="loky", cluster=client)
    with pytest.raises(UsageError, match=r"distributed\.Client"):
        evaluate(capital, rows("France"), city_matches, backend="dask", cluster=3)


@pytest.mark.parametrize("cap", [1, 5])
def test_a_budget_smaller_than_the_data_is_never_overrun_by_the_workers(
    client: Any, tmp_path: Path, cap: int
) -> None:
    log = tmp_path / "requests.log"
    budget = Budget(max_calls=cap)
    data = rows(*(["France", "Italy", "Peru", "Spain"] * 5))
    with settings.context(lm=ScriptedLM(LoggedAnswer(log)), cache=False), track(budget.check) as scope:
        with pytest.raises(BudgetExceededError) as info:
            evaluate(capital, data, city_matches, threads=6, backend="dask", cluster=client, progress=False)
    wait_idle(client)
    assert (info.value.what, info.value.limit) == ("max_calls", cap)
    # exactly the cap reached the provider, from several worker processes, none from here
    assert len(requests_in(log)) == cap
    assert os.getpid() not in requests_in(log)
    assert scope.total.requests <= cap


def test_under_the_budget_every_request_is_counted_once(client: Any) -> None:
    budget = Budget(max_calls=8)
    with settings.context(lm=ScriptedLM(answer), cache=False), track(budget.check) as scope:
        result = evaluate(
            capital,
            rows("France", "Italy", "Peru", "Spain") * 2,
            city_matches,
            threads=4,
            backend="dask",
            cluster=client,
            progress=False,
        )
    assert result.score == 100.0
    assert result.usage.requests == 8 and scope.total == result.usage


def test_every_worker_uses_the_response_cache_under_cache_dir(client: Any, tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    data = rows("France", "Italy", "Peru", "Spain", "Atlantis")
    model = ScriptedLM(LoggedAnswer(log), cache=True)
    with settings.context(lm=model, cache=True, cache_dir=tmp_path / "cache"):
        first = evaluate(capital, data, city_matches, threads=4, backend="dask", cluster=client)
        second = evaluate(capital, data, city_matches, threads=4, backend="dask", cluster=client)
    assert len(requests_in(log)) == len(data) == first.usage.requests
    assert second.usage.requests == 0 and second.usage.cache_hits == len(data)
    assert [r.prediction for r in second.results] == [r.prediction for r in first.results]
    assert (tmp_path / "cache" / "responses.sqlite").exists()
