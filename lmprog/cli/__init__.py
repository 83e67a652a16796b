"""TODO"""

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
