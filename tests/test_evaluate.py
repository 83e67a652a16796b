from __future__ import annotations

import asyncio
import pickle
import random
import threading
import time

import joblib
import pytest

import lmprog
from lmprog import lm_function, settings
from lmprog.data import Example, load_dataset
from lmprog.errors import EvaluationError, TransientLMError, UsageError
from lmprog.evaluate import EvaluationResult, ExampleResult, evaluate
from lmprog.function import State, use_states
from lmprog.metrics import exact_match
from lmprog.testing import ScriptedLM
from lmprog.trace import Trace, current_span, trace, traced
from lmprog.usage import Usage, track


def rows(n: int) -> list[dict[str, str]]:
    return [{"question": f"q{i}", "answer": f"Q{i}"} for i in range(n)]


def shout(question: str) -> str:
    time.sleep(random.random() / 200)
    return question.upper()


# -- running -------------------------------------------------------------------------------------
def test_results_keep_input_order_under_threads():
    result = evaluate(shout, rows(40), exact_match, threads=8, progress=False)
    assert isinstance(result, EvaluationResult)
    assert [r.index for r in result.results] == list(range(40))
    assert [r.prediction for r in result.results] == [f"Q{i}" for i in range(40)]
    assert result.score == 100.0 and result.errors == []
    assert all(isinstance(r, ExampleResult) and r.seconds >= 0 for r in result.results)
    assert result.wall_time > 0
    assert repr(result).startswith("EvaluationResult(score=100.00, n=40, errors=0")


def test_examples_given_to_the_metric_have_their_inputs_marked():
    seen: list[Example] = []

    def metric(example, prediction):
        seen.append(example)
        return prediction == example.labels()["answer"]

    result = evaluate(shout, rows(3), metric, threads=2, progress=False)
    assert result.score == 100.0
    assert all(ex.inputs() == {"question": ex.question} for ex in seen)
    assert result.results[0].example == rows(3)[0]


def test_score_is_the_mean_over_examples_in_percent():
    data = rows(4)
    data[1]["answer"] = "wrong"
    assert evaluate(shout, data, exact_match, progress=False).score == 75.0
    assert evaluate(shout, [], exact_match, progress=False).score == 0.0


def test_data_may_be_a_file(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "a", "answer": "A"}\n{"question": "b", "answer": "x"}\n', encoding="utf-8")
    result = evaluate(shout, path, exact_match, progress=False)
    assert result.scores == [100.0, 0.0]


# -- errors --------------------------------------------------------------------------------------
def flaky(question: str) -> str:
    if question in {"q3", "q7"}:
        raise ValueError(f"cannot handle {question}")
    return question.upper()


def test_an_error_is_recorded_and_does_not_stop_the_run():
    result = evaluate(flaky, rows(10), exact_match, threads=4, progress=False)
    assert len(result.results) == 10
    assert [r.index for r in result.errors] == [3, 7]
    bad = result.results[3]
    assert bad.score == 0.0 and bad.prediction is None
    assert bad.error == "ValueError: cannot handle q3"
    assert isinstance(bad.exception, ValueError)
    assert result.score == 80.0


def test_missing_input_is_an_error_naming_the_row(tmp_path):
    data = [*rows(2), {"query": "typo", "answer": "x"}]
    result = evaluate(shout, data, exact_match, progress=False)
    assert result.results[2].error == "data[2]: missing input(s) 'question' (the row has: query, answer)"
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "a", "answer": "A"}\n{"q": "b"}\n', encoding="utf-8")
    result = evaluate(shout, path, exact_match, progress=False)
    assert result.results[1].error.startswith(f"{path}, line 2: missing input(s) 'question'")
    assert result.results[0].ok


def test_max_errors_stops_with_partial_results():
    with pytest.raises(EvaluationError, match=r"3 example\(s\) failed, more than max_errors=2") as info:
        evaluate(lambda question: 1 / 0, rows(50), exact_match, threads=1, max_errors=2, progress=False)
    partial = info.value.result
    assert isinstance(partial, EvaluationResult)
    assert [r.index for r in partial.results] == [0, 1, 2]
    assert partial.total == 50
    assert "ZeroDivisionError" in str(info.value) and "data[0]" in str(info.value)


def test_max_errors_not_exceeded_runs_everything():
    result = evaluate(flaky, rows(10), exact_match, threads=3, max_errors=2, progress=False)
    assert len(result.errors) == 2 and len(result.results) == 10


def test_max_errors_zero_stops_early_under_threads():
    started: list[str] = []

    def slow_fail(question: str) -> str:
        started.append(question)
        time.sleep(0.01)
        raise RuntimeError("down")

    with pytest.raises(EvaluationError) as info:
        evaluate(slow_fail, rows(200), exact_match, threads=2, max_errors=0, progress=False)
    assert 1 <= len(info.value.result.results) < 200
    assert len(started) < 200


def test_a_metric_that_raises_is_that_examples_error():
    def picky(example, prediction):
        if example.question == "q1":
            raise KeyError("gold")
        return 1.0

    result = evaluate(shout, rows(3), picky, progress=False)
    bad = result.results[1]
    assert bad.error == "metric picky failed: KeyError: 'gold'"
    assert bad.prediction == "Q1" and bad.score == 0.0
    assert result.scores == [100.0, 0.0, 100.0]


def test_a_metric_must_return_a_number():
    result = evaluate(shout, rows(1), lambda ex, pred: "yes", progress=False)
    assert "metric <lambda> failed: TypeError: returned 'yes'" in result.results[0].error


@pytest.mark.parametrize("value", [5, 1.5, -0.25, 100, float("nan"), float("inf")])
def test_a_metric_value_outside_0_1_fails_that_example_naming_the_metric_and_the_value(value):
    def graded(example, prediction):
        return value if example.question == "q1" else True

    result = evaluate(shout, rows(3), graded, progress=False)
    bad = result.results[1]
    assert bad.error == (
        f"metric graded failed: ValueError: returned {value!r}, not a score in [0, 1]: a metric returns "
        "a bool or a number from 0 to 1 (divide a count or a grade by its maximum)"
    )
    assert result.values == [1.0, 0.0, 1.0] and bad.value == 0.0
    assert result.score == pytest.approx(200 / 3)  # never 500 or NaN
    with pytest.raises(EvaluationError, match=r"metric graded failed: ValueError: returned"):
        evaluate(shout, rows(3), graded, progress=False, max_errors=0)


@pytest.mark.parametrize("value", [True, False, 0, 1, 0.0, 1.0, 0.5])
def test_booleans_and_numbers_in_0_1_are_scores(value):
    result = evaluate(shout, rows(2), lambda ex, pred: value, progress=False)
    assert result.errors == [] and result.values == [float(value)] * 2
    assert result.scores == [100 * float(value)] * 2


def test_an_optimization_with_a_metric_out_of_range_stops_with_the_first_errors():
    @lm_function
    def echo(question: str) -> str:
        """Repeat the question."""

    def five(example, prediction):
        return 5

    with lmprog.context(lm=ScriptedLM(lambda m: "x"), load_prompts=False):
        with pytest.raises(EvaluationError) as info:
            lmprog.optimize(echo, rows(4), five, optimizer="bootstrap", save=False, progress=False)
    assert "4 of 4 example(s) failed" in str(info.value)
    assert "metric five failed: ValueError: returned 5, not a score in [0, 1]" in str(info.value)


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError, match="threads"):
        evaluate(shout, rows(1), exact_match, threads=0)
    with pytest.raises(UsageError, match="positional-only"):
        evaluate(lambda question, /: question, rows(1), exact_match)
    with pytest.raises(UsageError, match="metric must be callable"):
        evaluate(shout, rows(1), "exact_match")  # type: ignore[arg-type]


def test_evaluation_error_pickles():
    err = EvaluationError("stopped", EvaluationResult([], total=3))
    clone = pickle.loads(pickle.dumps(err))
    assert str(clone) == "stopped" and clone.result.total == 3


# -- inputs --------------------------------------------------------------------------------------
def test_optional_parameters_and_marked_inputs():
    def greet(name: str, punctuation: str = "!", **extra: str) -> str:
        return f"hi {name}{punctuation}{''.join(extra.values())}"

    data = [
        {"name": "ann", "answer": "hi ann!"},
        Example(name="bob", punctuation="?", answer="hi bob?"),
        Example(name="cy", tone=".", answer="hi cy!.").with_inputs("name", "tone"),
    ]
    result = evaluate(greet, data, exact_match, progress=False)
    assert [r.prediction for r in result.results] == ["hi ann!", "hi bob?", "hi cy!."]


def test_methods_are_programs():
    class Shouter:
        def run(self, question: str) -> str:
            return question.upper()

    assert evaluate(Shouter().run, rows(3), exact_match, progress=False).score == 100.0


# -- metrics with traces -------------------------------------------------------------------------
@traced
def helper(text: str) -> str:
    return text.upper()


@traced
def pipeline(question: str) -> str:
    return helper(text=question)


def test_the_metric_receives_the_examples_trace():
    seen: dict[str, Trace] = {}

    def metric(example, prediction, trace=None):
        seen[example.question] = trace
        return len(trace.spans) == 2

    def metric_kw(example, prediction, *, trace):
        return trace is not None

    assert evaluate(pipeline, rows(5), metric, threads=3, progress=False).score == 100.0
    assert evaluate(pipeline, rows(2), metric_kw, progress=False).score == 100.0
    assert {q: [s.inputs for s in t.spans] for q, t in seen.items()}["q2"] == [
        {"question": "q2"},
        {"text": "q2"},
    ]


def test_each_result_has_its_own_call_tree():
    result = evaluate(pipeline, rows(6), exact_match, threads=3, progress=False)
    for i, r in enumerate(result.results):
        (root,) = r.trace.roots
        assert root.name == "pipeline" and root.inputs == {"question": f"q{i}"}
        assert [c.name for c in root.children] == ["helper"]
        assert root.children[0].output == f"Q{i}"
        assert r.usage == Usage()


def test_spans_link_to_the_callers_span_and_trace():
    @traced
    def experiment() -> EvaluationResult:
        return evaluate(pipeline, rows(3), exact_match, threads=3, progress=False)

    with trace() as outer:
        result = experiment()
    (top,) = outer.roots
    assert top.name == "experiment"
    assert sorted(c.inputs["question"] for c in top.children) == ["q0", "q1", "q2"]
    assert all(r.trace.roots[0].parent_id == top.id for r in result.results)
    assert len(outer.spans) == 1 + 3 * 2


# -- context propagation -------------------------------------------------------------------------
def test_settings_set_by_the_caller_are_seen_in_worker_threads():
    main = threading.get_ident()
    seen: list[tuple[float, int]] = []

    def program(question: str) -> str:
        seen.append((settings.current().temperature, threading.get_ident()))
        time.sleep(0.01)
        return question.upper()

    with lmprog.context(temperature=0.7):
        evaluate(program, rows(8), exact_match, threads=4, progress=False)
    assert [t for t, _ in seen] == [0.7] * 8
    assert any(ident != main for _, ident in seen)
    assert settings.current().temperature == 0.0


def test_span_in_a_worker_does_not_leak_into_the_caller():
    evaluate(pipeline, rows(3), exact_match, threads=2, progress=False)
    assert current_span() is None


# -- backends ------------------------------------------------------------------------------------
def thread_ids(backend=None, threads=4):
    idents: list[int] = []

    def program(question: str) -> str:
        idents.append(threading.get_ident())
        return question.upper()

    result = evaluate(program, rows(6), exact_match, threads=threads, backend=backend, progress=False)
    assert result.score == 100.0
    return set(idents)


def test_sequential_backend_runs_in_the_calling_thread():
    assert thread_ids("sequential") == {threading.get_ident()}


def test_parallel_config_selects_the_backend():
    with joblib.parallel_config(backend="sequential"):
        assert thread_ids() == {threading.get_ident()}
    with lmprog.context(temperature=0.3), joblib.parallel_config(backend="threading"):
        temps = evaluate(
            lambda question: settings.current().temperature, rows(3), lambda e, p: p == 0.3, progress=False
        )
    assert temps.score == 100.0


def test_an_explicit_thread_backend_object():
    from joblib.parallel import ThreadingBackend

    assert threading.get_ident() not in thread_ids(ThreadingBackend())


# -- async programs ------------------------------------------------------------------------------
async def ashout(question: str) -> str:
    await asyncio.sleep(random.random() / 200)
    return question.upper()


@traced
async def apipeline(question: str) -> str:
    return helper(text=await ashout(question))


def test_async_programs_are_awaited():
    result = evaluate(ashout, rows(6), exact_match, threads=3, progress=False)
    assert result.score == 100.0
    traced_result = evaluate(apipeline, rows(3), exact_match, progress=False)
    assert traced_result.score == 100.0
    assert [s.name for s in traced_result.results[1].trace.spans] == ["apipeline", "helper"]


def test_async_program_from_inside_a_running_loop():
    async def main() -> EvaluationResult:
        return evaluate(ashout, rows(2), exact_match, threads=1, progress=False)

    assert asyncio.run(main()).score == 100.0


# -- reporting -----------------------------------------------------------------------------------
def test_summary_is_a_compact_table():
    result = evaluate(flaky, rows(12), exact_match, progress=False)
    text = result.summary(rows=5)
    assert "flaky / exact_match: 83.3 on 12 example(s), 2 error(s)" in text
    assert "data[3]: ValueError: cannot handle q3" in text
    assert "question='q0'" in text and "'Q0'" in text
    assert "7 more" in text
    assert all(len(line) <= 110 for line in text.splitlines())


def test_progress_bar_is_quiet_unless_asked(capsys):
    evaluate(shout, rows(3), exact_match, progress="auto")
    assert capsys.readouterr().err == ""  # stderr is not a terminal under pytest
    evaluate(shout, rows(3), exact_match, progress=False, display_table=False)
    assert capsys.readouterr().err == ""
    evaluate(shout, rows(3), exact_match, progress=True)
    assert "score 100.0" in capsys.readouterr().err
    evaluate(shout, rows(3), exact_match, progress=False, display_table=2)
    err = capsys.readouterr().err
    assert "shout / exact_match: 100.0" in err and "1 more" in err


def test_load_dataset_rows_round_trip_through_evaluate():
    data = load_dataset(rows(3), inputs=["question"])
    result = evaluate(shout, data, exact_match, progress=False)
    assert [r.example for r in result.results] == data


@traced
def shout_with_temperature(question: str) -> str:
    return f"{question.upper()}|{settings.current().temperature}"


@pytest.mark.slow
def test_process_backend_gets_the_callers_settings_and_returns_traces():
    def metric(example, prediction, trace):
        return prediction.split("|")[0] == example.answer and len(trace.spans) == 1

    with lmprog.context(temperature=0.4):
        result = evaluate(shout_with_temperature, rows(4), metric, threads=2, backend="loky", progress=False)
    assert result.score == 100.0
    assert [r.prediction for r in result.results] == [f"Q{i}|0.4" for i in range(4)]
    assert result.results[2].trace.roots[0].inputs == {"question": "q2"}


# -- with lm_functions and ScriptedLM ------------------------------------------------------------
CAPITALS = {"France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Peru": "Lima"}


@lm_function
def capital(country: str) -> str:
    """Name the capital city of the country."""


@lm_function
async def acapital(country: str) -> str:
    """Name the capital city of the country."""


@lm_function(max_retries=1)
def population(country: str) -> int:
    """Estimate the population of the country in millions."""


@traced
def geo(country: str) -> str:
    return capital(country=country).strip()


def country_in(messages) -> str:
    text = " ".join(m["content"] for m in messages)
    return next(c for c in CAPITALS if c in text)


def capitals_lm() -> ScriptedLM:
    return ScriptedLM(lambda messages: {"output": CAPITALS[country_in(messages)]})


def countries() -> list[dict[str, str]]:
    return [{"country": c, "answer": a} for c, a in CAPITALS.items()]


def test_each_trace_holds_the_program_and_its_lm_call():
    lm = capitals_lm()
    with lmprog.context(lm=lm):
        result = evaluate(geo, countries(), exact_match, threads=4, progress=False)
    assert result.score == 100.0
    for r in result.results:
        (root,) = r.trace.roots
        assert (root.name, root.kind, root.inputs) == ("geo", "traced", {"country": r.example.country})
        (call,) = root.children
        assert (call.name, call.kind, call.inputs) == ("capital", "lm", {"country": r.example.country})
        assert call.output == r.prediction == CAPITALS[r.example.country]
        assert r.trace.lm_spans() == [call]


def test_usage_totals_match_the_lm():
    lm = capitals_lm()
    with lmprog.context(lm=lm):
        result = evaluate(geo, countries(), exact_match, threads=4, progress=False)
    usage = result.usage
    assert usage.calls == 4 and usage.requests == 4 and usage.cache_hits == 0
    assert usage.prompt_tokens == lm.usage.prompt_tokens > 0
    assert usage.completion_tokens == lm.usage.completion_tokens > 0
    assert sum((r.usage for r in result.results), Usage()) == usage
    assert all(r.usage.calls == 1 for r in result.results)


def test_usage_counts_parse_retries_and_failures():
    answers: dict[str, list[str]] = {"France": ["about sixty-eight", "68"], "Peru": ["many", "lots"]}

    def respond(messages):
        return answers[country_in(messages)].pop(0)

    lm = ScriptedLM(respond)
    data = [{"country": "France", "answer": 68}, {"country": "Peru", "answer": 34}]
    with lmprog.context(lm=lm):
        result = evaluate(population, data, exact_match, threads=2, progress=False)
    france, peru = result.results
    assert france.prediction == 68 and france.usage.calls == 2
    assert peru.error is not None and peru.error.startswith("OutputParseError")
    assert peru.usage.calls == 2
    assert result.usage.calls == len(lm.calls) == 4
    assert result.usage.completion_tokens == lm.usage.completion_tokens


def test_failed_requests_count_the_same_in_evaluate_the_lm_spans_and_budgets():
    """One name, one meaning: every request sent counts in ``requests``, failed or not."""
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def respond(messages):
        country = country_in(messages)
        with lock:
            seen[country] = seen.get(country, 0) + 1
            first = seen[country] == 1
        if country == "Peru" or first:  # one failure each, and Peru fails for good
            return TransientLMError("the server had an error", model="scripted", status_code=500)
        return {"output": CAPITALS[country]}

    lm = ScriptedLM(respond, num_retries=1)
    with lmprog.context(lm=lm), track() as scope:
        result = evaluate(geo, countries(), exact_match, threads=4, progress=False)
    assert result.score == 75.0 and [r.ok for r in result.results] == [True, True, True, False]
    # France, Italy, Spain: a failed request, then the answer; Peru: two failed requests
    assert len(lm.calls) == 8
    assert result.usage.requests == lm.usage.requests == scope.total.requests == 8
    assert result.usage.failed_requests == lm.usage.failed_requests == 5
    assert result.usage == lm.usage == scope.total and result.usage.calls == 3
    assert "3 call(s) (8 requests, 5 failed, 0 cached)" in result.summary()
    peru = result.results[3]
    assert peru.usage == Usage(requests=2, failed_requests=2)
    (span,) = peru.trace.lm_spans()
    assert (span.requests, span.failed_requests, span.calls) == (2, 2, 0)
    assert all(r.usage.requests == 2 and r.usage.failed_requests == 1 for r in result.results[:3])


def test_an_lm_function_is_a_program():
    with lmprog.context(lm=capitals_lm()):
        assert evaluate(capital, countries(), exact_match, threads=2, progress=False).score == 100.0
        assert evaluate(acapital, countries(), exact_match, threads=2, progress=False).score == 100.0


def test_state_overrides_reach_worker_threads():
    lm = capitals_lm()
    with lmprog.context(lm=lm), use_states({capital: State(instruction="Reply with the capital only.")}):
        evaluate(geo, countries(), exact_match, threads=4, progress=False)
    assert len(lm.calls) == 4
    assert all("Reply with the capital only." in str(call.messages) for call in lm.calls)
    lm2 = capitals_lm()
    with lmprog.context(lm=lm2):
        evaluate(geo, countries()[:1], exact_match, progress=False)
    assert "Reply with the capital only." not in str(lm2.calls[0].messages)
