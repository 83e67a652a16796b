"""The ``lmprog`` command line (typer + rich): ``optimize``, ``eval``, ``show``, ``check``,
``export``, ``trace show``.

Holds ``_app`` (the commands), ``_loading`` (user files, targets, data), ``_running`` (optimize
and eval with progress) and ``_inspecting`` (prompts, prompt files, traces). The top layer: may
import anything in lmprog; nothing imports it.
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
]
