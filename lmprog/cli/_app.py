"""The ``lmprog`` command line (typer + rich).

Commands: ``optimize`` and ``eval`` run a program on data; ``worker`` joins an optimization
started with ``optimize --storage URL --study NAME``; ``show`` prints the exact messages an
lm_function sends; ``check`` fails CI when a committed prompt file is stale or corrupt;
``export`` writes a Dotprompt file; ``trace show`` draws a saved trace. Programs are named as
``path/to/file.py:function``; the file is imported as a module (its ``__main__`` block does not
run). Exit status: 0 success; 1 ``check`` found problems, or ``optimize``
optimized nothing (the result was not measured, or did not beat the committed prompt files, which
are kept); 2 a usage error (bad path, missing entry, malformed data...), printed without a
traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from lmprog.cli._loading import CLIError
from lmprog.errors import LmprogError

app = typer.Typer(
    name="lmprog",
    help="Optimize, evaluate, inspect and check lmprog programs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
trace_app = typer.Typer(
    help="Look at traces saved with Trace.to_jsonl or `lmprog eval --trace`.", no_args_is_help=True
)
app.add_typer(trace_app, name="trace")

Target = Annotated[str, typer.Argument(help="path/to/file.py:function (the program, or an lm_function)")]
Metric = Annotated[
    str,
    typer.Option(
        "--metric",
        "-m",
        help="exact_match, f1, contains, file.py:function, or a function of the program's file",
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model", help="the LM to use (overrides the program's; default $LMPROG_MODEL, else local)"
    ),
]
Threads = Annotated[int, typer.Option("--threads", min=1, help="examples run in parallel")]
Storage = Annotated[
    str | None,
    typer.Option("--storage", help="optuna storage: postgresql://user:pw@host/db, or a SQLite file"),
]
StaleAfter = Annotated[
    float | None,
    typer.Option(
        "--stale-after", min=1, help="seconds after which a trial of a silent worker on another host re-runs"
    ),
]


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log lmprog's progress")] = False,
) -> None:
    _setup_logging(logging.INFO if verbose else logging.WARNING)


@app.command()
def optimize(
    target: Target,
    train: Annotated[str, typer.Option("--train", help="training data (.jsonl, .json, .csv)")],
    metric: Metric,
    val: Annotated[
        str | None, typer.Option("--val", help="validation data (default: half of --train when needed)")
    ] = None,
    optimizer: Annotated[
        str, typer.Option("--optimizer", help="mipro, reflect, random_search, bootstrap, labeled, knn")
    ] = "mipro",
    max_calls: Annotated[
        int | None, typer.Option("--max-calls", min=0, help="hard cap on provider requests")
    ] = None,
    max_cost: Annotated[float | None, typer.Option("--max-cost", min=0, help="hard cap on cost")] = None,
    max_trials: Annotated[
        int | None, typer.Option("--max-trials", min=0, help="hard cap on search trials")
    ] = None,
    model: Model = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: Threads = 8,
    report: Annotated[Path | None, typer.Option("--report", help="write an HTML report here")] = None,
    save: Annotated[bool, typer.Option("--save/--no-save", help="write the prompt files")] = True,
    storage: Storage = None,
    study: Annotated[
        str | None,
        typer.Option("--study", help="name the study (with --storage: `lmprog worker` can join it)"),
    ] = None,
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, help="minibatch trials in total, over all workers")
    ] = None,
    stale_after: StaleAfter = None,
    reflection_model: Annotated[
        str | None,
        typer.Option(
            "--reflection-model", help="reflect: the model that writes the edits (default: --model)"
        ),
    ] = None,
    gate: Annotated[
        str | None,
        typer.Option("--gate", help="reflect: acceptance gate, auto (default), improve or paired"),
    ] = None,
    minibatch_size: Annotated[
        int | None, typer.Option("--minibatch-size", min=1, help="reflect: examples an edit is tried on")
    ] = None,
    iterations: Annotated[
        int | None, typer.Option("--iterations", min=0, help="reflect: iterations (reflections and merges)")
    ] = None,
    init: Annotated[
        str | None,
        typer.Option("--init", help="reflect: start from none (default), bootstrap or knn demos"),
    ] = None,
) -> None:
    """Optimize the prompts of every lm_function a program reaches, and write their prompt files.

    With --optimizer reflect, --reflection-model, --gate, --minibatch-size, --iterations and
    --init set the reflective search; its records go to .lmprog/reflect.json, so running the
    same command again after a kill resumes it.

    With --storage URL (e.g. postgresql://user:password@host/db) and --study NAME, the search
    lives in that database: more `lmprog optimize` commands with the same arguments, or `lmprog
    worker --storage URL --study NAME` on other machines, share its trials (--trials is the total).
    """
    from lmprog.cli._running import OptimizeArgs, run_optimize

    args = OptimizeArgs(
        target,
        train,
        metric,
        val,
        optimizer,
        max_calls,
        max_cost,
        max_trials,
        model,
        seed,
        threads,
        report,
        save,
        storage,
        study,
        trials,
        stale_after,
        reflection_model,
        gate,
        minibatch_size,
        iterations,
        init,
    )
    from lmprog.cli._running import optimize_exit_code

    with _errors():
        if storage is not None and study is not None and optimizer == "mipro":
            from lmprog.cli._jobs import publish_job

            publish_job(args)
        result = run_optimize(args, _out(), _err())
    code = optimize_exit_code(result, save)
    if code:
        _err().print("[bold red]nothing optimized[/] (see above); exit status 1", soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def worker(
    storage: Annotated[str, typer.Option("--storage", help="the optimization's storage URL")],
    study: Annotated[str, typer.Option("--study", help="the optimization's --study name")],
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="examples run in parallel (default: as published)")
    ] = None,
    stale_after: StaleAfter = None,
) -> None:
    """Join an optimization started with `lmprog optimize ... --storage URL --study NAME`.

    Runs the same program, data and metric (read from the storage; run it from the same folder of
    a checkout of the same project) on the shared study, and ends with the search. It writes no
    prompt file: the `lmprog optimize` command that started the optimization does.
    """
    from lmprog.cli._jobs import load_job
    from lmprog.cli._running import run_optimize

    with _errors():
        args = load_job(storage, study, threads)
        if stale_after is not None:
            args.stale_after = stale_after
        run_optimize(args, _out(), _err())


@app.command("eval")
def eval_(
    target: Target,
    data: Annotated[str, typer.Option("--data", help="the examples (.jsonl, .json, .csv)")],
    metric: Metric,
    model: Model = None,
    threads: Threads = 8,
    rows: Annotated[int, typer.Option("--rows", min=0, help="result rows to print")] = 10,
    trace: Annotated[
        Path | None, typer.Option("--trace", help="save the traces of the run here (JSONL)")
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="where examples run: threads (this process), loky (processes of this machine), "
            "dask or ray (a cluster)",
        ),
    ] = "threads",
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="with --backend dask: a scheduler address (tcp://host:8786; default: a local cluster "
            "of --threads worker processes); with ray: the address for ray.init",
        ),
    ] = None,
) -> None:
    """Evaluate a program on data and print the score table."""
    from lmprog.cli._running import run_eval

    with _errors():
        run_eval(target, data, metric, model, threads, rows, trace, _out(), backend=backend, cluster=cluster)


@app.command()
def show(
    target: Annotated[str, typer.Argument(help="path/to/file.py:lm_function")],
    inputs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="an input value, NAME=VALUE (repeatable)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the messages as JSON")] = False,
) -> None:
    """Print the exact messages an lm_function sends for an input, with its prompt file's demos."""
    from lmprog.cli._inspecting import run_show

    with _errors():
        run_show(target, inputs or [], as_json, _out())


@app.command()
def check(
    paths: Annotated[
        list[str] | None, typer.Argument(help="files or folders (default: the current folder)")
    ] = None,
    require_all: Annotated[
        bool, typer.Option("--require-all", help="also fail for lm_functions without a prompt file")
    ] = False,
) -> None:
    """Check committed prompt files against the code (for CI).

    Imports the modules that mention lm_function (skipping tests, virtual environments, hidden and
    build folders) and exits 1 when a prompt file is stale (its function changed since it was
    optimized), corrupt, or a module fails to import. A function without a prompt file runs on its
    docstring and only fails with --require-all.
    """
    from lmprog.cli._inspecting import run_check

    with _errors():
        code = run_check(paths or [], require_all, _out())
    raise typer.Exit(code)


@app.command()
def export(
    target: Annotated[str, typer.Argument(help="path/to/file.py:lm_function")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="default: next to its prompt file")
    ] = None,
) -> None:
    """Write an lm_function's prompt (instruction and demos) as a Dotprompt .prompt file."""
    from lmprog.cli._inspecting import run_export

    with _errors():
        run_export(target, output, _out())


@trace_app.command("show")
def trace_show(
    file: Annotated[Path, typer.Argument(help="a trace file (JSONL)")],
    io: Annotated[bool, typer.Option("--io", help="also show inputs and outputs")] = False,
) -> None:
    """Print a trace as a tree with timings, tokens and errors."""
    from lmprog.cli._inspecting import run_trace_show

    with _errors():
        run_trace_show(file, io, _out())


def main() -> None:
    """The ``lmprog`` console script."""
    app()


@contextmanager
def _errors() -> Iterator[None]:
    """Usage errors and lmprog errors become one red line on stderr and exit status 2."""
    try:
        yield
    except (CLIError, LmprogError) as e:
        _err().print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(2) from None


def _out() -> Console:
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _setup_logging(level: int) -> None:
    logger = logging.getLogger("lmprog")
    for handler in list(logger.handlers):
        if getattr(handler, "_lmprog_cli", False):
            logger.removeHandler(handler)
    rich_handler = RichHandler(console=_err(), show_time=False, show_path=False, markup=False)
    rich_handler._lmprog_cli = True  # type: ignore[attr-defined]
    logger.addHandler(rich_handler)
    logger.setLevel(level)


if __name__ == "__main__":
    main()
