"""``lmprog optimize`` and ``lmprog eval``: plan, run with a progress display, and print the results."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lmprog.cli._loading import (
    CLIError,
    load_metric,
    load_rows,
    load_target,
    model_label,
    resolve_entry,
    use_model,
)
from lmprog.errors import UsageError
from lmprog.evaluate import evaluate
from lmprog.lm import LM, resolve_lm
from lmprog.optimize import Budget, make_task, optimize
from lmprog.optimize import make_optimizer as build
from lmprog.optimize.mipro import MIPRO, MiproPlan
from lmprog.report import write_report
from lmprog.trace import Trace
from lmprog.usage import Usage, UsageScope, track

if TYPE_CHECKING:
    from lmprog.optimize import OptimizationResult, Optimizer, Task


@dataclass
class OptimizeArgs:
    target: str
    train: str
    metric: str
    val: str | None = None
    optimizer: str = "mipro"
    max_calls: int | None = None
    max_cost: float | None = None
    max_trials: int | None = None
    model: str | None = None
    seed: int = 0
    threads: int = 8
    report: Path | None = None
    save: bool = True
    storage: str | None = None
    study: str | None = None
    trials: int | None = None
    stale_after: float | None = None
    reflection_model: str | None = None
    gate: str | None = None
    minibatch_size: int | None = None
    iterations: int | None = None
    init: str | None = None

    def optimizer_options(self) -> dict[str, Any]:
        """The options of the shared-study flags (MIPRO only) and of the reflect flags."""
        return {**self._study_options(), **self._reflect_options()}

    def _reflect_options(self) -> dict[str, Any]:
        given = {
            "reflection_lm": ("--reflection-model", self.reflection_model),
            "gate": ("--gate", self.gate),
            "minibatch_size": ("--minibatch-size", self.minibatch_size),
            "num_iterations": ("--iterations", self.iterations),
            "init": ("--init", self.init),
        }
        options = {k: v for k, (_, v) in given.items() if v is not None}
        if options and self.optimizer != "reflect":
            named = ", ".join(flag for k, (flag, _) in given.items() if k in options)
            raise CLIError(f"{named}: only --optimizer reflect takes these (not {self.optimizer})")
        return options

    def _study_options(self) -> dict[str, Any]:
        given = {
            "storage": self.storage,
            "study_name": self.study,
            "num_trials": self.trials,
            "stale_after": self.stale_after,
        }
        options = {k: v for k, v in given.items() if v is not None}
        if self.optimizer == "reflect" and set(options) <= {"storage", "study_name"}:
            return options  # a reflective run keeps its records there too (not shared by workers)
        if options and self.optimizer != "mipro":
            flags = {"storage": "--storage", "study_name": "--study", "num_trials": "--trials"}
            named = ", ".join(flags.get(k, "--stale-after") for k in options)
            raise CLIError(f"{named}: only --optimizer mipro keeps a study (not {self.optimizer})")
        return options


def run_optimize(args: OptimizeArgs, out: Console, err: Console) -> OptimizationResult:
    module, entry = load_target(args.target)
    use_model(args.model)
    program = resolve_entry(module, entry)
    metric = load_metric(args.metric, module)
    train = load_rows(args.train, program, "train")
    val = load_rows(args.val, program, "val") if args.val else None
    budget = Budget(args.max_calls, args.max_cost, args.max_trials)
    opt = make_optimizer(args.optimizer, args.optimizer_options())
    try:
        task = make_task(
            program, train, metric, val, opt, budget=budget, seed=args.seed, threads=args.threads
        )
    except UsageError as e:
        raise CLIError(str(e)) from e
    plan = None
    if isinstance(opt, MIPRO):
        try:
            plan = opt.plan(task)  # a budget below the smallest plan stops here, before any call
        except UsageError as e:
            raise CLIError(str(e)) from e
    estimate = opt.estimate_calls(task)
    if args.max_calls is not None:
        estimate = min(estimate, args.max_calls)
    name = getattr(program, "__qualname__", str(program))
    err.print(
        f"[bold]lmprog optimize[/] {name} with [bold]{opt.name}[/] on model {model_label()}: "
        f"{len(train)} training example(s), {len(val) if val is not None else 'no'} validation, "
        f"{len(task.functions)} lm_function(s): {', '.join(f.signature.qualname for f in task.functions)}"
    )
    err.print(
        f"estimated LM calls: about {estimate} (an upper bound; cached calls are free)"
        + _cost_hint(task, estimate)
    )
    if plan is not None:
        err.print(f"plan: {escape(plan.describe())}", soft_wrap=True)
    started = time.perf_counter()
    with live_usage(err, estimate, f"optimizing ({opt.name})"):
        result = optimize(
            program,
            train,
            metric,
            valset=val,
            optimizer=opt,
            budget=budget,
            seed=args.seed,
            save=args.save,
            threads=args.threads,
            progress=False,
        )
    out.print(results_table(result, time.perf_counter() - started))
    for warning in result.warnings:
        out.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    if result.files:
        out.print("[bold]prompt files written[/] (review and commit them):")
        for file in result.files:
            out.print(f"  {_relative(file)}", soft_wrap=True)
    elif args.save:
        out.print(f"no prompt file written: {escape(result.kept or 'no lm_function state was chosen')}")
    if args.report is not None:
        path = write_report(result, args.report, program=name, model=model_label(), estimated_calls=estimate)
        out.print(f"report: {_relative(path)}", soft_wrap=True)
    return result


def optimize_exit_code(result: OptimizationResult, save: bool) -> int:
    """1 when nothing was optimized: saving was asked for and no prompt file was written, or the
    budget ran out before the result could be measured; else 0."""
    if save and not result.files:
        return 1
    return 1 if result.score is None and result.stopped_by is not None else 0


def run_eval(
    target: str,
    data: str,
    metric_spec: str,
    model: str | None,
    threads: int,
    rows: int,
    trace_out: Path | None,
    out: Console,
    *,
    backend: str = "threads",
    cluster: str | None = None,
) -> float:
    if backend not in EVAL_BACKENDS:
        raise CLIError(f"--backend {backend}: choose one of {', '.join(EVAL_BACKENDS)}")
    if cluster is not None and backend not in ("dask", "ray"):
        raise CLIError(f"--cluster is for --backend dask or ray, not {backend}")
    module, entry = load_target(target)
    use_model(model)
    program = resolve_entry(module, entry)
    metric = load_metric(metric_spec, module)
    examples = load_rows(data, program, "data")
    with _cluster_for(backend, cluster, threads) as where:
        result = evaluate(
            program,
            examples,
            metric,
            threads=threads,
            progress="auto",
            backend=None if backend == "threads" else backend,
            cluster=where,
        )
    out.print(result.renderable(rows))
    if trace_out is not None:
        spans = [s for r in result.results if r.trace is not None for s in r.trace.spans]
        Trace.from_spans(spans).to_jsonl(trace_out)
        out.print(
            f"trace: {_relative(trace_out)} ({len(spans)} spans; view it with lmprog trace show)",
            soft_wrap=True,
        )
    return result.score


EVAL_BACKENDS = ("threads", "loky", "dask", "ray")


@contextmanager
def _cluster_for(backend: str, address: str | None, workers: int) -> Iterator[Any]:
    """What ``evaluate(cluster=...)`` gets: the address given, else for dask a local cluster of
    ``workers`` single-threaded worker processes started for the run (and closed after it)."""
    if backend != "dask" or address is not None:
        yield address
        return
    try:
        import distributed
    except ImportError as e:
        raise CLIError('--backend dask needs dask.distributed: pip install "lmprog[distributed]"') from e
    with distributed.Client(  # type: ignore[no-untyped-call]
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as client:
        yield client


def make_optimizer(name: str, options: dict[str, Any] | None = None) -> Optimizer:
    try:
        return build(name, options or {})
    except UsageError as e:
        raise CLIError(f"--optimizer {name}: {e}") from e


def results_table(result: OptimizationResult, seconds: float) -> Table:
    usage = result.usage
    table = Table(title="optimization result", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    baseline, score = result.baseline_score, result.score
    table.add_row("baseline score", _score(baseline))
    table.add_row("optimized score", _score(score))
    if baseline is not None and score is not None:
        table.add_row("change", f"{score - baseline:+.1f}")
    table.add_row("candidates scored", str(len(result.candidates)))
    table.add_row("LM calls", f"{usage.calls} ({usage.describe_requests()}, {usage.cache_hits} cached)")
    table.add_row("tokens", str(usage.total_tokens))
    table.add_row("cost", f"${usage.cost:.4f}")
    table.add_row("time", f"{seconds:.1f}s")
    if result.stopped_by:
        table.add_row("stopped by budget", result.stopped_by)
    plan = getattr(result.details, "plan", None)
    if isinstance(plan, MiproPlan) and plan.max_calls is not None:
        table.add_row("plan", f"{plan.calls} calls of max_calls {plan.max_calls}")
        table.add_row("scaled down", ", ".join(plan.scaled) or "nothing")
    for fn, state in result.states.items():
        inst = "optimized" if state.instruction is not None else "docstring"
        demos = f"{len(state.demos)} demo(s)"
        if state.pool is not None:
            demos = f"{state.pool.k} retrieved demo(s) of a pool of {len(state.pool.demos)}"
        table.add_row(fn.signature.qualname, f"instruction: {inst}, {demos}")
    for qualname, counts in result.label_counts.items():
        table.add_row(f"{qualname} predicted", ", ".join(f"{label} {n}" for label, n in counts.items()))
    return table


@contextmanager
def live_usage(err: Console, estimate: int, label: str) -> Iterator[UsageScope]:
    """Count LM calls inside the block and show them as a progress bar against the estimate."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with track() as scope:
        if not err.is_terminal:
            yield scope
            return
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("calls {task.fields[status]}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        task = progress.add_task(label, total=max(1, estimate), status="")
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(0.25):
                progress.update(
                    task, completed=min(scope.total.calls, estimate), status=_usage_line(scope.total)
                )

        thread = threading.Thread(target=poll, daemon=True)
        with progress:
            thread.start()
            try:
                yield scope
            finally:
                stop.set()
                thread.join()


def _usage_line(u: Usage) -> str:
    return f"({u.describe_requests()}, {u.cache_hits} cached, ${u.cost:.4f})"


def _cost_hint(task: Task, calls: int) -> str:
    """`` (~$X at <model> prices)`` when litellm knows the configured model's price."""
    try:
        lm = resolve_lm(None)
    except UsageError:
        return ""
    if type(lm) is not LM or lm.model.startswith("local") or calls == 0:
        return ""
    try:
        import litellm

        example = task.trainset[0]
        fn = task.functions[0]
        inputs = {k: example[k] for k in fn.signature.input_names if k in example}
        text = (
            "".join(m["content"] for m in fn.messages(**inputs))
            if len(inputs) == len(fn.signature.inputs)
            else ""
        )
        prompt = max(200, len(text) // 4) * 2  # demos roughly double a prompt
        cost_in, cost_out = litellm.cost_per_token(
            model=lm.model, prompt_tokens=prompt, completion_tokens=100
        )
    except Exception:  # an unknown price or an unusual program: no hint
        return ""
    return f"; estimated cost: about ${calls * (cost_in + cost_out):.2f} at {lm.model} prices"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
