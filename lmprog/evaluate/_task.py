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
from lmprog.evaluate._cluster import LedgerHandle, LedgerScope
from lmprog.evaluate._results import ExampleResult, usage_from_spans
from lmprog.evaluate._workers import portable
from lmprog.function import LMFunction, State, use_states
from lmprog.trace import Span, Trace, trace
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
        )


@dataclass(eq=False)  # hashable: joblib's dask backend keys what it scatters by the function
class Task:
    program: Callable[..., Any]
    metric: Callable[..., float | bool]
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
                    value = self._score(example, prediction, program_trace)  # in [0, 1]
                except Exception as e:
                    exception, error = e, f"metric {self.metric_name} failed: {describe(e)}"
            metric_spans = metric_trace.spans
            usage = usage + usage_from_spans(metric_spans)
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
        )

    def _score(self, example: Example, prediction: Any, tr: Trace) -> float:
        if self.metric_mode == "positional":
            value = self.metric(example, prediction, tr)
        elif self.metric_mode == "keyword":
            value = self.metric(example, prediction, trace=tr)
        else:
            value = self.metric(example, prediction)
        if isinstance(value, bool | numbers.Real):
            score = float(value)
            # one NaN would make the mean, and every comparison, NaN; a 5 would count as 500
            if not (math.isfinite(score) and 0.0 <= score <= 1.0):
                raise ValueError(
                    f"returned {value!r}, not a score in [0, 1]: a metric returns a bool or a number "
                    "from 0 to 1 (divide a count or a grade by its maximum)"
                )
            return score
        raise TypeError(
            f"returned {value!r} ({type(value).__name__}); a metric returns a bool or a number in [0, 1]"
        )


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
