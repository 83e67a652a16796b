"""Micro-benchmarks, lmprog against DSPy, measured in one process and reported as ratios.

    python benchmarks/micro.py OUT.json [--quick]

- per-call framework overhead: an lm_function on ``lmprog.testing.ScriptedLM`` against
  ``dspy.Predict`` on ``dspy.utils.DummyLM`` (both: build the prompt, "call" an LM that answers at
  once, parse the reply), median time per call over several rounds;
- ``import lmprog`` against ``import dspy``: fresh interpreters, several runs, median;
- evaluation throughput against raw sequential calls: ``lmprog.evaluate`` / ``dspy.Evaluate``
  over an LM with a fixed simulated latency, against the same number of raw LM calls in a loop
  (above 1: the evaluator's parallelism pays; below 1: its overhead costs).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

LABELS = ("abbreviation", "description", "entity", "human", "location", "number")
QUESTIONS = [f"Question number {i}: who wrote the book with {i} pages?" for i in range(4096)]


def _median_per_call(run: Any, calls: int, rounds: int) -> float:
    times = []
    for r in range(rounds):
        t0 = time.perf_counter()
        run(calls, r)
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times)


# -- per-call overhead -------------------------------------------------------------------------------
def lmprog_per_call(calls: int, rounds: int) -> float:
    import lmprog
    from lmprog.testing import ScriptedLM

    @lmprog.lm_function
    def classify_question(
        question: str,
    ) -> Literal["abbreviation", "description", "entity", "human", "location", "number"]:
        """Classify the question by the kind of answer it asks for.

        Args:
            question: a question.
        """

    lm = ScriptedLM(lambda messages: {"output": "human"})

    def run(n: int, r: int) -> None:
        with lmprog.context(lm=lm, cache=False, load_prompts=False):
            for i in range(n):
                assert classify_question(question=QUESTIONS[(r * n + i) % len(QUESTIONS)]) == "human"

    run(5, 0)  # warm-up (first-call imports)
    return _median_per_call(run, calls, rounds)


def dspy_per_call(calls: int, rounds: int) -> float:
    import dspy
    from dspy.utils import DummyLM

    class ClassifyQuestion(dspy.Signature):
        """Classify the question by the kind of answer it asks for."""

        question: str = dspy.InputField(desc="a question.")
        label: Literal["abbreviation", "description", "entity", "human", "location", "number"] = (
            dspy.OutputField()
        )

    predict = dspy.Predict(ClassifyQuestion)

    def run(n: int, r: int) -> None:
        lm = DummyLM([{"label": "human"}] * n)
        with dspy.context(lm=lm):
            for i in range(n):
                assert predict(question=QUESTIONS[(r * n + i) % len(QUESTIONS)]).label == "human"

    run(5, 0)
    return _median_per_call(run, calls, rounds)


# -- import time ---------------------------------------------------------------------------------------
def import_seconds(module: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def python_startup_seconds(runs: int) -> float:
    return import_seconds("sys", runs)


# -- evaluation throughput -------------------------------------------------------------------------------
def lmprog_eval_ratio(n: int, latency: float, threads: int) -> dict[str, float]:
    import lmprog
    from lmprog.testing import ScriptedLM

    def respond(messages: Any) -> dict[str, str]:
        time.sleep(latency)
        return {"output": "human"}

    @lmprog.lm_function
    def classify_question(
        question: str,
    ) -> Literal["abbreviation", "description", "entity", "human", "location", "number"]:
        """Classify the question by the kind of answer it asks for."""

    data = [{"question": q, "label": "human"} for q in QUESTIONS[:n]]
    lm = ScriptedLM(respond)
    messages = [{"role": "user", "content": "x"}]
    t0 = time.perf_counter()
    for _ in range(n):
        lm.complete(messages)
    raw = time.perf_counter() - t0
    walls = []
    with lmprog.context(lm=lm, cache=False, load_prompts=False):
        for subset in (data[:4], data, data, data):  # a warm-up, then three timed runs
            t0 = time.perf_counter()
            res = lmprog.evaluate(
                classify_question,
                subset,
                lambda ex, pred: pred == ex["label"],
                threads=threads,
                progress=False,
            )
            walls.append(time.perf_counter() - t0)
            assert res.score == 100.0, res.score
    wall = statistics.median(walls[1:])
    return {"raw_seconds": raw, "eval_seconds": wall, "ratio": raw / wall}


def dspy_eval_ratio(n: int, latency: float, threads: int) -> dict[str, float]:
    import dspy
    from dspy.utils import DummyLM

    class SlowLM(DummyLM):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            time.sleep(latency)
            return super().forward(*args, **kwargs)

    class ClassifyQuestion(dspy.Signature):
        """Classify the question by the kind of answer it asks for."""

        question: str = dspy.InputField()
        label: Literal["abbreviation", "description", "entity", "human", "location", "number"] = (
            dspy.OutputField()
        )

    data = [dspy.Example(question=q, label="human").with_inputs("question") for q in QUESTIONS[:n]]
    raw_lm = SlowLM([{"label": "human"}] * n)
    t0 = time.perf_counter()
    for _ in range(n):
        raw_lm.forward(messages=[{"role": "user", "content": "x"}])
    raw = time.perf_counter() - t0
    lm = SlowLM({q: {"label": "human"} for q in QUESTIONS[:n]})
    walls = []
    with dspy.context(lm=lm):
        for subset in (data[:4], data, data, data):  # a warm-up, then three timed runs
            t0 = time.perf_counter()
            res = dspy.Evaluate(
                devset=subset,
                metric=lambda ex, pred, trace=None: pred.label == ex.label,
                num_threads=threads,
                display_progress=False,
            )(dspy.Predict(ClassifyQuestion))
            walls.append(time.perf_counter() - t0)
            assert res.score == 100.0, res.score
    wall = statistics.median(walls[1:])
    return {"raw_seconds": raw, "eval_seconds": wall, "ratio": raw / wall}


def main() -> None:
    out = Path(sys.argv[1])
    quick = "--quick" in sys.argv
    calls, rounds = (200, 5) if quick else (1000, 7)
    import_runs = 5 if quick else 9
    results: dict[str, Any] = {"config": {"calls": calls, "rounds": rounds, "import_runs": import_runs}}

    startup = python_startup_seconds(import_runs)
    lmprog_import = import_seconds("lmprog", import_runs)
    dspy_import = import_seconds("dspy", import_runs)
    results["import"] = {
        "python_startup_s": round(startup, 4),
        "lmprog_s": round(lmprog_import, 4),
        "dspy_s": round(dspy_import, 4),
        "lmprog_net_s": round(lmprog_import - startup, 4),
        "dspy_net_s": round(dspy_import - startup, 4),
        "dspy_over_lmprog": round((dspy_import - startup) / max(1e-9, lmprog_import - startup), 2),
    }

    lp = lmprog_per_call(calls, rounds)
    dp = dspy_per_call(calls, rounds)
    results["per_call"] = {
        "lmprog_ms": round(lp * 1000, 4),
        "dspy_ms": round(dp * 1000, 4),
        "dspy_over_lmprog": round(dp / lp, 2),
    }

    n, latency = (64, 0.02) if quick else (256, 0.02)
    results["evaluation"] = {"examples": n, "simulated_latency_s": latency}
    for threads in (1, 8):
        lr = lmprog_eval_ratio(n, latency, threads)
        dr = dspy_eval_ratio(n, latency, threads)
        results["evaluation"][f"threads_{threads}"] = {
            "lmprog": {k: round(v, 4) for k, v in lr.items()},
            "dspy": {k: round(v, 4) for k, v in dr.items()},
        }
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
