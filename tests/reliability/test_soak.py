"""The long variant of the reliability suite, kept out of CI: more seeds, more data, more kills.

Run it with ``python benchmarks/soak.py`` (or ``pytest -m slow tests/reliability``);
``LMPROG_SOAK_ROUNDS`` sets how many seeds each test goes through (default 5).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmprog.testing import FaultyLM, ScriptedLM

from ._program import DATA, Model, Sleeps, check_backoff
from .test_faults import BAD_OUTPUT, TRANSIENT, faulty, outcome, run_eval, run_mipro
from .test_kill_resume import kill_and_resume

ROUNDS = int(os.environ.get("LMPROG_SOAK_ROUNDS", "5"))

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", range(ROUNDS))
def test_soak_evaluate_under_faults(seed: int) -> None:
    clean, _ = run_eval(ScriptedLM(Model()))
    sleeps = Sleeps()
    inner = ScriptedLM(Model())
    lm = faulty(inner, sleeps, seed=100 + seed, **TRANSIENT)
    result, scope = run_eval(lm)
    assert outcome(result) == outcome(clean)
    assert result.usage == clean.usage == lm.usage
    assert scope.requests == lm.usage.requests + lm.raised == len(inner.calls) + lm.raised
    check_backoff(lm, sleeps)

    bad = FaultyLM(ScriptedLM(Model()), seed=200 + seed, num_retries=3, sleep=Sleeps(), **BAD_OUTPUT)
    result, _ = run_eval(bad)
    assert len(result.results) == len(DATA)
    assert all(r.ok or (r.score == 0 and r.error) for r in result.results)


@pytest.mark.parametrize("seed", range(ROUNDS))
def test_soak_mipro_under_transient_faults(seed: int, tmp_path: Path) -> None:
    clean = run_mipro(ScriptedLM(Model(), cache=True), tmp_path / "clean")
    sleeps = Sleeps()
    lm = faulty(ScriptedLM(Model(), cache=True), sleeps, seed=300 + seed, **TRANSIENT)
    result = run_mipro(lm, tmp_path / "faulty")
    assert result.states == clean.states and result.score == clean.score
    assert [c.score for c in result.candidates] == [c.score for c in clean.candidates]
    assert result.usage.requests == clean.usage.requests + lm.raised
    check_backoff(lm, sleeps)


@pytest.mark.parametrize("seed", range(max(1, ROUNDS // 2)))
def test_soak_killed_again_and_again(seed: int, tmp_path: Path) -> None:
    points = [
        ("calls", 10 + 7 * seed),
        ("trials", 2),
        ("trials", 6 + seed % 3),
        ("trials", 11),
        ("trials", 14),
    ]
    assert kill_and_resume(tmp_path, points) == len(points)
