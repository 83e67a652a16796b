"""One example of ``evaluate``: the task joblib runs on a worker (the program, then the metric,
under the caller's context, or in another process under a copy of its settings and states and,
on a cluster, the shared budget ledger) and the outcome it sends back."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import inspect
import math
import numbers
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from lmprog import settings
from lmprog.data import Example, select_inputs
from lmprog.errors import DatasetError
from lmprog.evaluate._ledger import LedgerHandle, LedgerScope
from lmprog.evaluate._results import ExampleResult, usage_from_spans
from lmprog.evaluate._workers import portable
from lmprog.function import LMFunction, State, use_states
from lmprog.metrics import Feedback
from lmprog.trace import Span, Trace, annotate, trace
from lmprog.usage import Usage, joined


# -- one example ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Inputs:
    names: tuple[str, ...]
    optional: frozenset[str]
    extra_ok: bool


@dataclass
class Outcome:
    """What a worker sends back (picklable for process backends: spans instead of a Trace)."""

    index: int
    example: Example
    prediction: Any
    value: float
    error: str | None
    exception: BaseException | None
    trace: Trace | None
    spans: list[Span] | None
    usage: Usage
    seconds: float
    metric_spans: list[Span] = dataclasses.field(default_factory=list)
    feedback: Feedback | None = None

    def result(self) -> ExampleResult:
        tr = self.trace if self.trace is not None else Trace.from_spans(list(self.spans or []))
        return ExampleResult(
            example=self.example,
            prediction=self.prediction,
            value=self.value,
            error=self.error,
            trace=tr,
            usage=self.usage,
            seconds=self.seconds,
            index=self.index,
            exception=self.exception,
            feedback=self.feedback,
        )


@dataclass(eq=False)  # hashable: joblib's dask backend keys what it scatters by the function
class Task:
    program: Callable[..., Any]
    metric: Callable[..., float | bool | Feedback]
    metric_name: str
    metric_mode: str
    inputs: Inputs
    context: contextvars.Context | None
    settings_values: dict[str, Any] | None
    states: dict[LMFunction[..., Any], State] | None = None
    ledger: LedgerHandle | None = None

    def __call__(self, index: int, example: Example) -> Outcome:
        if self.context is not None:
            return settings.run_in_context(self.context, self._run, index, example)
        # In another process: the caller's settings and lm_function states, in a fresh context.
        budget = joined(LedgerScope(self.ledger)) if self.ledger is not None else nullcontext()
        with settings.context(**(self.settings_values or {})), use_states(self.states or {}), budget:
            return self._run(index, example)

    def _run(self, index: int, example: Example) -> Outcome:
        spec = self.inputs
        prediction: Any = None
        error: str | None = None
        exception: BaseException | None = None
        value = 0.0
        feedback: Feedback | None = None
        started = time.perf_counter()
        with trace() as program_trace:
            try:
                kwargs = select_inputs(
                    example, spec.names, optional=spec.optional, extra_ok=spec.extra_ok, index=index
                )
                prediction = call_program(self.program, kwargs)
            except Exception as e:
                exception, error = e, describe(e)
        seconds = time.perf_counter() - started
        if example.input_keys is None:
            example = example.with_inputs(*(k for k in spec.names if k in example))
        usage = usage_from_spans(program_trace.spans)
        metric_spans: list[Span] = []
        if exception is None:
            with trace() as metric_trace:
                try:
                    value, feedback = self._score(example, prediction, program_trace)  # in [0, 1]
                except Exception as e:
                    exception, error = e, f"metric {self.metric_name} failed: {describe(e)}"
            metric_spans = metric_trace.spans
            usage = usage + usage_from_spans(metric_spans)
        if error is not None:  # what went wrong is the feedback (a reply that did not parse...)
            feedback = Feedback(0.0, error)
        judge_spans(program_trace, value, feedback)
        in_process = self.context is not None
        if not in_process and exception is not None:
            exception = portable(exception)
        return Outcome(
            index=index,
            example=example,
            prediction=prediction,
            value=value,
            error=error,
            exception=exception,
            trace=program_trace if in_process else None,
            spans=None if in_process else program_trace.spans,
            usage=usage,
            seconds=seconds,
            metric_spans=[] if in_process else metric_spans,
            feedback=feedback,
        )

    def _score(self, example: Example, prediction: Any, tr: Trace) -> tuple[float, Feedback | None]:
        if self.metric_mode == "positional":
            value = self.metric(example, prediction, tr)
        elif self.metric_mode == "keyword":
            value = self.metric(example, prediction, trace=tr)
        else:
            value = self.metric(example, prediction)
        feedback = value if isinstance(value, Feedback) else None
        if feedback is not None:
            value = feedback.score
        if isinstance(value, bool | numbers.Real):
            score = float(value)
            # one NaN would make the mean, and every comparison, NaN; a 5 would count as 500
            if not (math.isfinite(score) and 0.0 <= score <= 1.0):
                raise ValueError(
                    f"returned {'Feedback with score ' if feedback else ''}{value!r}, not a score in "
                    "[0, 1]: a metric returns a bool or a number from 0 to 1 (divide a count or a grade "
                    "by its maximum)"
                )
            return score, feedback
        raise TypeError(
            f"returned {'Feedback with score ' if feedback else ''}{value!r} ({type(value).__name__}); "
            "a metric returns a bool, a number in [0, 1] or a Feedback(score, text)"
        )


def judge_spans(tr: Trace, value: float, feedback: Feedback | None) -> None:
    """Put the example's score and feedback text on the root span(s) of its run, and a
    feedback's per-function texts on the spans of those lm_functions."""
    for root in tr.roots:
        annotate(root, score=value, feedback=feedback.text if feedback is not None else None)
    if feedback is None or not feedback.for_function:
        return
    for s in tr.lm_spans():
        fn = s.obj if isinstance(s.obj, LMFunction) else None
        about = feedback.about(s.name, s.qualname, *((fn.signature.name,) if fn is not None else ()))
        if about is not None:
            annotate(s, feedback=about)


def call_program(program: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    out = program(**kwargs)
    if not inspect.isawaitable(out):
        return out

    async def wait() -> Any:
        return await out

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    # An event loop already runs in this thread (sequential backend called from async code):
    # run the coroutine on a loop of its own in a helper thread, in this context.
    ctx = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(ctx.run, asyncio.run, wait()).result()


def describe(e: BaseException) -> str:
    return str(e) if isinstance(e, DatasetError) else f"{type(e).__name__}: {e}"
