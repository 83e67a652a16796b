"""``optimize()``: improve the prompts of every lm_function a program reaches, from data."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, cast

from lmprog.data import load_dataset, split
from lmprog.errors import BudgetExceededError, UsageError
from lmprog.evaluate import evaluate
from lmprog.function import LMFunction, State, use_states
from lmprog.optimize._base import Candidate, OptimizationResult, Optimizer, Task
from lmprog.optimize.balance import label_counts
from lmprog.optimize.bootstrap import BootstrapFewShot, LabeledFewShot, RandomSearch
from lmprog.optimize.budget import Budget
from lmprog.optimize.knn import KNNFewShot
from lmprog.optimize.mipro import MIPRO
from lmprog.optimize.reflect import Reflect
from lmprog.optimize.saving import save_result, save_verdict, validation_provenance
from lmprog.optimize.variants import choose_variant
from lmprog.optimize.variants_budget import Reserve, plan_reserve
from lmprog.trace import trace
from lmprog.usage import track

logger = logging.getLogger("lmprog.optimize")

OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "labeled": LabeledFewShot,
    "bootstrap": BootstrapFewShot,
    "random_search": RandomSearch,
    "mipro": MIPRO,
    "knn": KNNFewShot,
    "reflect": Reflect,
}


def register_optimizer(name: str, factory: Callable[..., Optimizer]) -> None:
    """Make ``optimize(..., optimizer=name)`` use ``factory(**options)``."""
    OPTIMIZERS[name] = factory


def optimize(
    program: Callable[..., Any] | types.ModuleType,
    trainset: Iterable[Mapping[str, Any]] | str | Path,
    metric: Callable[..., Any],
    valset: Iterable[Mapping[str, Any]] | str | Path | None = None,
    optimizer: str | Optimizer = "mipro",
    budget: Budget | None = None,
    seed: int = 0,
    save: bool = True,
    *,
    entry: str | None = None,
    threads: int = 8,
    progress: bool = True,
    apply: bool = True,
    variants: bool | Literal["all"] = True,
    **options: Any,
) -> OptimizationResult:
    """Optimize the instructions and demos of every lm_function ``program`` reaches.

    Args:
        program: a function (plain, ``@traced`` or an lm_function) or a module, whose entry
            point is ``entry`` (a name), else its only ``@traced`` function.
        trainset: rows (dicts or :class:`~lmprog.Example`) or a JSONL/CSV path.
        metric: ``metric(example, prediction, trace=None) -> float | bool`` in [0, 1].
        valset: rows or a path; without one, optimizers that need it split the training set in
            half (seeded).
        optimizer: ``"labeled"``, ``"bootstrap"``, ``"random_search"``, ``"mipro"``, ``"reflect"``,
            ``"knn"`` (retrieved demos) or an Optimizer object.
        budget: caps on provider requests, cost and trials, never exceeded. With
            ``max_calls``, variants on and a validation set, part of it (at most half) is set
            aside for the variants step before the optimizer starts, which then runs under the
            rest (its own planning sees the smaller ``max_calls``): the evaluation of a result
            the optimizer leaves unmeasured, then scored and calibrated labels in its layout,
            then the other layouts, whole steps only and never below what the optimizer
            accepts (:func:`~lmprog.optimize.variants_budget.plan_reserve`;
            ``result.details["variants_budget"]``). ``max_cost`` reserves nothing.
        seed: makes sampling and splits reproducible.
        save: write the chosen states to the functions' prompt files.
        entry: the entry function of a module ``program``.
        threads: examples evaluated in parallel.
        progress: show progress bars.
        apply: apply the chosen states to the functions in this process.
        variants: after the optimizer, try scored and calibrated labels in its layout, then
            sampling in each other layout, then scored and calibrated labels in the best other,
            on the validation data within the budget left, and keep the best
            (:mod:`lmprog.optimize.variants`); ``"all"`` scores labels in every layout; False
            keeps the optimizer's choice as it is.
        **options: passed to a named optimizer's constructor.

    Returns:
        The :class:`OptimizationResult`: the chosen states, their score (0-100), every candidate
        scored, the usage and the files written.

    Raises:
        UsageError: an empty training set, a program that reaches no lm_function, an unknown
            optimizer or bad options.

    Example:
        >>> result = lmprog.optimize(pipeline, "train.jsonl", metrics.exact_match)  # doctest: +SKIP
        >>> result.score, result.files  # doctest: +SKIP
        (82.5, [PosixPath('prompts/classify.yaml')])
    """
    opt = make_optimizer(optimizer, options)
    budget = budget or Budget()
    with track(limit=budget.check) as scope:  # discovery runs count against the budget too
        task = make_task(
            program, trainset, metric, valset, opt, budget=budget, seed=seed, entry=entry, threads=threads
        )
        task.progress = progress
        reserve = Reserve(optimizer_max_calls=budget.max_calls)
        if variants and budget.max_calls:  # Budget(max_calls=0): nothing to plan, as before
            reserve = plan_reserve(
                task, measure=not opt.needs_valset, least=opt.min_calls(task), grid=variants == "all"
            )
        share = (
            task
            if not reserve.calls
            else dataclasses.replace(
                task, budget=dataclasses.replace(budget, max_calls=reserve.optimizer_max_calls)
            )
        )
        logger.info(
            "%s: estimated LM calls (upper bound, before cache hits): %d", opt.name, opt.estimate_calls(share)
        )
        # every optimization starts from the docstrings with no demos, whatever prompt files say,
        # so the same command gives the same result however often it is run
        with use_states({f: State() for f in task.functions}):
            result = opt.run(task) if share is task else _run_share(opt, share, scope.total.requests)
            after = scope.total.requests
            # the optimizer ran out of its share of max_calls, not of the budget: the rest is the step's
            go_on = result.stopped_by is None or (reserve.calls > 0 and result.stopped_by == "max_calls")
            if task.valset and result.score is None and go_on:
                try:
                    final = task.evaluate(task.valset, result.states)
                    result.score = final.score
                    result.label_counts = label_counts(task.functions, final)[0]
                except BudgetExceededError as e:
                    result.stopped_by, go_on = e.what, False
            if variants and task.valset and go_on:
                choose_variant(task, result, used=lambda: scope.total.requests, grid=variants == "all")
            if variants and task.valset and budget.max_calls is not None:
                result.details["variants_budget"] = _bought(reserve, result, scope.total.requests - after)
            # a result is written only over committed prompt files it beats (see saving.py)
            verdict = save_verdict(task, result) if save else None
    result.usage = scope.total
    if apply:
        result.apply()
    if save and verdict is not None:
        result.kept = verdict
        logger.warning("%s: no prompt file written: %s", opt.name, verdict)
    elif save:
        result.details.setdefault("validation", validation_provenance(task))
        result.files = save_result(result)
    logger.info("%s", result.summary())
    return result


def _run_share(opt: Optimizer, task: Task, spent: int) -> OptimizationResult:
    """``opt.run(task)`` with its requests capped at its share, ``task.budget.max_calls``, of the
    whole budget (``spent``: what discovering the functions took of it)."""
    assert task.budget.max_calls is not None
    with track(limit=Budget(max_calls=max(0, task.budget.max_calls - spent)).check):
        return opt.run(task)


def _bought(reserve: Reserve, result: OptimizationResult, spent: int) -> dict[str, Any]:
    """``details["variants_budget"]``: the reserve, and what the requests after the optimizer
    (evaluating its result, the variants) measured."""
    tried = result.details.get("variants") or []
    return {
        **reserve.record(),
        "after_optimizer": spent,
        "evaluated": [
            f"{t['layout']} {t['decode']}" + (f" ({t['prior']})" if "prior" in t else "")
            for t in tried[1:]
            if "skipped" not in t
        ],
    }


def make_task(
    program: Callable[..., Any] | types.ModuleType,
    trainset: Iterable[Mapping[str, Any]] | str | Path,
    metric: Callable[..., Any],
    valset: Iterable[Mapping[str, Any]] | str | Path | None,
    optimizer: Optimizer,
    *,
    budget: Budget | None = None,
    seed: int = 0,
    entry: str | None = None,
    threads: int = 8,
) -> Task:
    """The task ``optimize()`` runs: the program, loaded data (validation split off the training
    set when the optimizer needs one and none is given) and the lm_functions it reaches."""
    fn = resolve_program(program, entry)
    train = load_dataset(trainset)
    if not train:
        raise UsageError("optimize() needs a non-empty training set")
    if valset is not None:
        val = load_dataset(valset)
    elif optimizer.needs_valset and len(train) >= 4:
        train, val = split(train, 0.5, 0.5, seed=seed)
    else:
        val = []
    task = Task(fn, train, val, metric, budget or Budget(), seed, threads=threads, progress=False)
    task.functions = discover_functions(task)
    if not task.functions:
        raise UsageError(f"{_name(fn)} reaches no lm_function: nothing to optimize")
    return task


def resolve_program(
    program: Callable[..., Any] | types.ModuleType, entry: str | None = None
) -> Callable[..., Any]:
    """The callable to run: ``program`` itself, or a module's entry point."""
    if not isinstance(program, types.ModuleType):
        if entry is not None:
            raise UsageError("entry= is only for modules")
        if not callable(program):
            raise UsageError(f"program must be a function or a module, got {program!r}")
        return program
    if entry is not None:
        obj = getattr(program, entry, None)
        if not callable(obj):
            raise UsageError(f"module {program.__name__} has no function {entry!r}")
        return cast(Callable[..., Any], obj)
    traced = [
        name
        for name, obj in vars(program).items()
        if getattr(obj, "__lmprog_traced__", False) and getattr(obj, "__module__", None) == program.__name__
    ]
    if len(traced) == 1:
        entry_fn: Callable[..., Any] = getattr(program, traced[0])
        return entry_fn
    candidates = sorted(
        name
        for name, obj in vars(program).items()
        if (inspect.isfunction(obj) or isinstance(obj, LMFunction))
        and getattr(obj, "__module__", None) == program.__name__
    )
    found = "several @traced functions" if traced else "no @traced function"
    raise UsageError(
        f"module {program.__name__} has {found}; pass entry= one of: {', '.join(candidates) or '(none)'}"
    )


def discover_functions(task: Task) -> list[LMFunction[..., Any]]:
    """The lm_functions the program reaches: from static analysis, else from one traced run."""
    if isinstance(task.program, LMFunction):
        return [task.program]
    try:
        from lmprog.source import analyze  # libcst, loaded on first use

        found = [f for f in analyze(task.program).functions if isinstance(f, LMFunction)]
    except (ImportError, UsageError) as e:
        logger.debug("static analysis unavailable (%s); discovering lm_functions by running", e)
        found = []
    if found:
        return found
    with trace() as t:
        _probe(task)
    seen: list[LMFunction[..., Any]] = []
    for span in t.spans:
        if isinstance(span.obj, LMFunction) and span.obj not in seen:
            seen.append(span.obj)
    return seen


def _probe(task: Task) -> None:
    evaluate(task.program, task.trainset[:1], task.metric, threads=1, progress=False)


def make_optimizer(optimizer: str | Optimizer, options: Mapping[str, Any]) -> Optimizer:
    if isinstance(optimizer, Optimizer):
        if options:
            raise UsageError(f"options {sorted(options)} are for named optimizers only")
        return optimizer
    factory = OPTIMIZERS.get(optimizer)
    if factory is None:
        raise UsageError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)}")
    try:
        return factory(**options)
    except TypeError as e:
        raise UsageError(f"bad options for optimizer {optimizer!r}: {e}") from e


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", repr(fn))


__all__ = [
    "OPTIMIZERS",
    "Budget",
    "Candidate",
    "OptimizationResult",
    "Optimizer",
    "Task",
    "make_optimizer",
    "make_task",
    "optimize",
    "register_optimizer",
]
