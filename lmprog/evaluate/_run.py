"""Parallel evaluation: run a program on every example, score it, collect traces and usage.

Examples run in parallel through joblib. With thread backends (the default) each example runs in
a copy of the caller's context, so everything set with ``lmprog.context(...)``, state overrides
from ``use_states`` and the current trace span are seen inside the program exactly as in the
caller. Process and cluster backends (``"loky"``, ``"multiprocessing"``, ``"dask"``, ``"ray"``)
get a copy of the caller's settings (the LM included, which must pickle), of the states
set on lm_functions and of the ``use_states`` overrides; the program and the metric must pickle
(lm_functions pickle by reference to their module). Each example's spans and usage come back:
the spans join the caller's trace under its current span, the usage the caller's ``track()``
scopes. In other processes the caller's caps are held by a ledger every worker reserves each
request from (``_ledger``: in an actor on a cluster, ``"dask"``, ``"ray"``; in a manager process
for ``"loky"`` and ``"multiprocessing"``), so a budget cannot be overrun. An LM object sent to a
worker is a copy: its ``usage`` and a ScriptedLM's ``calls`` stay in the worker.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from typing import Any, Literal

from lmprog.data import Example, load_dataset
from lmprog.errors import BudgetExceededError, EvaluationError, UsageError
from lmprog.evaluate._cluster import CLUSTER_BACKENDS, cluster_backend, cluster_slots
from lmprog.evaluate._ledger import LedgerHandle, process_ledger
from lmprog.evaluate._results import EvaluationResult, ExampleResult, ProgressBar, usage_from_spans
from lmprog.evaluate._task import Inputs, Task
from lmprog.evaluate._workers import settings_snapshot, streams, uses_threads
from lmprog.function import LMFunction, states_in_force
from lmprog.metrics import Feedback
from lmprog.trace import adopt
from lmprog.usage import record

__all__ = ["EvaluationResult", "ExampleResult", "evaluate", "usage_from_spans"]

logger = logging.getLogger("lmprog.evaluate")


def evaluate(
    program: Callable[..., Any],
    data: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    metric: Callable[..., float | bool | Feedback],
    *,
    threads: int = 8,
    backend: Any = None,
    cluster: Any = None,
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
    picks one explicitly. ``"dask"`` and ``"ray"`` run on a cluster (extras ``lmprog[distributed]``,
    ``lmprog[ray]``): ``cluster`` is a ``distributed.Client`` or a scheduler address
    (``"tcp://host:8786"``; None: the default client), or for ray the address given to
    ``ray.init`` when ray is not running yet. The program, metric and settings (the LM included)
    must pickle; the response cache is shared by the workers that see the same ``cache_dir``.

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
    _program_inputs(program)  # a program evaluate cannot call fails before any cluster is reached
    on_cluster = isinstance(backend, str) and backend in CLUSTER_BACKENDS
    if cluster is not None and not on_cluster:
        raise UsageError(f'cluster={cluster!r} is for backend="dask" or "ray", not backend={backend!r}')
    in_process = threads == 1 or (not on_cluster and uses_threads(backend))
    if on_cluster and threads == 1:
        logger.warning("evaluate(backend=%r, threads=1) runs the examples here, one at a time", backend)
    stack = ExitStack()
    ledger = None
    if on_cluster and not in_process:
        backend_name = str(backend)
        ledger = stack.enter_context(cluster_backend(backend_name, cluster))
        backend = None  # the cluster's joblib backend is active inside the stack
        threads = min(threads, cluster_slots(backend_name) or threads)
    elif not in_process:  # worker processes of this machine
        ledger = stack.enter_context(process_ledger())
    with stack:
        return _evaluate(
            program,
            examples,
            metric,
            threads,
            backend,
            in_process,
            ledger,
            max_errors,
            progress,
            display_table,
        )


def _evaluate(
    program: Callable[..., Any],
    examples: list[Example],
    metric: Callable[..., float | bool | Feedback],
    threads: int,
    backend: Any,
    in_process: bool,
    ledger: LedgerHandle | None,
    max_errors: int | None,
    progress: bool | Literal["auto"],
    display_table: bool | int,
) -> EvaluationResult:
    spec = _program_inputs(program)
    program_name = _name(program)
    metric_name = _name(metric)
    task = Task(
        program=program,
        metric=metric,
        metric_name=metric_name,
        metric_mode=_metric_mode(metric),
        inputs=spec,
        context=contextvars.copy_context() if in_process else None,
        settings_values=None if in_process else settings_snapshot(backend),
        states=None if in_process else states_in_force(),
        ledger=ledger,
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


def _close(outcomes: Any) -> None:
    """Stop joblib's generator: pending examples are cancelled (the ones running finish)."""
    close = getattr(outcomes, "close", None)
    if close is None:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tasks (have been|which were)", category=UserWarning)
        close()


# -- set-up helpers -------------------------------------------------------------------------------
def _program_inputs(program: Callable[..., Any]) -> Inputs:
    """The parameters a program takes from an example."""
    if not callable(program):
        raise UsageError(f"program must be callable, got {program!r}")
    func = getattr(program, "__func__", program)
    if isinstance(func, LMFunction):
        names = tuple(func.signature.input_names)
        params = inspect.signature(func.fn).parameters
        optional = {n for n in names if n in params and params[n].default is not inspect.Parameter.empty}
        return Inputs(names, frozenset(optional), extra_ok=False)
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
    return Inputs(
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
