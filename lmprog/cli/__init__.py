"""The ``lmprog`` command line (typer + rich): ``optimize``, ``worker``, ``eval``, ``show``,
``check``, ``export``, ``trace show``.

Holds ``_app`` (the commands), ``_loading`` (user files, targets, data), ``_running`` (optimize
and eval with progress), ``_jobs`` (optimizations that workers on other machines join) and
``_inspecting`` (prompts, prompt files, traces). The top layer: may import anything in lmprog;
nothing imports it.
"""

from __future__ import annotations

from lmprog.cli._app import (
    Metric,
    Model,
    Target,
    Threads,
    app,
    check,
    eval_,
    export,
    main,
    optimize,
    show,
    trace_app,
    trace_show,
    worker,
)

__all__ = [
    "Metric",
    "Model",
    "Target",
    "Threads",
    "app",
    "check",
    "eval_",
    "export",
    "main",
    "optimize",
    "show",
    "trace_app",
    "trace_show",
    "worker",
]
