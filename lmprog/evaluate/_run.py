"""Parallel evaluation: run a program on every example, score it, collect traces and usage.

Examples run in parallel through joblib. With thread backends (the default) each example runs in
a copy of the caller's context, so everything set with ``lmprog.context(...)``, state overrides
from ``use_states`` and the current trace span are seen inside the program exactly as in the
caller. Process and cluster backends (``"loky"``, ``"multiprocessing"``, a registered dask or ray
backend) get a copy of the caller's settings (the LM included, which must pickle), of the states
set on lm_functions and of the ``use_states`` overrides; the program and the metric must pickle
(lm_functions pickle by reference to their module). Each example's spans and usage come back:
the spans join the caller's trace under its current span, the usage the caller's ``track()``
scopes (a budget cap is checked in the caller as results arrive, not before each request of a
worker). An LM object sent to a worker is a copy: its ``usage`` and a ScriptedLM's ``calls`` stay
in the worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import inspect
import logging
import math
import numbers
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lmprog import settings
from lmprog.data import Example, load_dataset, select_inputs
from lmprog.errors import BudgetExceededError, DatasetError, EvaluationError, UsageError
from lmprog.evaluate._results import EvaluationResult, ExampleResult, ProgressBar, usage_from_spans
from lmprog.evaluate._workers import portable, settings_snapshot, streams, uses_threads
from lmprog.function import LMFunction, State, states_in_force, use_states
from lmprog.metrics import Feedback
from lmprog.trace import Span, Trace, adopt, trace
from lmprog.usage import Usage, record

__all__ = ["EvaluationResult", "ExampleResult", "evaluate", "usage_from_spans"]

logger = logging.getLogger("lmprog.evaluate")


def evaluate(
    program: Callable[..., Any],
    data: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    metric: Callable[..., float | bool | Feedback],
    *,
    threads: int = 8,
    backend: Any = None,
    max_errors: int | None = None,
    progress: bool | Literal["auto"] = "auto",
    display_table: bool | int = False,
) -> EvaluationResult:
    """Run ``program`` on every example of ``data`` and score each prediction with ``metric``.

    ``data`` is a list of dicts/Examples or a data file (see :func:`~lmprog.data.load_dataset`).
    Each example's inputs are its keys matching the program's parameters (or the keys marked with
    ``Example.with_inputs``); ``program(**inputs)`` runs, awaited when it is async.
    ``metric(example, prediction, trace)`` scores it: it returns a bool or a number in [0, 1]
    or a :class:`~lmprog.metrics.Feedback` (a score with a text saying why, kept as the result's
    ``feedback``; a failed example gets one holding its error) (``trace`` is passed only to a metric
    that takes a third argument or one named ``trace``); any
    other value (5, -1, NaN, ``"yes"``) fails that example with an error naming the metric and the
    value. Each :class:`ExampleResult` keeps that as ``value`` and shows it as ``score`` on 0-100,
    the scale of every score (``EvaluationResult.score`` is the mean, 0-100).

    ``threads`` examples run at once on joblib ``backend``: ``None`` means threads unless a
    ``joblib.parallel_config(backend=...)`` block selects another; a name (``"threading"``,
    ``"sequential"``, ``"loky"``, a registered ``"dask"``/``"ray"``) or a joblib backend object
    picks one explicitly.

    A failing example (missing input, program error, metric error) is recorded with score 0 and
    the run goes on (a ``BudgetExceededError`` stops the run and propagates); once more than
    ``max_errors`` examples failed it stops and raises
    :class:`~lmprog.errors.EvaluationError` whose ``.result`` holds the partial results.

    ``progress``: a progress bar with the running score on stderr: ``"auto"`` when stderr is a
    terminal, ``True`` always, ``False`` never. ``display_table``: print the summary table (of
    that many rows when an int) to stderr at the end.
    """
    if not isinstance(threads, int) or threads < 1:
        raise UsageError(f"threads must be an int >= 1, got {threads!r}")
    if max_errors is not None and max_errors < 0:
        raise UsageError(f"max_errors must be >= 0 or None, got {max_errors}")
    if not callable(metric):
        raise UsageError(
            f"metric must be callable as metric(example, prediction, trace=None), got {metric!r}"
        )
    examples = load_dataset(data)
    spec = _program_inputs(program)
    program_name = _name(program)
    metric_name = _name(metric)
    in_process = threads == 1 or uses_threads(backend)
    task = _Task(
        program=program,
        metric=metric,
        metric_name=metric_name,
        metric_mode=_metric_mode(metric),
        inputs=spec,
        context=contextvars.copy_context() if in_process else None,
        settings_values=None if in_process else settings_snapshot(backend),
        states=None if in_process else states_in_force(),
    )

    from joblib import Parallel, delayed

    # A backend that cannot stream results (multiprocessing) returns them all at the end.
    return_as = "generator_unordered" if in_process or streams(backend) else "list"
    parallel = Parallel(n_jobs=threads, backend=backend, prefer="threads", return_as=return_as)
    done: dict[int, ExampleResult] = {}
    errors = 0
    score_sum = 0.0
    start = time.perf_counter()

    def partial() -> EvaluationResult:
        ordered = [done[i] for i in sorted(done)]
        wall = time.perf_counter() - start
        return EvaluationResult(ordered, wall, program_name, metric_name, total=len(examples))

    with ProgressBar(progress, len(examples), program_name) as bar:
        outcomes = parallel(delayed(task)(i, ex) for i, ex in enumerate(examples))
        try:
            for outcome in outcomes:
                if not in_process:  # what ran in another process joins this trace and usage
                    adopt((outcome.spans or []) + outcome.metric_spans)
                    record(outcome.usage)
                if isinstance(outcome.exception, BudgetExceededError):
                    raise outcome.exception  # a budget cap ends the whole run, not one example
                result = outcome.result()
                done[result.index] = result
                errors += result.error is not None
                score_sum += result.score
                bar.advance(score_sum / len(done), errors)
                if max_errors is not None and errors > max_errors:
                    first = next(r for r in sorted(done.values(), key=lambda r: r.index) if r.error)
                    raise EvaluationError(
                        f"evaluation of {program_name} stopped: {errors} example(s) failed, more than "
                        f"max_errors={max_errors}; first: {first.describe_error()}",
                        partial(),
                    )
        finally:
            _close(outcomes)

    final = partial()
    if not examples:
        logger.warning("evaluate(%s): the data holds no examples", program_name)
    logger.info(
        "evaluate(%s, %s): %.1f on %d example(s), %d error(s), %.1fs",
        program_name,
        metric_name,
        final.score,
        len(examples),
        errors,
        final.wall_time,
    )
    if display_table:
        from rich.console import Console

        rows = 10 if display_table is True else int(display_table)
        Console(stderr=True).print(final.renderable(rows))
    return final


# -- one example ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Inputs:
    names: tuple[str, ...]
    optional: frozenset[str]
    extra_ok: bool


@dataclass
class _Outcome:
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


@dataclass
class _Task:
    program: Callable[..., Any]
    metric: Callable[..., float | bool | Feedback]
    metric_name: str
    metric_mode: str
    inputs: _Inputs
    context: contextvars.Context | None
    settings_values: dict[str, Any] | None
    states: dict[LMFunction[..., Any], State] | None = None

    def __call__(self, index: int, example: Example) -> _Outcome:
        if self.context is not None:
            return settings.run_in_context(self.context, self._run, index, example)
        # In another process: the caller's settings and lm_function states, in a fresh context.
        with settings.context(**(self.settings_values or {})), use_states(self.states or {}):
            return self._run(index, example)

    def _run(self, index: int, example: Example) -> _Outcome:
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
                prediction = _call(self.program, kwargs)
            except Exception as e:
                exception, error = e, _describe(e)
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
                    exception, error = e, f"metric {self.metric_name} failed: {_describe(e)}"
            metric_spans = metric_trace.spans
            usage = usage + usage_from_spans(metric_spans)
        if error is not None:  # what went wrong is the feedback (a reply that did not parse...)
            feedback = Feedback(0.0, error)
        in_process = self.context is not None
        if not in_process and exception is not None:
            exception = portable(exception)
        return _Outcome(
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


def _call(program: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
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


def _close(outcomes: Any) -> None:
    """Stop joblib's generator: pending examples are cancelled (the ones running finish)."""
    close = getattr(outcomes, "close", None)
    if close is None:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tasks (have been|which were)", category=UserWarning)
        close()


def _describe(e: BaseException) -> str:
    return str(e) if isinstance(e, DatasetError) else f"{type(e).__name__}: {e}"


# -- set-up helpers -------------------------------------------------------------------------------
def _program_inputs(program: Callable[..., Any]) -> _Inputs:
    """The parameters a program takes from an example."""
    if not callable(program):
        raise UsageError(f"program must be callable, got {program!r}")
    func = getattr(program, "__func__", program)
    if isinstance(func, LMFunction):
        names = tuple(func.signature.input_names)
        params = inspect.signature(func.fn).parameters
        optional = {n for n in names if n in params and params[n].default is not inspect.Parameter.empty}
        return _Inputs(names, frozenset(optional), extra_ok=False)
    try:
        params = inspect.signature(program).parameters
    except (TypeError, ValueError) as e:
        raise UsageError(f"cannot read the parameters of {program!r}: {e}") from e
    P = inspect.Parameter
    positional_only = [
        p.name for p in params.values() if p.kind is P.POSITIONAL_ONLY and p.default is P.empty
    ]
    if positional_only:
        raise UsageError(
            f"{_name(program)} takes positional-only parameter(s) {positional_only}; evaluate passes "
            "each example's inputs by keyword"
        )
    named = [p for p in params.values() if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)]
    return _Inputs(
        names=tuple(p.name for p in named),
        optional=frozenset(p.name for p in named if p.default is not P.empty),
        extra_ok=any(p.kind is P.VAR_KEYWORD for p in params.values()),
    )


def _metric_mode(metric: Callable[..., Any]) -> str:
    """How to pass the trace: as a third positional argument, as ``trace=``, or not at all."""
    try:
        params = list(inspect.signature(metric).parameters.values())
    except (TypeError, ValueError):
        return "positional"
    P = inspect.Parameter
    if any(p.kind is P.VAR_POSITIONAL for p in params):
        return "positional"
    positional = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 3:
        return "positional"
    if any(p.name == "trace" or p.kind is P.VAR_KEYWORD for p in params):
        return "keyword"
    return "none"


def _name(obj: Any) -> str:
    return str(getattr(obj, "__name__", None) or getattr(obj, "name", None) or type(obj).__name__)
