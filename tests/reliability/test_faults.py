"""A parallel evaluation and a MIPRO optimization against a provider that fails 30% of the time.

Transient faults (timeouts, 429s, 500s, dropped connections) must change nothing but the number of
requests: same predictions, same scores, same chosen prompts as a run without faults, usage counted
exactly, and every retry waited as the policy says. Bad completions (empty, truncated) may change
answers but never crash a run: every example ends with a score or a recorded error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import lmprog
from lmprog import evaluate
from lmprog.evaluate import EvaluationResult
from lmprog.optimize import optimize
from lmprog.testing import FaultyLM, ScriptedLM
from lmprog.usage import Usage, track

from ._program import DATA, Model, Sleeps, check_backoff, classify, metric, triage

TRANSIENT = dict(timeout=0.075, rate_limit=0.075, server_error=0.075, connection_reset=0.075)
BAD_OUTPUT = dict(
    timeout=0.05, rate_limit=0.05, server_error=0.05, connection_reset=0.05, empty=0.05, truncated=0.05
)


def faulty(inner: ScriptedLM, sleeps: Sleeps, seed: int = 0, **rates: float) -> FaultyLM:
    # retries enough that a 30% fault rate never exhausts them (0.3**11 per call)
    return FaultyLM(inner, seed=seed, num_retries=10, retry_after=3.0, sleep=sleeps, **rates)


def run_eval(lm: Any) -> tuple[EvaluationResult, Any]:
    with lmprog.context(lm=lm, load_prompts=False), track() as scope:
        result = evaluate(triage, DATA, metric, threads=8, progress=False)
    return result, scope.total


def outcome(result: EvaluationResult) -> list[tuple[Any, float, str | None]]:
    return [(r.prediction, r.score, r.error) for r in result.results]


def test_evaluate_under_transient_faults_equals_the_fault_free_run() -> None:
    clean_inner = ScriptedLM(Model())
    clean, clean_scope = run_eval(clean_inner)

    sleeps = Sleeps()
    inner = ScriptedLM(Model())
    lm = faulty(inner, sleeps, **TRANSIENT)
    result, scope = run_eval(lm)

    assert outcome(result) == outcome(clean)
    assert result.score == clean.score == pytest.approx(100 / 3)
    assert not result.errors
    # faults were met, by many threads, and every one was retried as the policy says
    assert 0.2 < lm.raised / len(lm.events) < 0.4
    assert len({e.thread for e in lm.events}) > 1
    waits = check_backoff(lm, sleeps)
    assert waits.get(2, 0) > 0, "some calls failed twice in a row"
    assert sum(waits.values()) == lm.raised
    # usage: independent counts agree exactly, and every request counts, failed ones included
    assert len(inner.calls) == len(clean_inner.calls) == lm.counts["ok"] == lm.usage.requests - lm.raised
    assert lm.usage.failed_requests == lm.raised
    assert result.usage == lm.usage == scope  # spans == LM meter == track() scope (budgets)
    assert result.usage - Usage(requests=lm.raised, failed_requests=lm.raised) == clean.usage == clean_scope
    assert scope.prompt_tokens == clean_scope.prompt_tokens
    assert result.usage.prompt_tokens == sum(
        len(m["content"].split()) for c in inner.calls for m in c.messages
    )


def test_evaluate_under_bad_completions_gives_every_example_a_score_or_an_error() -> None:
    sleeps = Sleeps()
    inner = ScriptedLM(Model())
    lm = faulty(inner, sleeps, **BAD_OUTPUT)
    result, scope = run_eval(lm)

    assert len(result.results) == len(DATA)
    assert [r.index for r in result.results] == list(range(len(DATA)))
    for r in result.results:
        assert (r.error is None) or (r.score == 0 and r.error), r
    assert lm.counts["empty"] > 0 and lm.counts["truncated"] > 0
    # a bad completion is a parse retry: it is counted like any other completion
    parse_retries = sum(s.parse_retries for r in result.results for s in r.trace.spans)
    assert parse_retries > 0
    # an empty completion is a failed request (retried), a truncated one a completion (retried
    # by the lm_function with a larger budget); every request counts, the same everywhere
    assert len(inner.calls) + lm.raised == lm.usage.requests
    assert lm.usage.failed_requests == lm.raised + lm.counts["empty"]
    assert result.usage == lm.usage == scope
    check_backoff(lm, sleeps)


def test_evaluate_records_an_error_for_each_call_that_runs_out_of_retries() -> None:
    sleeps = Sleeps()
    lm = FaultyLM(ScriptedLM(Model()), server_error=0.6, num_retries=1, sleep=sleeps, seed=9)
    result, _ = run_eval(lm)
    assert len(result.results) == len(DATA)
    failed = result.errors
    assert 0 < len(failed) < len(DATA)
    for r in failed:
        assert r.score == 0.0 and r.prediction is None
        assert r.error.startswith("TransientLMError: scripted: ") and "server had an error" in r.error
    assert all(r.score in (0.0, 100.0) for r in result.results if r.ok)
    check_backoff(lm, sleeps)


def run_mipro(lm: Any, tmp_path: Path) -> lmprog.OptimizationResult:
    with lmprog.context(lm=lm, load_prompts=False, cache_dir=tmp_path / "cache"):
        return optimize(
            triage,
            DATA[:12],
            metric,
            valset=DATA[12:24],
            optimizer="mipro",
            save=False,
            apply=False,
            storage=str(tmp_path / "study.db"),
            progress=False,
            num_trials=6,
            minibatch_size=6,
            num_instructions=4,
            num_demo_sets=1,
            full_eval_every=3,
            threads=4,
        )


def test_mipro_under_transient_faults_chooses_what_the_fault_free_run_chooses(tmp_path: Path) -> None:
    clean_inner = ScriptedLM(Model(), cache=True)
    clean = run_mipro(clean_inner, tmp_path / "clean")

    sleeps = Sleeps()
    inner = ScriptedLM(Model(), cache=True)
    lm = faulty(inner, sleeps, seed=1, **TRANSIENT)
    result = run_mipro(lm, tmp_path / "faulty")

    assert lm.raised > 20
    assert result.score == clean.score == 100.0
    assert result.baseline_score == clean.baseline_score
    assert result.states == clean.states
    assert result.states[classify].instruction.startswith("GOOD")
    assert [(c.label, c.score) for c in result.candidates] == [(c.label, c.score) for c in clean.candidates]
    assert result.details.instructions == clean.details.instructions
    assert result.details.trials == clean.details.trials == 6
    # usage: the same completions, plus exactly the failed requests
    assert len(inner.calls) == len(clean_inner.calls) == lm.usage.requests - lm.raised
    assert result.usage.requests == clean.usage.requests + lm.raised == lm.usage.requests
    assert result.usage.failed_requests == lm.usage.failed_requests == lm.raised
    assert result.usage.calls == clean.usage.calls == lm.usage.calls
    assert result.usage.cache_hits == clean.usage.cache_hits == lm.usage.cache_hits
    assert result.usage.prompt_tokens == clean.usage.prompt_tokens == lm.usage.prompt_tokens
    waits = check_backoff(lm, sleeps)
    assert sum(waits.values()) == lm.raised


def test_mipro_under_bad_completions_finishes(tmp_path: Path) -> None:
    sleeps = Sleeps()
    inner = ScriptedLM(Model(), cache=True)
    lm = faulty(inner, sleeps, seed=2, **BAD_OUTPUT)
    result = run_mipro(lm, tmp_path)
    assert lm.counts["empty"] > 0 and lm.counts["truncated"] > 0
    assert result.score is not None and result.baseline_score is not None
    assert result.details.trials == 6
    assert result.usage.requests == lm.usage.requests == len(inner.calls) + lm.raised
    assert result.usage.failed_requests == lm.usage.failed_requests == lm.raised + lm.counts["empty"]
    check_backoff(lm, sleeps)
